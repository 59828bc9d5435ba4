"""Supervised fine-tuning of a pretrained recommender on the logged next items, and reward-weighted
behaviour cloning (the reference every post-training result is reported against).

    SFT:   L = −mean_p log π_θ(y_p | x_p)
    RW-BC: L = −mean_p r_p · log π_θ(y_p | x_p)

over every supervised position p of the training sequences, with the full-catalogue softmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.columns import LABEL_RATINGS, LABELS
from ..losses.weighted_nll import weighted_nll
from .policy import (
    PREPARED,
    PolicyTrainer,
    PostTrainConfig,
    labels_log_probs,
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
            cloning) or `"reward"` (w = r, the logged reward of the next item: reward-weighted BC).

    See [`PostTrainConfig`] for the defaults that differ from `TrainingArguments`.
    """

    weighting: str = field(
        default="none",
        metadata={"help": "Weight of each position: 'none' (w = 1, SFT) or 'reward' (w = r, reward-weighted BC).",
                  "choices": list(SFT_WEIGHTINGS)},
    )

    def __post_init__(self):
        if self.weighting not in SFT_WEIGHTINGS:
            raise ValueError(f"weighting must be one of {SFT_WEIGHTINGS}, got {self.weighting!r}.")
        super().__post_init__()


@dataclass
class RWBCConfig(SFTConfig):
    r"""
    Configuration of [`RWBCTrainer`]: [`SFTConfig`] with `weighting="reward"` (w = r, the raw logged reward).
    """

    weighting: str = field(
        default="reward",
        metadata={"help": "Weight of each position; 'reward' (w = r) is reward-weighted BC.",
                  "choices": list(SFT_WEIGHTINGS)},
    )


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
            return inputs[LABEL_RATINGS][supervised].float()
        return None

    def _prepare_micro_batch(self, inputs):
        inputs[PREPARED] = {POSITION_WEIGHTS: self._position_weights(inputs, supervised_mask(inputs[LABELS]))}
        return inputs

    def _loss_sum(self, model, inputs, mode):
        supervised = supervised_mask(inputs[LABELS])  # (B, N)
        outputs = policy_forward(model, inputs, supervised)  # logits (P, V + 1) at the supervised positions
        log_probs = labels_log_probs(outputs.logits, inputs[LABELS][supervised])  # (P,)
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


__all__ = ["RWBCConfig", "RWBCTrainer", "SFTConfig", "SFTTrainer", "SFT_WEIGHTINGS"]
