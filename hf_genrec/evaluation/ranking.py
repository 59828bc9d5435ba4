"""Full-catalogue ranking metrics with seen items masked: pure functions over tensors.

Shapes:
    B: users in a batch, U: users evaluated in total, V: catalogue size (items 1..V; index 0 is padding),
    H: padded length of the per-user list of items to exclude (the user's history).

Protocol (brief, section 5): every real item is a candidate, items already in the user's history are
removed, and the held-out target is ranked among the rest. One relevant item per user, so
HR@k = 1[rank <= k], NDCG@k = 1[rank <= k] / log2(rank + 1) and MRR = 1 / rank, averaged over users.
"""

import math
from collections.abc import Sequence

import torch

from .metrics import (
    DEFAULT_HIGH_REWARD_THRESHOLD,
    DEFAULT_KS,
    MRR,
    NUM_USERS,
    SUBSET_ALL,
    SUBSET_HIGH_REWARD_TARGET,
    SUBSET_HIGH_REWARD_TRAJECTORY,
    SUBSETS,
    hr_key,
    ndcg_key,
    ranking_metric_names,
)

__all__ = ["per_user_ranking_metrics", "ranking_metrics", "subset_mask", "target_ranks"]


def target_ranks(
    scores: torch.Tensor,
    target_item_ids: torch.Tensor,
    exclude_item_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """1-based rank of each user's target among all candidate items of the catalogue.

    Candidates are the items 1..V minus the items listed in `exclude_item_ids`; the padding column 0 is
    never a candidate, whatever its score. The target itself stays a candidate even when it is listed in
    `exclude_item_ids`, as in the HSTU reference (it filters the history but not the target).

        rank[b] = 1 + #{candidate items i != target[b] : scores[b, i] >= scores[b, target[b]]}

    Ties are counted pessimistically (`>=`): the target is ranked below every candidate with the same
    score. Otherwise a model that gives every item the same score (collapsed or untrained) would rank
    every target first and get HR@k = NDCG@k = 1. For the same reason a target scored -inf gets the
    last rank among the candidates, not a rank that depends on how many items were excluded.

    Args:
        scores: (B, V+1) float, the score of every item, higher is better. Column 0 is padding.
        target_item_ids: (B,) int, the held-out item of each user, in 1..V.
        exclude_item_ids: (B, H) int or None, items to remove from the candidates (the user's full
            history); 0 entries are padding and ignored.

    Returns:
        (B,) int64 ranks in 1..(number of candidates), on the device of `scores`.

    Raises:
        ValueError: on bad shapes, item indices outside their range, or NaN scores (a NaN compares
            false with everything and would silently rank the target first).

    Memory is one (B, V+1) bool tensor; callers with many users pass batches.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, V+1), got shape {tuple(scores.shape)}")
    batch_size, num_columns = scores.shape
    if num_columns < 2:
        raise ValueError(
            f"scores must have a padding column and at least one item, got shape {tuple(scores.shape)}"
        )
    if target_item_ids.shape != (batch_size,):
        raise ValueError(
            f"target_item_ids must be (B,) = ({batch_size},), got shape {tuple(target_item_ids.shape)}"
        )
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; the ranks would be meaningless")
    targets = target_item_ids.to(device=scores.device, dtype=torch.long)
    if batch_size and (targets.min() < 1 or targets.max() >= num_columns):
        raise ValueError(
            f"target_item_ids must lie in 1..{num_columns - 1} (0 is padding), got {targets.tolist()}"
        )

    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    # A bool "beats or ties the target" mask, then the non-candidates are switched off in place: cheaper
    # than a masked float copy of the scores, and correct when the target itself is scored -inf.
    at_least_as_good = scores >= target_scores  # (B, V+1)
    at_least_as_good[:, 0] = False  # padding is never a candidate
    if exclude_item_ids is not None:
        if exclude_item_ids.dim() != 2 or exclude_item_ids.shape[0] != batch_size:
            raise ValueError(
                f"exclude_item_ids must be (B, H) with B = {batch_size}, got shape {tuple(exclude_item_ids.shape)}"
            )
        exclude = exclude_item_ids.to(device=scores.device, dtype=torch.long)
        if exclude.numel() and (exclude.min() < 0 or exclude.max() >= num_columns):
            raise ValueError(f"exclude_item_ids must lie in 0..{num_columns - 1} (0 is padding)")
        at_least_as_good.scatter_(1, exclude, False)  # padding entries hit column 0, already off
    at_least_as_good.scatter_(1, targets[:, None], False)  # the target does not outrank itself
    return 1 + at_least_as_good.sum(dim=1)  # (B,)


def _check_ranks(ranks: torch.Tensor) -> torch.Tensor:
    if ranks.dim() != 1:
        raise ValueError(f"ranks must be (U,), got shape {tuple(ranks.shape)}")
    if ranks.is_floating_point() or ranks.is_complex():
        raise ValueError(f"ranks must be integers, got dtype {ranks.dtype}")
    if ranks.numel() and ranks.min() < 1:
        raise ValueError("ranks are 1-based; got a rank < 1")
    return ranks


def per_user_ranking_metrics(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user ranking metrics; their means are `ranking_metrics` (bootstrap intervals resample these).

        hr@k[u]   = 1[rank[u] <= k]
        ndcg@k[u] = 1[rank[u] <= k] / log2(rank[u] + 1)     (one relevant item, so IDCG = 1)
        mrr[u]    = 1 / rank[u]

    A k larger than the catalogue is allowed: every rank is <= k, so hr@k = 1.

    Args:
        ranks: (U,) int, 1-based ranks from `target_ranks`.
        ks: cut-offs.

    Returns:
        `{name: (U,) float64 tensor}` for the names of `ranking_metric_names(ks)`, on the device of `ranks`.
    """
    _check_ranks(ranks)
    ks = tuple(ks)
    ranking_metric_names(ks)  # validates ks (positive ints, no duplicates)
    ranks_f = ranks.to(torch.float64)
    gain = 1.0 / torch.log2(ranks_f + 1.0)  # (U,)
    values: dict[str, torch.Tensor] = {}
    for k in ks:
        hit = ranks <= k  # (U,)
        values[hr_key(k)] = hit.to(torch.float64)
        values[ndcg_key(k)] = torch.where(hit, gain, torch.zeros_like(gain))
    values[MRR] = 1.0 / ranks_f
    return values


def ranking_metrics(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Mean HR@k, NDCG@k and MRR over users (definitions in `per_user_ranking_metrics`), plus `num_users`.

    Args:
        ranks: (U,) int, 1-based ranks from `target_ranks`.
        ks: cut-offs.

    Returns:
        `{"hr@k": float, "ndcg@k": float, ..., "mrr": float, "num_users": int}`. With no users (an empty
        subset) every metric is `nan` and `num_users` is 0: a mean over nobody is undefined, and `nan`
        cannot be mistaken for a real score, whereas 0 could.
    """
    per_user = per_user_ranking_metrics(ranks, ks)
    num_users = ranks.numel()
    metrics: dict[str, float] = {
        name: (values.mean().item() if num_users else math.nan) for name, values in per_user.items()
    }
    metrics[NUM_USERS] = num_users
    return metrics


def subset_mask(
    subset: str,
    target_ratings: torch.Tensor,
    trajectory_rewards: torch.Tensor,
    high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
) -> torch.Tensor:
    """Which users belong to a test subset (brief, section 5).

    - `all`: every user.
    - `high_reward_target`: target_rating >= `high_reward_threshold` (4.5 selects a 5 on 1-5 scales).
    - `high_reward_trajectory`: trajectory_reward > median(trajectory_rewards), strictly, where the median
      is taken over the users passed in (the evaluated population), as in the Netflix blog ("the
      accumulated reward is higher than the median of the population"). With a strict `>`, the even-count
      conventions (lower middle value or mean of the two middle values) select the same users.

    Args:
        subset: one of `SUBSETS`.
        target_ratings: (U,) float, the rating of each user's held-out target.
        trajectory_rewards: (U,) float, each user's accumulated reward (the caller passes the sum of the
            history ratings plus the target rating).
        high_reward_threshold: rating threshold of `high_reward_target`.

    Returns:
        (U,) bool mask on the device of `target_ratings`.
    """
    if target_ratings.dim() != 1 or trajectory_rewards.shape != target_ratings.shape:
        raise ValueError(
            "target_ratings and trajectory_rewards must both be (U,), got shapes "
            f"{tuple(target_ratings.shape)} and {tuple(trajectory_rewards.shape)}"
        )
    if subset == SUBSET_ALL:
        return torch.ones_like(target_ratings, dtype=torch.bool)
    if subset == SUBSET_HIGH_REWARD_TARGET:
        return target_ratings >= high_reward_threshold
    if subset == SUBSET_HIGH_REWARD_TRAJECTORY:
        if trajectory_rewards.numel() == 0:
            return torch.zeros_like(trajectory_rewards, dtype=torch.bool)
        rewards = trajectory_rewards.to(torch.float64)
        if torch.isnan(rewards).any():
            raise ValueError("trajectory_rewards contain NaN; the median is undefined")
        median = torch.quantile(rewards, 0.5)  # mean of the two middle values for an even count
        return (rewards > median).to(target_ratings.device)
    raise ValueError(f"unknown subset {subset!r}; valid subsets are {SUBSETS}")
