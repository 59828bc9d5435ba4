"""Data parallelism on CPU: 2 processes (gloo) train and evaluate exactly like 1 process with the whole batch.

`tests/scripts/ddp_pretrain.py` pretrains a tiny HSTU for 10 steps with everything random switched off.
It is run once under `torchrun --nproc_per_node 2` with per-device batch 4, and once in this process with
batch 8: the final weights must agree to float tolerance, and the ranking metrics must be computed on
every validation user (gathered from both ranks), not on one rank's shard.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ddp_pretrain.py"
NUM_VALIDATION_USERS = 64
LAUNCH_TIMEOUT_S = 420  # two interpreters importing torch + transformers on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_script():
    spec = importlib.util.spec_from_file_location("ddp_pretrain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_single_process(output: Path, per_device_batch: int, accumulation: int = 1) -> dict:
    load_script().training_function(Namespace(output=str(output), per_device_batch=per_device_batch,
                                              accumulation=accumulation, steps=10))
    return json.loads((output / "result.json").read_text())


def run_two_processes(output: Path, per_device_batch: int) -> dict:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), str(SCRIPT), "--output", str(output),
               "--per-device-batch", str(per_device_batch)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"torchrun did not finish in {LAUNCH_TIMEOUT_S} s:\n{(error.stderr or '')[-3000:]}")
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads((output / "result.json").read_text())


def weights(output: Path) -> dict[str, torch.Tensor]:
    return load_file(output / "model" / "model.safetensors")


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 1e-5):
    assert a.keys() == b.keys()
    for name in a:
        difference = (a[name] - b[name]).abs().max().item()
        assert difference < atol, f"{name} differs by {difference}"


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    output = tmp_path_factory.mktemp("one_process")
    return run_single_process(output, per_device_batch=8), output


def test_two_processes_train_and_evaluate_like_one(one_process, tmp_path):
    single, single_dir = one_process
    double = run_two_processes(tmp_path, per_device_batch=4)
    assert single["world_size"] == 1
    assert double["world_size"] == 2 and double["distributed_type"] == "DistributedType.MULTI_CPU"

    # Evaluation: the same initial model gives the same metrics, computed on all users of both shards.
    assert double["before"]["eval_num_users"] == single["before"]["eval_num_users"] == NUM_VALIDATION_USERS
    for key, value in single["before"].items():
        if not key.endswith("_runtime"):
            assert double["before"][key] == pytest.approx(value, abs=1e-9), key

    # Training: the same batches and the same per-step mean, so the same losses and weights.
    assert len(double["losses"]) == len(single["losses"]) == 10
    assert double["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert single["losses"][-1] < single["losses"][0]  # it did train
    assert_same_weights(weights(tmp_path), weights(single_dir))
    assert double["after"]["eval_num_users"] == NUM_VALIDATION_USERS


def test_gradient_accumulation_trains_like_the_whole_batch(one_process, tmp_path):
    """Batch 4 x 2 accumulation steps = batch 8: the loss is a mean over the step's positions, not a mean
    of per-micro-batch means (the micro-batches have different numbers of positions)."""
    single, single_dir = one_process
    accumulated = run_single_process(tmp_path, per_device_batch=4, accumulation=2)
    assert accumulated["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert_same_weights(weights(tmp_path), weights(single_dir))
