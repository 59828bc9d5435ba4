"""LoRA post-training on the HSTU projections (A-SFT and DPO); the reference policy is the adapter-disabled model."""

import pytest
import torch
from peft import LoraConfig
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.trainers.policy import ADAPTER_DIR


def lora_config():
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["uvqk", "o_proj"], task_type=None)


@pytest.mark.parametrize("method", ["asft", "dpo"])
def test_lora_post_training(method, tmp_path, synthetic_data):
    splits, vocabulary = synthetic_data
    base = tiny_model(seed=4)
    frozen = {name: p.detach().clone() for name, p in base.named_parameters()}
    trainer = posttrain_trainer(method, tmp_path / "run", splits["train"], model=base,
                                reward_model=FakeRewardEnsemble(), processing_class=vocabulary,
                                peft_config=lora_config(), max_steps=3, learning_rate=1e-2,
                                **({"baseline": "user_mean"} if method == "asft" else {}))
    assert trainer.is_peft and trainer.ref_model is None  # π_ref = the model with its adapter disabled
    trainable = [name for name, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    trainer.train()

    history = splits["test"][0]["item_ids"][-12:]
    item_ids = torch.tensor([history])
    policy = trainer.policy
    policy.eval()
    with torch.no_grad():
        tuned = policy.score_next_items(item_ids)
        with policy.disable_adapter():
            reference = policy.score_next_items(item_ids)
    assert not torch.allclose(tuned, reference)  # the adapter learned something
    for name, p in policy.named_parameters():  # ... and only the adapter changed
        if "lora_" not in name:
            original = name.replace("base_model.model.", "").replace(".base_layer", "")
            torch.testing.assert_close(p, frozen[original])

    trainer.save_model(str(tmp_path / "saved"))
    assert (tmp_path / "saved" / ADAPTER_DIR / "adapter_config.json").is_file()
    merged = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "saved").eval()
    torch.testing.assert_close(merged.score_next_items(item_ids), tuned, rtol=1e-4, atol=1e-4)
    assert "LORA" in (tmp_path / "saved" / "README.md").read_text()
