"""LoRA the way TRL users set it up: `--use_peft --lora_r --lora_alpha --lora_dropout --lora_target_modules`, and
`trl.ModelConfig` / `trl.get_peft_config` in Python (TRL's `task_type="CAUSAL_LM"` is dropped for a recommender);
`--lora-r` alone keeps hf-genrec's rank-only adapter."""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model
from safetensors.torch import load_file
from torch import nn
from transformers import TrainerCallback
from trl import ModelConfig, get_peft_config
from workspaces import posttrain_workspace

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.cli import main
from hf_genrec.trainers.policy import ADAPTER_DIR
from hf_genrec.workflows import posttrain
from hf_genrec.workflows.posttrain import lora_arguments, resolve_peft_config

# What `--lora-r 2` built before TRL's pieces were used (alpha 2r, no dropout, the HSTU projections).
LORA_R_BEFORE = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["uvqk", "o_proj"], task_type=None)
# Offline A-SFT: no reward model needed.
ASFT_FLAGS = ["--method", "asft", "--baseline", "user_mean", "--max-steps", "2", "--batch-size", "8"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared dataset and a (random) tiny pretrained recommender."""
    return posttrain_workspace(tmp_path_factory.mktemp("peft-trl"), num_users=32)


def run_cli(workspace, output, *flags) -> int:
    return main(["posttrain", "--data", str(workspace / "data"), "--model", str(workspace / "pretrained"),
                 "--output", str(output), *ASFT_FLAGS, *flags])


def adapter_config(output) -> dict:
    return json.loads((output / ADAPTER_DIR / "adapter_config.json").read_text())


def test_trl_flags_build_the_lora_config(workspace, tmp_path):
    output = tmp_path / "trl-flags"
    assert run_cli(workspace, output, "--use_peft", "--lora_r", "2", "--lora-alpha", "6", "--lora_dropout", "0.1",
                   "--lora_target_modules", "uvqk") == 0
    saved = adapter_config(output)
    assert (saved["r"], saved["lora_alpha"], saved["lora_dropout"]) == (2, 6, 0.1)
    assert saved["target_modules"] == ["uvqk"] and saved["task_type"] is None  # one name stays a name
    trained = load_file(output / ADAPTER_DIR / "adapter_model.safetensors")
    assert trained and all(".uvqk." in key for key in trained)
    report = json.loads((output / "metrics.json").read_text())
    assert report["lora_r"] == 2 and report["peft_config"]["lora_alpha"] == 6


def test_use_peft_alone_gets_trl_defaults_on_the_hstu_projections():
    config = resolve_peft_config(None, lora_arguments(use_peft=True)["peft_config"])
    assert (config.r, config.lora_alpha, config.lora_dropout) == (16, 32, 0.05)  # TRL's ModelConfig defaults
    assert config.target_modules == {"uvqk", "o_proj"} and config.task_type is None
    all_linear = resolve_peft_config(None, lora_arguments(use_peft=True, lora_target_modules=["all-linear"])["peft_config"])
    adapted = get_peft_model(tiny_model(), all_linear)
    assert {name.split(".lora_")[0].rsplit(".", 1)[-1] for name, _ in adapted.named_parameters() if ".lora_" in name} == {
        "uvqk", "o_proj"}


def test_trl_flags_without_use_peft_are_refused(workspace, tmp_path, capsys):
    assert run_cli(workspace, tmp_path / "refused", "--lora_alpha", "8") == 2
    assert "--lora_alpha applies only with --use_peft" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()


def test_lora_r_flag_unchanged(workspace, tmp_path):
    assert resolve_peft_config(2, None).to_dict() == LORA_R_BEFORE.to_dict()
    assert lora_arguments(lora_r=2) == {"lora_r": 2}
    assert run_cli(workspace, tmp_path / "lora-r", "--lora-r", "2") == 0
    posttrain(workspace / "data", workspace / "pretrained", tmp_path / "before", method="asft",
              recipe={"model": {}, "training": {"baseline": "user_mean", "per_device_train_batch_size": 8}},
              peft_config=LORA_R_BEFORE, max_steps=2)
    for name in ("model.safetensors", f"{ADAPTER_DIR}/adapter_model.safetensors"):
        now, before = load_file(tmp_path / "lora-r" / name), load_file(tmp_path / "before" / name)
        assert now.keys() == before.keys()
        for key in now:
            assert torch.equal(now[key], before[key]), key
    assert json.loads((tmp_path / "lora-r" / "metrics.json").read_text())["lora_r"] == 2


def test_model_config_run_saves_adapter_and_merged_model(workspace, tmp_path):
    output = tmp_path / "model-config"
    peft_config = ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)  # lora_task_type CAUSAL_LM
    report = posttrain(workspace / "data", workspace / "pretrained", output, method="asft", peft_config=peft_config,
                       recipe={"model": {}, "training": {"baseline": "user_mean", "per_device_train_batch_size": 8,
                                                         "learning_rate": 1e-2}}, max_steps=3)
    assert report["lora_r"] == 4 and report["global_steps"] == 3
    saved = adapter_config(output)
    assert saved["task_type"] is None and saved["r"] == 4 and sorted(saved["target_modules"]) == ["o_proj", "uvqk"]

    base = AutoModelForNextItemPrediction.from_pretrained(workspace / "pretrained").eval()
    adapted = PeftModel.from_pretrained(AutoModelForNextItemPrediction.from_pretrained(workspace / "pretrained"),
                                        output / ADAPTER_DIR).eval()
    merged = AutoModelForNextItemPrediction.from_pretrained(output).eval()
    item_ids = torch.tensor([[3, 7, 1, 12, 5]])
    with torch.no_grad():
        tuned = adapted.score_next_items(item_ids)
        torch.testing.assert_close(merged.score_next_items(item_ids), tuned, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(base.score_next_items(item_ids), tuned)  # the adapter learned something


def test_trainer_takes_trl_peft_config(tmp_path, synthetic_data):
    splits, vocabulary = synthetic_data
    peft_config = get_peft_config(ModelConfig(use_peft=True, lora_r=4, lora_target_modules=["uvqk", "o_proj"]))
    assert peft_config.task_type == "CAUSAL_LM"  # what TRL builds; peft would wrap a causal LM
    trainer = posttrain_trainer("dpo", tmp_path / "run", splits["train"], model=tiny_model(seed=4),
                                reward_model=FakeRewardEnsemble(), processing_class=vocabulary,
                                peft_config=peft_config, max_steps=2, disable_dropout=True)
    assert trainer.is_peft and type(trainer.policy) is PeftModel and trainer.ref_model is None
    assert peft_config.task_type == "CAUSAL_LM"  # the caller's config is left as it was
    # disable_dropout reaches the adapter's dropout too (0.05, TRL's default), as in TRL
    dropouts = [module for module in trainer.policy.modules() if isinstance(module, nn.Dropout)]
    assert any("lora_dropout" in name for name, _ in trainer.policy.named_modules())
    assert dropouts and all(module.p == 0 for module in dropouts)
    trainer.train()
    assert trainer.state.global_step == 2


def test_other_task_types_are_refused(tmp_path, synthetic_data):
    splits, _ = synthetic_data
    with pytest.raises(ValueError, match=r"task_type='SEQ_CLS' does not fit a next-item recommender; set task_type=None"):
        posttrain_trainer("sft", tmp_path / "run", splits["train"],
                          peft_config=get_peft_config(ModelConfig(use_peft=True, lora_task_type="SEQ_CLS")))
    with pytest.raises(ValueError, match="lora_r=2 and peft_config were both given"):
        resolve_peft_config(2, LORA_R_BEFORE)


def hand_written_disable_dropout(model: nn.Module) -> None:
    """What `PolicyTrainer` ran before it used `trl.trainer.utils.disable_dropout_in_model`."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def test_trl_disable_dropout_keeps_full_training_bit_identical(tmp_path, synthetic_data, monkeypatch):
    from hf_genrec.trainers import policy

    splits, _ = synthetic_data

    def trained(name):
        trainer = posttrain_trainer("sft", tmp_path / name, splits["train"], disable_dropout=True, max_steps=3,
                                    learning_rate=1e-2, model=tiny_model(seed=1, input_dropout=0.3, linear_dropout=0.3))
        assert all(module.p == 0 for module in trainer.model.modules() if isinstance(module, nn.Dropout))
        trainer.train()
        return {key: value.detach().clone() for key, value in trainer.model.state_dict().items()}

    with_trl = trained("trl")
    monkeypatch.setattr(policy, "disable_dropout_in_model", hand_written_disable_dropout)
    before = trained("before")
    assert with_trl.keys() == before.keys()
    assert all(torch.equal(with_trl[key], before[key]) for key in with_trl)
    assert any(not torch.equal(with_trl[key], tiny_model(seed=1).state_dict()[key]) for key in with_trl)  # it trained


class Interrupted(Exception):
    """What the interrupting callback raises (as a killed job would stop)."""


class InterruptAfterFirstSave(TrainerCallback):
    def __init__(self):
        self.saved_step = None

    def on_save(self, args, state, control, **kwargs):
        self.saved_step = self.saved_step or state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.saved_step is not None and state.global_step == self.saved_step + 1:
            raise Interrupted(f"interrupted at step {state.global_step}")


def test_model_config_lora_kill_and_resume_is_exact(workspace, tmp_path):
    recipe = {"model": {}, "training": {"baseline": "user_mean", "per_device_train_batch_size": 8, "seed": 3,
                                        "num_train_epochs": 2, "save_strategy": "epoch", "learning_rate": 1e-2}}

    def run(output, lora_alpha=8, **flags):  # LoRA dropout on: the resumed RNG stream matters too
        peft_config = ModelConfig(use_peft=True, lora_r=2, lora_alpha=lora_alpha, lora_dropout=0.1)
        return posttrain(workspace / "data", workspace / "pretrained", output, method="asft", recipe=recipe,
                         peft_config=peft_config, **flags)

    run(tmp_path / "reference")
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", callbacks=[InterruptAfterFirstSave()])
    with pytest.raises(ValueError, match=r"peft_config\.lora_alpha=8.*this run has .*peft_config\.lora_alpha=4"):
        run(tmp_path / "resumed", lora_alpha=4, resume=True)
    run(tmp_path / "resumed", resume=True)
    for name in ("model.safetensors", f"{ADAPTER_DIR}/adapter_model.safetensors"):
        reference, resumed = load_file(tmp_path / "reference" / name), load_file(tmp_path / "resumed" / name)
        assert reference.keys() == resumed.keys()
        assert all(torch.equal(reference[key], resumed[key]) for key in reference), name
