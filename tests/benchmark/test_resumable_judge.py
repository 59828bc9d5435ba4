"""The judge stage (an ensemble trained on training + validation events) resumes an interrupted run member by member."""

import functools

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_genrec.benchmark import pipeline
from hf_genrec.benchmark.stages import StageStore
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.workflows import pretrain

MODEL = {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 12, "max_position_embeddings": 15,
         "num_negatives": 8}
# 2 members x 2 epochs; 30 users in batches of 8 (bootstrap off) are 4 steps per epoch, a checkpoint after each.
JUDGE = {"model": {"reward_head_hidden_size": 8},
         "training": {"ensemble_size": 2, "num_train_epochs": 2, "per_device_train_batch_size": 8, "seed": 1000,
                      "bootstrap": False, "disable_tqdm": True, "save_strategy": "epoch", "eval_strategy": "epoch",
                      "bf16": False},
         "data": {"split": "leave-one-out"}}
STEPS_PER_MEMBER = 8


class StepCounter(TrainerCallback):
    def __init__(self, stop_at: int | None = None):
        self.steps, self.stop_at = 0, stop_at

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1
        if self.stop_at is not None and self.steps == self.stop_at:
            raise KeyboardInterrupt  # the session ends mid-stage


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    interactions = generate_synthetic_interactions(num_users=30, num_items=25, mean_events=20, seed=3)
    prepare_dataset(write_movielens_file(interactions, root / "ratings.dat"), root / "data")
    pretrain(root / "data", root / "backbone", recipe={"model": MODEL, "training": {
        "num_train_epochs": 1, "per_device_train_batch_size": 8, "disable_tqdm": True, "bf16": False}})
    return {"data": root / "data", "pretrained": root / "backbone", "recipe": JUDGE, "judge_data": "train+validation"}


def _with_callback(monkeypatch, callback):
    monkeypatch.setattr(pipeline, "train_reward_ensemble",
                        functools.partial(pipeline.train_reward_ensemble, callbacks=[callback]))


def test_interrupted_judge_resumes_each_member_from_its_checkpoint(tmp_path, inputs, monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reward training is bit-reproducible on one thread only
    try:
        reference = StageStore(tmp_path / "reference").run(pipeline.train_judge, **inputs)
        store = StageStore(tmp_path / "interrupted")
        with monkeypatch.context() as patch:
            # Member 0 finishes (8 steps), member 1 stops after 6: its epoch-1 checkpoint (step 4) is complete.
            _with_callback(patch, StepCounter(stop_at=STEPS_PER_MEMBER + 6))
            with pytest.raises(KeyboardInterrupt):
                store.run(pipeline.train_judge, **inputs)
        counter = StepCounter()
        with monkeypatch.context() as patch:
            _with_callback(patch, counter)
            resumed = store.run(pipeline.train_judge, **inputs)
    finally:
        torch.set_num_threads(threads)
    assert resumed.done and counter.steps == STEPS_PER_MEMBER - 4  # member 0: none; member 1: its second epoch
    for member in ("member-0", "member-1"):
        expected = load_file(reference.output / member / "model.safetensors")
        got = load_file(resumed.output / member / "model.safetensors")
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{member}:{key}")
