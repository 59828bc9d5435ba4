"""Every quick start of `examples/trl_quickstarts.py` (TRL's shape: config -> trainer -> `train()`) runs and
trains, on its own tiny generated log."""

import ast
import contextlib
import inspect
import io
import math
import re
import runpy
import sys
from pathlib import Path

import pytest
import torch
from transformers import set_seed

from hf_genrec import (
    AutoModelForNextItemPrediction,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
    trainers,
)
from hf_genrec.data import LABELS, History, ItemVocabulary, SequenceCollator

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "trl_quickstarts.py"
# The metric each post-training quick start must have logged: proof the method's own loss ran.
METHOD_METRICS = {
    "sft": "logps/logged",
    "asft": "advantages/mean",
    "dpo": "pairs/kept_frac",
    "dpo_offline": "rewards/margins",
    "ppo": "objective/kl",
    "cql": "q/scale",
}


@pytest.fixture(scope="module")
def quickstarts():
    """The example's functions, loaded as a module (not as `__main__`)."""
    return runpy.run_path(str(SCRIPT), run_name="trl_quickstarts")


@pytest.fixture(scope="module")
def data(quickstarts):
    return quickstarts["get_splits"]()


@pytest.fixture(scope="module")
def pretrained(quickstarts, data, tmp_path_factory):
    splits, vocabulary = data
    return quickstarts["pretrain"](splits, vocabulary, str(tmp_path_factory.mktemp("quickstart") / "pretrain"))


@pytest.fixture(scope="module")
def reward_model(quickstarts, data, pretrained, tmp_path_factory):
    splits, vocabulary = data
    return quickstarts["reward"](pretrained, splits, vocabulary, str(tmp_path_factory.mktemp("quickstart") / "reward"))


def changed(state: dict, start: dict) -> list[str]:
    """Names of the tensors of `start` that differ in `state`."""
    return [name for name in start if not torch.equal(state[name], start[name])]


def test_pretrain_saves_a_trained_recommender(quickstarts, data, pretrained):
    _, vocabulary = data
    model = AutoModelForNextItemPrediction.from_pretrained(pretrained)
    assert ItemVocabulary.from_pretrained(pretrained) == vocabulary
    set_seed(quickstarts["SEED"])  # the initial weights the quick start trained from
    start = HSTUForNextItemPrediction(model.config).state_dict()
    assert changed(model.state_dict(), start)


def test_reward_trains_an_ensemble_member(data, pretrained, reward_model):
    splits, _ = data
    assert reward_model.num_members == 1
    member = reward_model.members[0].state_dict()
    start = HSTUForRewardModeling.from_pretrained(pretrained).state_dict()
    backbone = [name for name in start if "reward_head" not in name and "value_head" not in name]
    assert [name for name in changed(member, start) if name in backbone]  # the backbone is fine-tuned too
    batch = SequenceCollator(max_seq_len=reward_model.config.max_seq_len)([splits["train"][i] for i in range(4)])
    prediction = reward_model.predict_positions(History.from_batch(batch), labels=batch[LABELS])
    supervised = batch[LABELS] > 0
    assert prediction.mean.shape == batch[LABELS].shape and torch.isfinite(prediction.mean).all()
    low, high = reward_model.reward_min, reward_model.reward_max
    assert ((prediction.mean[supervised] >= low) & (prediction.mean[supervised] <= high)).all()
    assert prediction.std.abs().max() == 0  # one member: no spread


@pytest.mark.parametrize("name", list(METHOD_METRICS))
def test_post_training_quickstart(quickstarts, data, pretrained, reward_model, name, tmp_path):
    splits, vocabulary = data
    extra = {"reward_model": reward_model} if name in quickstarts["NEEDS_REWARD_MODEL"] else {}
    trainer = quickstarts[name](pretrained, splits, vocabulary, str(tmp_path / name), **extra)
    assert trainer.state.global_step == quickstarts["TINY_RUN"]["max_steps"]
    assert math.isfinite(trainer.state.log_history[-1]["train_loss"])
    assert any(METHOD_METRICS[name] in logs for logs in trainer.state.log_history)
    start = AutoModelForNextItemPrediction.from_pretrained(pretrained).state_dict()
    assert changed(trainer.policy.state_dict(), start)  # the policy moved


def test_offline_dpo_syncs_the_reference_with_trl_callback(quickstarts, data, pretrained, tmp_path):
    from trl.trainer.callbacks import SyncRefModelCallback

    splits, vocabulary = data
    trainer = quickstarts["dpo_offline"](pretrained, splits, vocabulary, str(tmp_path / "dpo"))
    assert trainer.offline and trainer.args.loss_type == ["sigmoid", "robust"]
    assert any(isinstance(callback, SyncRefModelCallback) for callback in trainer.callback_handler.callbacks)
    start = AutoModelForNextItemPrediction.from_pretrained(pretrained).state_dict()
    assert changed(trainer.ref_model.state_dict(), start)  # TR-DPO mixed the policy into the reference


def test_main_runs_one_quickstart(tmp_path):
    argv, out = sys.argv, io.StringIO()
    sys.argv = [str(SCRIPT), "--output", str(tmp_path), "--trainer", "cql"]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        sys.argv = argv
    printed = out.getvalue()
    assert f"pretrain: saved to {tmp_path}/pretrain" in printed
    assert "cql: 2 steps, train loss" in printed and "reward:" not in printed  # CQL needs no reward model


def docstring_code(cls) -> str:
    """The Python of the ```python blocks of `cls`'s docstring, without the `>>>` / `...` prompts."""
    blocks = re.findall(r"```python\n(.*?)```", inspect.getdoc(cls) or "", flags=re.S)
    lines = [line[4:] if line[:4] in (">>> ", "... ") else line for block in blocks for line in block.splitlines()]
    return "\n".join(line for line in lines if line.strip() and not line.startswith("(")).strip()


def trainer_parameters(cls) -> set[str]:
    """Keyword arguments `cls(...)` accepts: its own `__init__`s, and `transformers.Trainer`'s, where they pass
    the rest on."""
    from transformers import Trainer

    return {name for klass in (*cls.__mro__, Trainer) if "__init__" in vars(klass)
            for name in inspect.signature(vars(klass)["__init__"]).parameters}


TRAINERS = [name for name in trainers.__all__ if name.endswith("Trainer") and name not in ("GenRecTrainer", "PolicyTrainer")]


@pytest.mark.parametrize("name", TRAINERS)
def test_trainer_docstring_example_uses_real_fields(name, tmp_path, monkeypatch):
    """Every trainer's docstring has an example whose configs build and whose trainer keywords exist."""
    monkeypatch.chdir(tmp_path)  # the examples' output_dir "out" is created here if at all
    cls = getattr(trainers, name)
    code = docstring_code(cls)
    assert "Example" in inspect.getdoc(cls) and f"{name}(" in code, f"{name} has no ```python Example: block"
    calls = [node for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    configs = [call for call in calls if call.func.id.endswith("Config")]
    assert configs, f"{name}'s example builds no config"
    for call in configs:
        arguments = [ast.literal_eval(arg) for arg in call.args]
        keywords = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
        config = getattr(trainers, call.func.id)(*arguments, **keywords)  # unknown or invalid fields raise
        assert all(getattr(config, field) == value for field, value in keywords.items() if field != "loss_type")
    accepted = trainer_parameters(cls)
    for call in (call for call in calls if call.func.id == name):
        assert {keyword.arg for keyword in call.keywords} <= accepted
