"""A-SFT (advantage-weighted SFT) weights and baselines.

    w = min(exp(A / λ), w_max),   A = r − b(x)

(brief, section 4; Netflix Technology Blog, Oct 2025; with b = 0 it is the exponential reward-weighted SFT
of Chidambaram et al., arXiv 2603.10279). The loss itself is `weighted_nll`.
"""

from __future__ import annotations

import torch


def advantage_weights(
    rewards: torch.Tensor,
    baselines: torch.Tensor | None,
    temperature: float,
    max_weight: float | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped exponential advantage weights.

    Args:
        rewards: (P,) rewards r of the logged items.
        baselines: (P,) baselines b(x), or None for b = 0.
        temperature: λ > 0; λ → ∞ gives w → 1 (plain SFT).
        max_weight: w_max, or None for no clip.

    Returns:
        weights (P,) = min(exp((r − b) / λ), w_max) and clipped (P,) bool, True where the clip was active.
        The exponent is computed in float32 and capped before `exp` so it never overflows.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    advantages = rewards.float() if baselines is None else rewards.float() - baselines.float()
    log_weights = advantages / temperature
    if max_weight is None:
        weights = torch.exp(log_weights.clamp(max=80.0))
        return weights, torch.zeros_like(weights, dtype=torch.bool)
    log_max = torch.log(torch.tensor(float(max_weight), dtype=log_weights.dtype, device=log_weights.device))
    clipped = log_weights > log_max
    return torch.exp(torch.minimum(log_weights, log_max)), clipped


def user_mean_baseline(
    ratings: torch.Tensor, attention_mask: torch.Tensor, fallback: float | torch.Tensor = 0.0
) -> torch.Tensor:
    """Mean of the user's ratings in the history up to and including each position.

    Position t of a training batch holds event t as input and predicts event t + 1, so the history of the
    context at t is events 0..t and their ratings are all known (the target's rating, `label_ratings[t]`,
    is not used). Only the events inside the model's window are seen (the collator keeps the most recent
    `max_seq_len + 1`). A position with no rated history (padding only) gets `fallback`.

    Args:
        ratings: (B, N) ratings of the input events, 0 on padding.
        attention_mask: (B, N) 1 on real positions.
        fallback: value where the history is empty.

    Returns:
        (B, N) float32 running mean.
    """
    mask = attention_mask.float()
    sums = torch.cumsum(ratings.float() * mask, dim=1)  # (B, N)
    counts = torch.cumsum(mask, dim=1)  # (B, N)
    fallback = torch.as_tensor(fallback, dtype=sums.dtype, device=sums.device)
    return torch.where(counts > 0, sums / counts.clamp(min=1), fallback)


__all__ = ["advantage_weights", "user_mean_baseline"]
