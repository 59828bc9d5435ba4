"""The documented multi-process commands: `accelerate launch` configs in `recipes/accelerate/`, and the
`hf-genrec pretrain` CLI run on 2 CPU processes through `accelerate launch --config_file multi_gpu_ddp.yaml`."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.models.hstu import modeling_hstu

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "recipes" / "accelerate"
LAUNCH_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "name, distributed_type",
    [("single_gpu", DistributedType.NO), ("multi_gpu_ddp", DistributedType.MULTI_GPU),
     ("fsdp", DistributedType.FSDP), ("deepspeed_zero2", DistributedType.DEEPSPEED)],
)
def test_accelerate_configs_load(name, distributed_type):
    config = load_config_from_file(str(ACCELERATE_CONFIGS / f"{name}.yaml"))
    assert config.distributed_type == distributed_type
    assert config.mixed_precision == "no"  # precision comes from the recipe's `bf16`
    if name == "fsdp":
        layer = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
        assert hasattr(modeling_hstu, layer) and layer in modeling_hstu.HSTUPreTrainedModel._no_split_modules
    if name == "deepspeed_zero2":
        assert config.deepspeed_config["zero_stage"] == 2
        assert "gradient_accumulation_steps" not in config.deepspeed_config  # "auto": the trainer's value


def test_cli_pretrain_on_two_processes(tmp_path):
    interactions = generate_synthetic_interactions(num_users=40, num_items=30, mean_events=22, seed=4)
    prepare_dataset(write_movielens_file(interactions, tmp_path / "ratings.dat"), tmp_path / "data")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 20,
                  "max_position_embeddings": 21, "num_negatives": 8},
        "training": {"num_train_epochs": 1, "per_device_train_batch_size": 8, "disable_tqdm": True},
    }))
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",  # = `accelerate launch`
        "--config_file", str(ACCELERATE_CONFIGS / "multi_gpu_ddp.yaml"), "--num_processes", "2",
        "--main_process_port", str(free_port()),
        "-m", "hf_genrec.cli", "pretrain", "--data", str(tmp_path / "data"), "--output", str(output),
        "--recipe", str(recipe),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"accelerate launch did not finish in {LAUNCH_TIMEOUT_S} s:\n{(error.stderr or '')[-3000:]}")
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert "parallel_mode != ParallelMode.DISTRIBUTED" not in done.stderr  # not 2 independent runs

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["num_processes"] == 2
    assert metrics["test"]["num_users"] == 40  # ranked on both shards, gathered
    for name in ("config.json", "model.safetensors", "item_vocabulary.json", "README.md", "recipe.yaml"):
        assert (output / name).is_file(), name
