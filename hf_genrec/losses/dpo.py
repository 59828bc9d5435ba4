"""Rejection-sampled preference pairs and the DPO / IPO losses on item log-probabilities.

Pairs (brief, section 4; Netflix Technology Blog "RS-DPO / RS-IPO"): per context, candidates scored by a
K-member reward ensemble give an interval mean ± z·std per item; the pair (y_w, y_l) is kept only when the
intervals are separated, LB(y_w) > UB(y_l).

Losses, with h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)]:
- `sigmoid` (DPO, Rafailov et al. 2023, arXiv 2305.18290): −log σ(β h);
- `ipo` (IPO, Azar et al. 2023, arXiv 2310.12036, Eq. 17): (h − 1/(2β))².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo")


def separated_pairs(
    mean: torch.Tensor, std: torch.Tensor, z: float, valid: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The most separated pair of candidates per context, and whether their intervals are separated.

    y_w = argmax_c LB(c), y_l = argmin_c UB(c) with LB = mean − z·std and UB = mean + z·std; the pair is
    kept when LB(y_w) > UB(y_l). This is the pair most likely to pass the test, so a context is dropped only
    when no pair of its candidates is separated.

    Args:
        mean: (C, M) ensemble mean reward of each candidate.
        std: (C, M) ensemble standard deviation.
        z: interval half-width in standard deviations (z = 0 compares the means).
        valid: optional (C, M) bool, False for candidates to ignore.

    Returns:
        chosen (C,) and rejected (C,) candidate columns, keep (C,) bool.
    """
    lower = mean - z * std
    upper = mean + z * std
    if valid is not None:
        lower = lower.masked_fill(~valid, float("-inf"))
        upper = upper.masked_fill(~valid, float("inf"))
    chosen = lower.argmax(dim=1)  # (C,)
    rejected = upper.argmin(dim=1)  # (C,)
    best_lower = lower.gather(1, chosen[:, None]).squeeze(1)
    worst_upper = upper.gather(1, rejected[:, None]).squeeze(1)
    keep = (best_lower > worst_upper) & (chosen != rejected)
    return chosen, rejected, keep


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO / IPO loss.

    Args:
        policy_chosen_logps, policy_rejected_logps: (C,) log π_θ of y_w and y_l.
        ref_chosen_logps, ref_rejected_logps: (C,) log π_ref of y_w and y_l.
        beta: β > 0.
        loss_type: `"sigmoid"` (DPO) or `"ipo"`.

    Returns:
        losses (C,), chosen_rewards (C,) = β (log π_θ − log π_ref)(y_w) and rejected_rewards (C,), the
        implicit rewards TRL logs (detached).
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios  # (C,)
    if loss_type == "sigmoid":
        losses = -F.logsigmoid(beta * h)
    elif loss_type == "ipo":
        # IPO, Eq. 17 of Azar et al.: regress the log-ratio margin to 1 / (2β).
        losses = (h - 1.0 / (2.0 * beta)) ** 2
    else:
        raise ValueError(f"Unknown loss_type {loss_type!r}; valid values are {DPO_LOSS_TYPES}.")
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


__all__ = ["DPO_LOSS_TYPES", "preference_loss", "separated_pairs"]
