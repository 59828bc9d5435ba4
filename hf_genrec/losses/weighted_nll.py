"""Weighted negative log-likelihood of logged next items: the loss of SFT (w = 1), reward-weighted BC
(w = r, or r^p for the tilt-matched control) and A-SFT (w = min(exp(A / λ), w_max)).

    L = Σ_p w_p · (−log π_θ(y_p | x_p)) / D

with D the number of supervised positions (a plain weighted mean) or Σ_p w_p (batch-normalised weights).
The trainer chooses D over the whole optimizer step (all accumulation micro-batches and processes), so this
module returns the per-position terms and leaves the division to it.
"""

from __future__ import annotations

import torch


def weighted_nll(log_probs: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position weighted negative log-likelihood.

    Args:
        log_probs: (P,) log π_θ(y_p | x_p) of the logged items, with gradient.
        weights: optional (P,) non-negative weights, treated as constants (detached).

    Returns:
        (P,) w_p · (−log π_θ(y_p | x_p)).
    """
    nll = -log_probs
    if weights is None:
        return nll
    if weights.shape != nll.shape:
        raise ValueError(f"weights has shape {tuple(weights.shape)} but log_probs has {tuple(nll.shape)}.")
    return weights.detach().to(nll.dtype) * nll


def reward_weights(rewards: torch.Tensor, power: float = 1.0) -> torch.Tensor:
    """Reward-weighted BC's per-position weights w = r^p (p = 1: the raw reward, today's RW-BC).

    p = 1 returns the rewards in float32 without a `pow`, so RW-BC trains bit-identical weights whatever the
    platform's `pow(x, 1)` does; p > 1 tilts the weights towards high rewards (the tilt-matched control of A-SFT,
    `hf_genrec.trainers.sft.tilt_matched_reward_power`).

    Args:
        rewards: (P,) non-negative rewards of the logged items.
        power: p > 0.

    Returns:
        (P,) float32 weights.
    """
    rewards = rewards.float()
    return rewards if power == 1.0 else rewards.pow(power)


__all__ = ["reward_weights", "weighted_nll"]
