"""Interrupt every trainer mid-epoch, resume it, and get the weights of an uninterrupted run; a resume with another
recipe or other data is refused before anything in the folder changes.

The runs go through the workflows (`pretrain`, `reward`, `posttrain` with each method, and LoRA) on a tiny model,
in this process: a callback raises mid-epoch, after the first checkpoint, as a killed job would stop (the
SIGKILL jobs of `test_resume.py` show that a real kill leaves the same folder). 40 users in batches of 8 make 5
optimiser steps per epoch (10 for PPO, whose rollouts repeat for 2 steps); each run trains 2 epochs and
checkpoints after each.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.trainers.base import TRAINING_STATE_FILE, last_complete_checkpoint
from hf_genrec.workflows import posttrain, pretrain, reward

MODEL = {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 12, "max_position_embeddings": 15,
         "num_negatives": 8, "input_dropout": 0.2, "linear_dropout": 0.2}
TRAINING = {"num_train_epochs": 2, "per_device_train_batch_size": 8, "seed": 3, "disable_tqdm": True,
            "logging_steps": 1, "save_strategy": "epoch", "save_total_limit": 10}
# (method, method training values, LoRA rank); every post-training method, and LoRA on the one whose reference
# policy is the adapter-disabled model.
POSTTRAIN_CASES = {
    "sft": ("sft", {}, None),
    "rwbc": ("rwbc", {}, None),
    "asft": ("asft", {"temperature": 0.5}, None),
    "dpo": ("dpo", {"num_candidates": 8}, None),
    "ipo": ("ipo", {"num_candidates": 8}, None),
    "cql": ("cql", {}, None),
    "ppo": ("ppo", {"ppo_epochs": 2, "samples_per_context": 2}, None),
    "dpo-lora": ("dpo", {"num_candidates": 8}, 2),
}


class Interrupted(Exception):
    """What the interrupting callback raises."""


class InterruptAfterSaves(TrainerCallback):
    """Stop training (raise `Interrupted`) two optimiser steps after the `saves`-th checkpoint of this run
    (counted over every trainer it is given to: a reward run trains one per member)."""

    def __init__(self, saves: int = 1):
        self.saves, self.seen, self.saved_step = saves, 0, None

    def on_save(self, args, state, control, **kwargs):
        self.seen, self.saved_step = self.seen + 1, state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.seen >= self.saves and state.global_step == self.saved_step + 2:
            raise Interrupted(f"interrupted at step {state.global_step}")


def _prepare(root: Path, name: str, seed: int) -> Path:
    interactions = generate_synthetic_interactions(num_users=40, num_items=25, mean_events=20, seed=seed)
    prepare_dataset(write_movielens_file(interactions, root / f"{name}.dat"), root / name)
    return root / name


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Prepared data, other data over the same items, a pretrained model and a one-member reward ensemble."""
    root = tmp_path_factory.mktemp("resume-every-trainer")
    data, other = _prepare(root, "data", seed=4), _prepare(root, "other", seed=5)
    assert load_prepared(data)[1] == load_prepared(other)[1]  # the same vocabulary, other users
    pretrain(data, root / "pretrained", recipe={"model": MODEL, "training": {**TRAINING, "num_train_epochs": 1}})
    reward(data, root / "pretrained", root / "reward", recipe={"model": {}, "training": {
        **TRAINING, "num_train_epochs": 1, "ensemble_size": 1}})
    return {"data": data, "other": other, "pretrained": root / "pretrained", "reward": root / "reward"}


def _runner(case: str, workspace):
    """(run(output, data=..., seed=..., **flags), checkpoints a run has saved when it is interrupted)."""
    if case == "pretrain":
        def run(output, data=workspace["data"], seed=3, **flags):
            return pretrain(data, output, recipe={"model": MODEL, "training": {**TRAINING, "seed": seed}}, **flags)
        return run, 1
    if case == "reward":
        def run(output, data=workspace["data"], seed=3, **flags):
            training = {**TRAINING, "seed": seed, "ensemble_size": 2}
            return reward(data, workspace["pretrained"], output, recipe={"model": {}, "training": training}, **flags)
        return run, 3  # member 0 is finished (2 checkpoints), member 1 is interrupted in its second epoch
    method, values, lora_r = POSTTRAIN_CASES[case]

    def run(output, data=workspace["data"], seed=3, **flags):
        recipe = {"model": {}, "training": {**TRAINING, **values, "seed": seed}}
        return posttrain(data, workspace["pretrained"], output, method=method, reward_model=workspace["reward"],
                         recipe=recipe, lora_r=lora_r, **flags)
    return run, 1


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a run folder's saved weights (model, heads, adapter, ensemble members), by file and name."""
    tensors = {}
    for path in sorted(folder.rglob("*.safetensors")):
        if "checkpoints" not in path.relative_to(folder).parts:
            tensors.update({f"{path.relative_to(folder)}:{key}": value for key, value in load_file(path).items()})
    return tensors


def _folder_state(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("case", ["pretrain", "reward", *POSTTRAIN_CASES])
def test_interrupted_then_resumed_equals_uninterrupted(case, workspace, tmp_path):
    run, saves = _runner(case, workspace)
    reference = run(tmp_path / "reference")

    output = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        run(output, callbacks=[InterruptAfterSaves(saves)])
    metrics_file = "reward_metrics.json" if case == "reward" else "metrics.json"
    assert not (output / metrics_file).exists()
    checkpoints = output / "checkpoints" / ("member-1" if case == "reward" else "")
    resumed_from = Path(last_complete_checkpoint(checkpoints))
    if case in ("cql", "ppo", "dpo-lora"):  # heads / an adapter that the model files do not restore
        assert (resumed_from / TRAINING_STATE_FILE).is_file()

    resumed = run(output, resume=True)
    expected, got = _weights(tmp_path / "reference"), _weights(output)
    assert expected.keys() == got.keys() and len(expected) > 0
    different = [key for key in expected if not torch.equal(expected[key], got[key])]
    assert not different, f"{case}: {different} differ from the uninterrupted run after resuming"
    if case == "reward":
        assert resumed["table"] == reference["table"]
    else:
        assert {k: v for k, v in resumed["test"].items() if k != "runtime"} == {
            k: v for k, v in reference["test"].items() if k != "runtime"}

    # A resume with another seed or other data is refused before anything in the folder changes.
    before = _folder_state(output)
    with pytest.raises(ValueError, match=r"seed=3.*; this run has seed=4"):
        run(output, seed=4, resume=True)
    with pytest.raises(ValueError, match=r"inputs\.prepared_data=sha256:"):
        run(output, data=workspace["other"], resume=True)
    assert _folder_state(output) == before
    assert json.loads((output / metrics_file).read_text())
