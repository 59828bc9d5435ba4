"""PPO pieces for a one-step (contextual bandit) recommender: the clipped surrogate, the exact KL to the
reference policy over the catalogue, and the value regression.

Schulman et al., "Proximal Policy Optimization Algorithms", arXiv 1707.06347, Eq. 7 (clipped objective).
"""

from __future__ import annotations

import torch


def clipped_policy_loss(
    log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample PPO policy loss −min(ρ A, clip(ρ, 1 − ε, 1 + ε) A), ρ = π_θ(y) / π_old(y).

    Args:
        log_probs: (S,) log π_θ(y) with gradient.
        old_log_probs: (S,) log π_old(y) of the rollout policy.
        advantages: (S,) advantages (constants).
        clip_range: ε.

    Returns:
        losses (S,), clipped (S,) bool (the clipped term was the minimum and differs), ratios (S,) detached.
    """
    ratios = torch.exp(log_probs - old_log_probs.detach())
    advantages = advantages.detach()
    unclipped = ratios * advantages
    clipped_term = torch.clamp(ratios, 1.0 - clip_range, 1.0 + clip_range) * advantages
    losses = -torch.minimum(unclipped, clipped_term)
    return losses, clipped_term < unclipped, ratios.detach()


def categorical_kl(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """Exact KL(π ‖ π_ref) = Σ_a π(a) (log π(a) − log π_ref(a)) per row.

    Args:
        log_probs: (C, A) log π (rows sum to 1 in probability; −inf where π(a) = 0).
        ref_log_probs: (C, A) log π_ref.

    Returns:
        (C,) KL divergences; actions with π(a) = 0 contribute 0.
    """
    probs = log_probs.exp()
    diff = torch.where(probs > 0, log_probs - ref_log_probs, torch.zeros_like(log_probs))
    return (probs * diff).sum(dim=-1)


def value_loss(values: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """Per-sample value regression ½ (V(x) − R)²."""
    return 0.5 * (values - returns.detach()) ** 2


__all__ = ["categorical_kl", "clipped_policy_loss", "value_loss"]
