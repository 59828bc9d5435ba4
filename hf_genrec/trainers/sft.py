"""Supervised fine-tuning of a pretrained recommender on the logged next items, and reward-weighted
behaviour cloning (the reference every post-training result is reported against).

    SFT:   L = −mean_p log π_θ(y_p | x_p)
    RW-BC: L = −mean_p r_p^p' · log π_θ(y_p | x_p)     (p' = `reward_power`, 1 by default)

over every supervised position p of the training sequences, with the full-catalogue softmax. RW-BC with
p' > 1 is the tilt-matched control of A-SFT (`tilt_matched_reward_power`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.columns import LABEL_RATINGS, LABELS
from ..losses.weighted_nll import reward_weights, weighted_nll
from .policy import (
    PREPARED,
    PolicyTrainer,
    PostTrainConfig,
    policy_forward,
    supervised_mask,
)

SFT_WEIGHTINGS = ("none", "reward")
# Key of the per-position weights in `inputs[PREPARED]`.
POSITION_WEIGHTS = "position_weights"


@dataclass
class SFTConfig(PostTrainConfig):
    r"""
    Configuration of [`SFTTrainer`].

    Args:
        weighting (`str`, *optional*, defaults to `"none"`):
            Per-position weight of the negative log-likelihood: `"none"` (w = 1, plain SFT / behaviour
            cloning) or `"reward"` (w = r^p, p = `reward_power`, the logged reward of the next item:
            reward-weighted BC).
        reward_power (`float`, *optional*, defaults to `1.0`):
            p of w = r^p with `weighting="reward"`; p = 1 is reward-weighted BC (bit-identical to it). A-SFT's
            exp(A/λ) tilts the data towards high ratings much more than r does (at λ = 1, unclipped, a 5 weighs
            e² ≈ 7.4 times a 3 against 5/3 for r), so an A-SFT gain over RW-BC mixes "more tilt" with "an
            advantage baseline". RW-BC with p chosen so that r^p tilts the training data as much as A-SFT's
            weights do (`tilt_matched_reward_power`: equal ratio of the mean weight of the positions rated 5 to
            that of the positions rated 3) has A-SFT's tilt and no baseline, which separates the two.

    See [`PostTrainConfig`] for the defaults that differ from `TrainingArguments`.
    """

    weighting: str = field(
        default="none",
        metadata={"help": "Weight of each position: 'none' (w = 1, SFT) or 'reward' (w = r^reward_power, "
                  "reward-weighted BC).", "choices": list(SFT_WEIGHTINGS)},
    )
    reward_power: float = field(
        default=1.0,
        metadata={"help": "p of w = r^p with weighting='reward' (1: reward-weighted BC; > 1: the tilt-matched "
                  "control of A-SFT, see tilt_matched_reward_power)."},
    )

    def __post_init__(self):
        if self.weighting not in SFT_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {SFT_WEIGHTINGS}, got {self.weighting!r}.")
        if not (math.isfinite(self.reward_power) and self.reward_power > 0):
            raise ValueError(
                f"reward_power must be a finite number > 0, got {self.reward_power!r}; use 1.0 for reward-weighted "
                "BC or weighting='none' for unweighted SFT."
            )
        if self.reward_power != 1.0 and self.weighting != "reward":
            raise ValueError(
                f"reward_power={self.reward_power} only applies with weighting='reward', got weighting="
                f"{self.weighting!r}; set weighting='reward' (or use RWBCConfig) or leave reward_power at 1.0."
            )
        super().__post_init__()


@dataclass
class RWBCConfig(SFTConfig):
    r"""
    Configuration of [`RWBCTrainer`]: [`SFTConfig`] with `weighting="reward"` (w = r^p, p = `reward_power`; the
    default p = 1 weighs each position by its raw logged reward).
    """

    weighting: str = field(
        default="reward",
        metadata={"help": "Weight of each position; 'reward' (w = r) is reward-weighted BC.",
                  "choices": list(SFT_WEIGHTINGS)},
    )


@dataclass
class PositionWeights:
    """The loss weight and the logged reward of every supervised position of a dataset, rows in dataset order.

    Attributes:
        weights: (P,) float32 w_p of the method's loss (1 for plain SFT).
        rewards: (P,) float32 r_p, the logged reward (rating) of each position's next item.
    """

    weights: torch.Tensor
    rewards: torch.Tensor


def weight_tilt(weights: torch.Tensor, rewards: torch.Tensor, high: float = 5.0, low: float = 3.0) -> float:
    """The tilt of training weights towards high rewards: T = mean(w_p : r_p = high) / mean(w_p : r_p = low).

    The ratio of the mean weight of the positions rated `high` to that of the positions rated `low`, over the
    training positions. For w = r^p it is (high / low)^p exactly; for A-SFT's unclipped w = exp((r − b) / λ) with
    b = 0 it is exp((high − low) / λ); with a per-context baseline (user mean, value) and the clip it is what the
    data give, which is why it is measured on the training positions rather than derived.

    Args:
        weights: (P,) weights of the positions (`SFTTrainer.training_weights().weights`).
        rewards: (P,) their logged rewards.
        high: the high rating (5 on ML-1M).
        low: the low rating (3).

    Raises:
        ValueError: mismatched shapes, `high <= low`, or no position rated `high` or `low`.
    """
    if weights.shape != rewards.shape or weights.dim() != 1:
        raise ValueError(f"weights and rewards must both be (P,), got shapes {tuple(weights.shape)} and "
                         f"{tuple(rewards.shape)}; pass the two fields of one PositionWeights.")
    if not 0 < low < high:
        raise ValueError(f"the tilt needs 0 < low < high, got low={low} and high={high}; e.g. high=5.0, low=3.0.")
    means = []
    for rating in (high, low):
        selected = weights[rewards == rating].double()
        if selected.numel() == 0:
            raise ValueError(f"no training position has reward {rating}, so the tilt is undefined; pass high/low "
                             f"ratings that occur in the data (rewards seen: {sorted(set(rewards.tolist()))[:10]}).")
        means.append(selected.mean().item())
    return means[0] / means[1]


def tilt_matched_reward_power(
    weights: torch.Tensor, rewards: torch.Tensor, high: float = 5.0, low: float = 3.0
) -> float:
    """p such that RW-BC's w = r^p has the same tilt (`weight_tilt`) as `weights` on these positions:
    (high / low)^p = T, so p = log T / log(high / low).

    Example, the tilt-matched control of A-SFT at λ = 1 with the user-mean baseline:

    ```python
    asft = ASFTTrainer(model, args=ASFTConfig("out", temperature=1.0, baseline="user_mean"), train_dataset=train)
    weights = asft.training_weights()
    power = tilt_matched_reward_power(weights.weights, weights.rewards)
    control = RWBCTrainer(model, args=RWBCConfig("out", reward_power=power), train_dataset=train)
    ```

    Raises:
        ValueError: as `weight_tilt`, or a tilt <= 1 (weights that do not favour `high` over `low`: no p > 0).
    """
    tilt = weight_tilt(weights, rewards, high, low)
    if not tilt > 1.0:
        raise ValueError(f"the weights' tilt T = mean(w | r={high}) / mean(w | r={low}) is {tilt:.4g} <= 1, which no "
                         "reward_power > 0 matches; match a method whose weights favour high rewards.")
    return math.log(tilt) / math.log(high / low)


class SFTTrainer(PolicyTrainer):
    """Weighted next-item fine-tuning: L = Σ_p w_p · (−log π_θ(y_p|x_p)) / P over the step's P positions.

    Subclasses change only `_position_weights` (reward-weighted BC, A-SFT) and the normaliser.

    Example:

    ```python
    trainer = SFTTrainer("runs/ml1m-hstu", args=SFTConfig("out"), train_dataset=splits["train"],
                         processing_class=vocabulary)
    trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "sft"]
    _name = "SFT"
    _paper = None

    def _position_weights(self, inputs: dict[str, Any], supervised: torch.Tensor) -> torch.Tensor | None:
        """(P,) weights of the supervised positions (None = all ones)."""
        if self.args.weighting == "reward":
            return reward_weights(inputs[LABEL_RATINGS][supervised], self.args.reward_power)
        return None

    @torch.no_grad()
    def training_weights(self, dataset: Any = None, batch_size: int | None = None) -> PositionWeights:
        """The loss weight of every supervised position of `dataset` (default: the training set), computed as
        training computes it: `_position_weights` on this trainer's collator batches (so A-SFT's weights come
        from `advantage_weights` with its baseline and reward source, RW-BC's from `reward_weights`).

        For diagnostics (the weights' effective sample size, `tilt_matched_reward_power`): the rows are read in
        order, not sampled, and the metrics the weighting logs are discarded so training logs are untouched.
        Under several processes every process must call it (the logged means are gathered).

        Args:
            dataset: training rows (`item_ids`, `ratings`, `timestamps`); default `self.train_dataset`.
            batch_size: rows per batch (the weights do not depend on it); default `args.eval_batch_size`.

        Returns:
            [`PositionWeights`] on the CPU, positions in row-major order (row by row, left to right).
        """
        dataset = self.train_dataset if dataset is None else dataset
        batch_size = batch_size or self.args.eval_batch_size
        saved = {mode: {name: list(values) for name, values in buffers.items()} for mode, buffers in self._metrics.items()}
        weights, rewards = [], []
        try:
            for start in range(0, len(dataset), batch_size):
                batch = self.data_collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
                batch = {key: v.to(self.accelerator.device) if torch.is_tensor(v) else v for key, v in batch.items()}
                supervised = supervised_mask(batch[LABELS])
                with self.autocast_smart_context_manager():
                    position_weights = self._position_weights(batch, supervised)
                position_rewards = batch[LABEL_RATINGS][supervised].float()
                if position_weights is None:
                    position_weights = torch.ones_like(position_rewards)
                weights.append(position_weights.float().cpu())
                rewards.append(position_rewards.cpu())
        finally:
            for mode, buffers in self._metrics.items():
                buffers.clear()
                buffers.update(saved[mode])
        empty = torch.zeros(0)
        return PositionWeights(torch.cat(weights) if weights else empty, torch.cat(rewards) if rewards else empty)

    def _prepare_micro_batch(self, inputs):
        inputs[PREPARED] = {POSITION_WEIGHTS: self._position_weights(inputs, supervised_mask(inputs[LABELS]))}
        return inputs

    def _loss_sum(self, model, inputs, mode):
        supervised = supervised_mask(inputs[LABELS])  # (B, N)
        # log π(y|x) of the logged items over the whole catalogue, at the P supervised positions
        outputs = policy_forward(model, inputs, supervised, logits_labels=inputs[LABELS][supervised])
        log_probs = outputs.label_log_probs  # (P,)
        weights = inputs[PREPARED][POSITION_WEIGHTS]
        losses = weighted_nll(log_probs, weights)  # (P,)

        # Log the metrics
        self._record_mean(mode, "logps/logged", log_probs)
        if weights is not None:
            self._record_mean(mode, "weights/mean", weights)
        return losses.sum(), outputs


class RWBCTrainer(SFTTrainer):
    """Reward-weighted behaviour cloning: [`SFTTrainer`] with w = r (the configuration's `weighting`).

    Example:

    ```python
    >>> from hf_genrec.trainers import RWBCConfig, RWBCTrainer
    >>> trainer = RWBCTrainer("runs/ml1m-hstu", args=RWBCConfig("out"), train_dataset=splits["train"],
    ...                       processing_class=vocabulary)
    >>> trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "rwbc"]
    _name = "Reward-weighted BC"


__all__ = [
    "PositionWeights",
    "RWBCConfig",
    "RWBCTrainer",
    "SFTConfig",
    "SFTTrainer",
    "SFT_WEIGHTINGS",
    "tilt_matched_reward_power",
    "weight_tilt",
]
