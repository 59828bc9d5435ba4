"""Helpers of the post-training trainer tests: a tiny HSTU and a fake reward ensemble.

`FakeRewardEnsemble` has the duck-typed interface the trainers use (`predict_candidates`,
`predict_positions`, `value_positions`, `num_members`, `reward_min/max`, `.to`, `.eval`) with closed-form,
deterministic rewards, so the tests do not depend on a trained reward model.
"""

from __future__ import annotations

import hashlib

import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.rewards import RewardPrediction

NUM_ITEMS = 30


def item_quality(items: torch.Tensor) -> torch.Tensor:
    """A fixed reward in [1, 5] per item (0 for padding)."""
    return torch.where(items > 0, 1.0 + 4.0 * ((items * 7) % 11).float() / 10.0, torch.zeros_like(items, dtype=torch.float))


class FakeRewardEnsemble:
    """K members: r_k(x, y) = quality(y) + 0.1·(last item of x mod 3) + member noise 0.4·sin((k + 1)·y)."""

    def __init__(self, num_members: int = 3):
        self.num_members = num_members
        self.reward_min, self.reward_max = 1.0, 5.0
        self.calls = 0

    def to(self, device):
        return self

    def eval(self):
        return self

    def _members(self, items: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k = torch.arange(1, self.num_members + 1, dtype=torch.float).reshape(-1, *([1] * items.dim()))
        base = item_quality(items) + 0.1 * context
        members = base[None] + 0.4 * torch.sin(k * items[None].float())  # (K, ...)
        return members.clamp(self.reward_min, self.reward_max)

    @torch.no_grad()
    def predict_candidates(self, item_ids, attention_mask=None, timestamps=None, query_timestamps=None,
                           candidate_item_ids=None):
        self.calls += 1
        if attention_mask is None:
            attention_mask = (item_ids != 0).long()
        last = item_ids.gather(1, (attention_mask.sum(1) - 1).clamp(min=0)[:, None])  # (B, 1)
        return RewardPrediction.from_members(self._members(candidate_item_ids, (last % 3).float()))

    @torch.no_grad()
    def predict_positions(self, item_ids, attention_mask=None, timestamps=None, query_timestamps=None, labels=None):
        members = self._members(labels, (item_ids % 3).float()) * (labels > 0)
        return RewardPrediction.from_members(members)

    @torch.no_grad()
    def value_positions(self, item_ids, attention_mask=None, timestamps=None, query_timestamps=None):
        return torch.full(item_ids.shape, 3.0) * (item_ids > 0)


def tiny_config(num_items: int = NUM_ITEMS, **overrides) -> HSTUConfig:
    values = dict(
        num_items=num_items, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, attention_dim=8,
        linear_dim=8, max_seq_len=12, max_position_embeddings=15, input_dropout=0.0, linear_dropout=0.0,
        num_negatives=8,
    )
    values.update(overrides)
    return HSTUConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> HSTUForNextItemPrediction:
    torch.manual_seed(seed)
    return HSTUForNextItemPrediction(tiny_config(**overrides))


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def weights_digest(model) -> str:
    """SHA-256 of a model's state (names and bytes, in name order): equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def max_abs_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def posttrain_trainer(method: str, output_dir, train_dataset, model=None, reward_model=None, eval_dataset=None,
                      processing_class=None, peft_config=None, **overrides):
    """A post-training trainer of `method` (sft, rwbc, asft, dpo, ipo, cql, ppo) on a tiny model, with test
    defaults: batch 4, one epoch, no tqdm, fp32."""
    from hf_genrec import trainers

    config_class, trainer_class, defaults = {
        "sft": (trainers.SFTConfig, trainers.SFTTrainer, {}),
        "rwbc": (trainers.RWBCConfig, trainers.RWBCTrainer, {}),
        "asft": (trainers.ASFTConfig, trainers.ASFTTrainer, {}),
        "dpo": (trainers.DPOConfig, trainers.DPOTrainer, {}),
        "ipo": (trainers.DPOConfig, trainers.DPOTrainer, {"loss_type": "ipo"}),
        "cql": (trainers.CQLConfig, trainers.CQLTrainer, {}),
        "ppo": (trainers.PPOConfig, trainers.PPOTrainer, {}),
    }[method]
    values = dict(per_device_train_batch_size=4, num_train_epochs=1, disable_tqdm=True, logging_steps=1, seed=0)
    values.update(defaults)
    values.update(overrides)
    args = config_class(str(output_dir), **values)
    return trainer_class(
        model=model if model is not None else tiny_model(),
        reward_model=reward_model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processing_class,
        peft_config=peft_config,
    )
