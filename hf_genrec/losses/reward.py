"""Reward-model losses: regression of a scalar reward (the rating) on the data's scale.

The reward head predicts r(x, y), the reward of item y chosen after history x; the value head predicts
E[r | x] for the logging policy. Both are trained on the logged (x, y, r) of every training position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REWARD_LOSS_TYPES = ("mse", "huber")


def check_finite_rewards(rewards: torch.Tensor, name: str) -> None:
    """Raise `ValueError` naming the field when rewards hold NaN or infinite values.

    A single NaN rating turns every loss and gradient into NaN after one step, silently; stop before.
    """
    finite = torch.isfinite(rewards)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s). Fix: every event needs a numeric rating; drop or "
            "impute the events with missing ratings before `hf-genrec prepare`."
        )


def reward_regression_loss(
    predictions: torch.Tensor,
    targets: torch.Tensor,
    loss_type: str = "mse",
    huber_delta: float = 1.0,
) -> torch.Tensor:
    """Mean regression loss of predicted rewards against observed ones.

    - `mse`: mean (prediction - target)^2.
    - `huber`: mean Huber loss, 0.5 e^2 where |e| <= delta and delta (|e| - 0.5 delta) elsewhere.

    Args:
        predictions: (P,) predicted rewards (unclamped).
        targets: (P,) observed rewards.
        loss_type: one of `REWARD_LOSS_TYPES`.
        huber_delta: the Huber threshold, in reward units.

    Returns:
        Scalar loss; 0 (with a gradient path) when P = 0.
    """
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape.")
    predictions, targets = predictions.float(), targets.float()
    if predictions.numel() == 0:
        return predictions.sum() * 0.0
    if loss_type == "mse":
        return F.mse_loss(predictions, targets)
    elif loss_type == "huber":
        return F.huber_loss(predictions, targets, delta=huber_delta)
    raise ValueError(f"reward loss_type must be one of {REWARD_LOSS_TYPES}, got {loss_type!r}.")


__all__ = ["REWARD_LOSS_TYPES", "check_finite_rewards", "reward_regression_loss"]
