"""PPO pieces for a one-step (contextual bandit) recommender: the clipped surrogate, the exact KL to the
reference policy over the catalogue, the value regression, and the baselines the advantages are taken from.

Schulman et al., "Proximal Policy Optimization Algorithms", arXiv 1707.06347, Eq. 7 (clipped objective).
Leave-one-out group baseline: Kool et al., "Buy 4 REINFORCE Samples, Get a Baseline for Free!" (RLOO,
ICLR 2019 workshop), as used by TRL's RLOO and, with the plain group mean, GRPO (arXiv 2402.03300).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Baselines b(x) of the advantage A = R̂(x, y) − b: a learned value head V(x), or the leave-one-out mean
# reward of the other items sampled at the same context (no learning).
PPO_BASELINES = ("value_head", "group_mean")


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


def leave_one_out_baseline(rewards: torch.Tensor) -> torch.Tensor:
    """RLOO baseline: for each sample, the mean reward of the OTHER samples of its context.

    Args:
        rewards: (C, S) rewards of S ≥ 2 items sampled at each of C contexts.

    Returns:
        (C, S) baselines b_ij = (Σ_k r_ik − r_ij) / (S − 1). The advantages r − b sum to zero per context
        (Σ_j (r_ij − b_ij) = S·mean − (S·S·mean − S·mean)/(S − 1) = 0) and b_ij does not depend on r_ij, so
        the policy gradient stays unbiased.
    """
    samples = rewards.shape[-1]
    if samples < 2:
        raise ValueError(f"a leave-one-out baseline needs at least 2 samples per context, got {samples}.")
    return (rewards.sum(dim=-1, keepdim=True) - rewards) / (samples - 1)


def explained_variance(
    targets: torch.Tensor,
    predictions: torch.Tensor,
    sum_over_processes: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """1 − Var(targets − predictions) / Var(targets) over all elements: the usual RL diagnostic of a baseline
    (1 = it explains every reward, 0 = no better than a constant, < 0 = worse; NaN when Var(targets) = 0).

    Computed from moment sums in float64 so that `sum_over_processes` (a function summing a (5,) tensor over
    processes) gives the statistic of the data of all processes together.
    """
    targets = targets.detach().double().reshape(-1)
    residuals = targets - predictions.detach().double().reshape(-1)
    stats = torch.stack([
        targets.new_tensor(float(targets.numel())), targets.sum(), (targets**2).sum(), residuals.sum(), (residuals**2).sum()
    ])
    if sum_over_processes is not None:
        stats = sum_over_processes(stats)
    count, target_sum, target_squares, residual_sum, residual_squares = stats.unbind()
    target_variance = target_squares / count - (target_sum / count) ** 2
    residual_variance = residual_squares / count - (residual_sum / count) ** 2
    return 1.0 - residual_variance / target_variance


__all__ = [
    "PPO_BASELINES",
    "categorical_kl",
    "clipped_policy_loss",
    "explained_variance",
    "leave_one_out_baseline",
    "value_loss",
]
