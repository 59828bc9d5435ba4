"""Kill a training run mid-epoch with SIGKILL, resume it, and get bit-identical weights and metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.trainers.base import CHECKPOINT_COMPLETE, last_complete_checkpoint

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_job.py"
RECIPE = """
model: {hidden_size: 16, attention_dim: 8, linear_dim: 8, max_seq_len: 20, max_position_embeddings: 31,
        num_negatives: 16, input_dropout: 0.2, linear_dropout: 0.2}
training: {num_train_epochs: 3, per_device_train_batch_size: 32, seed: 7, disable_tqdm: true, logging_steps: 2,
           save_total_limit: null}
"""


def run_job(data, output, recipe, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), "--data", str(data), "--output", str(output),
                           "--recipe", str(recipe), *extra], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    ratings = write_movielens_file(generate_synthetic_interactions(num_users=150, num_items=60, mean_events=25, seed=2),
                                   root / "ratings.dat")
    prepare_dataset(ratings, root / "data")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    return root / "data", recipe


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, job_inputs):
    data, recipe = job_inputs
    reference = run_job(data, tmp_path / "reference", recipe)
    assert reference.returncode == 0, reference.stderr[-3000:]

    # 150 users / 32 per batch = 5 steps per epoch: step 7 is in the middle of epoch 2.
    crashed = run_job(data, tmp_path / "crashed", recipe, "--kill-at-step", "7")
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    checkpoints = tmp_path / "crashed" / "checkpoints"
    assert (checkpoints / "checkpoint-5" / CHECKPOINT_COMPLETE).exists()
    assert not (tmp_path / "crashed" / "metrics.json").exists()
    assert last_complete_checkpoint(checkpoints).endswith("checkpoint-5")

    resumed = run_job(data, tmp_path / "crashed", recipe, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    for name in ("model.safetensors", "checkpoints/checkpoint-15/model.safetensors"):
        expected = load_file(tmp_path / "reference" / name)
        got = load_file(tmp_path / "crashed" / name)
        assert expected.keys() == got.keys()
        for key in expected:
            assert (expected[key] == got[key]).all(), f"{name}:{key} differs after resume"
    expected_metrics = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got_metrics = json.loads((tmp_path / "crashed" / "metrics.json").read_text())
    assert got_metrics["test"] == expected_metrics["test"]
    assert got_metrics["validation"] == expected_metrics["validation"]


def test_incomplete_checkpoint_is_never_resumed(tmp_path):
    (tmp_path / "checkpoint-3").mkdir()
    (tmp_path / "checkpoint-3" / CHECKPOINT_COMPLETE).write_text("{}")
    (tmp_path / "checkpoint-6").mkdir()  # killed while saving: no marker
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"partial")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")
    assert last_complete_checkpoint(tmp_path / "missing") is None


POSTTRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "posttrain_job.py"
ASFT_RECIPE = """
training: {num_train_epochs: 3, per_device_train_batch_size: 32, seed: 11, disable_tqdm: true, logging_steps: 2,
           save_strategy: epoch, baseline: user_mean, reward_source: observed, temperature: 0.5}
"""


def test_asft_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, job_inputs):
    data, recipe = job_inputs
    pretrained = run_job(data, tmp_path / "pretrained", recipe)
    assert pretrained.returncode == 0, pretrained.stderr[-3000:]
    asft_recipe = tmp_path / "asft.yaml"
    asft_recipe.write_text(ASFT_RECIPE)

    def run_asft(output, *extra):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run([sys.executable, str(POSTTRAIN_SCRIPT), "--data", str(data), "--model",
                               str(tmp_path / "pretrained"), "--output", str(output), "--recipe", str(asft_recipe),
                               *extra], env=env, capture_output=True, text=True, timeout=600)

    reference = run_asft(tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    crashed = run_asft(tmp_path / "crashed", "--kill-at-step", "7")
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    assert last_complete_checkpoint(tmp_path / "crashed" / "checkpoints").endswith("checkpoint-5")
    resumed = run_asft(tmp_path / "crashed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = load_file(tmp_path / "reference" / "model.safetensors")
    got = load_file(tmp_path / "crashed" / "model.safetensors")
    for key in expected:
        assert (expected[key] == got[key]).all(), f"{key} differs after resume"
    expected_metrics = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    got_metrics = json.loads((tmp_path / "crashed" / "metrics.json").read_text())
    assert {k: v for k, v in got_metrics["test"].items() if k != "runtime"} == {
        k: v for k, v in expected_metrics["test"].items() if k != "runtime"}
