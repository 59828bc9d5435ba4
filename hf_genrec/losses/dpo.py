"""Rejection-sampled preference pairs and the DPO / IPO losses on item log-probabilities.

Pairs (brief, section 4; Netflix Technology Blog "RS-DPO / RS-IPO"): per context, candidates scored by a
K-member reward ensemble give an interval mean ± z·std per item; the pair (y_w, y_l) is kept only when the
intervals are separated, LB(y_w) > UB(y_l). Two rules pick the pair (`DPO_PAIR_RULES`):
- `confident_extremes`: y_w = argmax LB, y_l = argmin UB over the candidates (`separated_pairs`);
- `logged_vs_worse`: y_w = the logged item, y_l = the first candidate (in sampling order) whose interval lies
  entirely below the logged item's (`logged_vs_worse_pairs`).

Losses, with h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)], named and defined as
TRL 1.16's `DPOTrainer` defines them (an item is a one-token completion, so TRL's per-token IPO normalisation
is a division by 1):
- `sigmoid` (DPO, Rafailov et al. 2023, arXiv 2305.18290): −log σ(β h);
- `ipo` (IPO, Azar et al. 2023, arXiv 2310.12036, Eq. 17): (h − 1/(2β))²;
- `robust` (robust DPO, Chowdhury et al. 2024, arXiv 2403.00409): with ε = `label_smoothing`, the probability
  that a preference label is flipped, [−(1 − ε) log σ(β h) + ε log σ(−β h)] / (1 − 2ε), an unbiased estimate of
  the clean DPO loss under label noise.

Several loss types combine as TRL combines them: Σ_k w_k · loss_k (`loss_weights`, default all 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DPO_LOSS_TYPES = ("sigmoid", "ipo", "robust")
DPO_PAIR_RULES = ("confident_extremes", "logged_vs_worse")


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


def logged_vs_worse_pairs(
    mean: torch.Tensor, std: torch.Tensor, z: float, valid: torch.Tensor | None = None, logged_column: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The logged item against a candidate confidently worse than it, per context.

    y_w = the candidate in `logged_column` (the logged item); y_l = the first other valid candidate c (lowest
    column) with UB(c) < LB(y_w), LB/UB = mean ∓ z·std. When the other columns are a Gumbel-top-k draw from π_ref
    in key order, the first one that qualifies is a draw from π_ref restricted to the items confidently worse
    than the logged one (the arg-max of Gumbel-perturbed log-probabilities over a subset is a sample from it).

    Args:
        mean: (C, M) ensemble mean reward of each candidate.
        std: (C, M) ensemble standard deviation.
        z: interval half-width in standard deviations (z = 0 compares the means).
        valid: optional (C, M) bool, False for candidates to ignore (as rejected: the logged item is always y_w).
        logged_column: the column holding the logged item.

    Returns:
        chosen (C,) columns (all `logged_column`), rejected (C,) columns (arbitrary where not kept), keep (C,)
        bool: a confidently worse candidate exists.
    """
    lower_logged = (mean - z * std)[:, logged_column : logged_column + 1]  # (C, 1)
    worse = (mean + z * std) < lower_logged  # (C, M)
    if valid is not None:
        worse = worse & valid
    worse[:, logged_column] = False
    keep = worse.any(dim=1)
    rejected = worse.to(torch.uint8).argmax(dim=1)  # the first True column (argmax returns the first maximum)
    chosen = torch.full_like(rejected, logged_column)
    return chosen, rejected, keep


def _pair_loss(loss_type: str, h: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """(C,) loss of one `loss_type` from the (C,) log-ratio margins h."""
    if loss_type == "sigmoid":
        return -F.logsigmoid(beta * h)
    if loss_type == "ipo":
        # IPO, Eq. 17 of Azar et al.: regress the log-ratio margin to 1 / (2β).
        return (h - 1.0 / (2.0 * beta)) ** 2
    if loss_type == "robust":
        # rDPO (Chowdhury et al. 2024), as TRL 1.16 writes it: ε is the label-flip probability.
        clean = -(1 - label_smoothing) * F.logsigmoid(beta * h)
        flipped = -label_smoothing * F.logsigmoid(-beta * h)
        return (clean - flipped) / (1 - 2 * label_smoothing)
    raise ValueError(f"Unknown loss_type {loss_type!r}; valid values are {DPO_LOSS_TYPES}.")


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    loss_type: str | Sequence[str] = "sigmoid",
    loss_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair DPO-family loss (see the module docstring).

    Args:
        policy_chosen_logps, policy_rejected_logps: (C,) log π_θ of y_w and y_l.
        ref_chosen_logps, ref_rejected_logps: (C,) log π_ref of y_w and y_l.
        beta: β > 0.
        loss_type: one of `DPO_LOSS_TYPES`, or a list of them (TRL's form) combined with `loss_weights`.
        loss_weights: one weight per loss type (default: 1 each).
        label_smoothing: ε of the `robust` loss, in [0, 0.5); unused by the other loss types.

    Returns:
        losses (C,), chosen_rewards (C,) = β (log π_θ − log π_ref)(y_w) and rejected_rewards (C,), the
        implicit rewards TRL logs (detached).
    """
    loss_types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if loss_weights is not None and len(loss_weights) != len(loss_types):
        raise ValueError(
            f"loss_weights has {len(loss_weights)} weights for {len(loss_types)} loss types {loss_types}; give one "
            "weight per loss type."
        )
    chosen_logratios = policy_chosen_logps - ref_chosen_logps
    rejected_logratios = policy_rejected_logps - ref_rejected_logps
    h = chosen_logratios - rejected_logratios  # (C,)
    if len(loss_types) == 1 and loss_weights is None:
        losses = _pair_loss(loss_types[0], h, beta, label_smoothing)  # one loss: exactly that loss, no weighting
    else:
        weights = loss_weights if loss_weights is not None else [1.0] * len(loss_types)
        losses = sum(weight * _pair_loss(name, h, beta, label_smoothing) for name, weight in zip(loss_types, weights))
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


__all__ = ["DPO_LOSS_TYPES", "DPO_PAIR_RULES", "logged_vs_worse_pairs", "preference_loss", "separated_pairs"]
