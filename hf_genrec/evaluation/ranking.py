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
    SUBSET_LONG_HISTORY,
    SUBSET_TRAJECTORY_REWARD_QUARTILES,
    SUBSETS,
    TRAJECTORY_SUBSETS,
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


def _user_quantiles(window_rewards: torch.Tensor, window_positions: torch.Tensor, q: list[float]) -> torch.Tensor:
    """Quantiles `q` of the accumulated window reward over the test USERS, each user once (its position-0 row
    stands for it: every user's H rows carry the same reward). Shape (len(q),) float64."""
    first = window_positions == 0
    if not first.any():
        raise ValueError(
            "the evaluation rows have window columns but no row at window_position 0, so the users cannot be "
            "counted once each. Fix: evaluate every row of each user's window (the `future` split's rows unfiltered)."
        )
    rewards = window_rewards[first].to(torch.float64)
    if torch.isnan(rewards).any():
        raise ValueError("window_rewards contain NaN; the median over users is undefined")
    return torch.quantile(rewards, torch.tensor(q, dtype=torch.float64, device=rewards.device))


def _trajectory_mask(subset: str, window_rewards: torch.Tensor, window_positions: torch.Tensor) -> torch.Tensor:
    if window_rewards.numel() == 0:
        return torch.zeros_like(window_rewards, dtype=torch.bool)
    rewards = window_rewards.to(torch.float64)
    if subset == SUBSET_HIGH_REWARD_TRAJECTORY:
        return rewards > _user_quantiles(window_rewards, window_positions, [0.5])[0]
    quartile = SUBSET_TRAJECTORY_REWARD_QUARTILES.index(subset)  # 0..3
    bounds = _user_quantiles(window_rewards, window_positions, [0.25, 0.5, 0.75])
    above = rewards > bounds[quartile - 1] if quartile > 0 else torch.ones_like(rewards, dtype=torch.bool)
    below = rewards <= bounds[quartile] if quartile < 3 else torch.ones_like(rewards, dtype=torch.bool)
    return above & below


def subset_mask(
    subset: str,
    target_ratings: torch.Tensor,
    history_rewards: torch.Tensor,
    high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
    window_rewards: torch.Tensor | None = None,
    window_positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Which evaluation cases belong to a test subset (brief, section 5).

    - `all`: every case.
    - `high_reward_target`: target_rating >= `high_reward_threshold` (4.5 selects a 5 on 1-5 scales).
    - `long_history`: history_reward > median(history_rewards) over the cases passed in, strictly. The sum of a
      history's ratings grows with its length (0.987 correlation with the number of ratings on ML-1M), so this
      selects long histories; it was called `high_reward_trajectory` before the `future` protocol existed.
    - `high_reward_trajectory` (rows with a test window only, the `future` split): the cases of the users whose
      accumulated window reward (sum of the H observed ratings of their test window) is strictly above the
      median over the test USERS, each user counted once whatever its number of rows, as in the Netflix post
      ("the accumulated reward is higher than the median of the population").
    - `trajectory_reward_q1` .. `q4` (windowed rows only): the users by quartile of accumulated window reward,
      quartiles over users; q1 = reward <= Q1, q2 = Q1 < reward <= median, q3 = median < reward <= Q3,
      q4 = reward > Q3, so q3 and q4 together are `high_reward_trajectory` (ties go to the lower quartile).

    Medians and quartiles are linear-interpolation quantiles (`torch.quantile`); with a strict `>`, the
    even-count conventions of the median select the same cases.

    Args:
        subset: one of `SUBSETS`.
        target_ratings: (U,) float, the rating of each case's held-out target.
        history_rewards: (U,) float, the sum of each case's history ratings plus its target rating.
        high_reward_threshold: rating threshold of `high_reward_target`.
        window_rewards: (U,) float or None, each case's user's accumulated window reward; None for rows
            without a test window (leave-one-out, temporal).
        window_positions: (U,) int or None, each case's position in its user's window (0..H-1); the
            position-0 rows stand for the users when the quantiles over users are taken.

    Returns:
        (U,) bool mask on the device of `target_ratings`.

    Raises:
        ValueError: an unknown subset, mismatched shapes, or a trajectory subset asked on rows without windows.
    """
    if target_ratings.dim() != 1 or history_rewards.shape != target_ratings.shape:
        raise ValueError(
            "target_ratings and history_rewards must both be (U,), got shapes "
            f"{tuple(target_ratings.shape)} and {tuple(history_rewards.shape)}"
        )
    if (window_rewards is None) != (window_positions is None):
        raise ValueError("window_rewards and window_positions go together: pass both or neither.")
    if window_rewards is not None and not (window_rewards.shape == window_positions.shape == target_ratings.shape):
        raise ValueError(
            "window_rewards and window_positions must be (U,) like target_ratings, got shapes "
            f"{tuple(window_rewards.shape)}, {tuple(window_positions.shape)} and {tuple(target_ratings.shape)}"
        )
    if subset == SUBSET_ALL:
        return torch.ones_like(target_ratings, dtype=torch.bool)
    if subset == SUBSET_HIGH_REWARD_TARGET:
        return target_ratings >= high_reward_threshold
    if subset == SUBSET_LONG_HISTORY:
        if history_rewards.numel() == 0:
            return torch.zeros_like(history_rewards, dtype=torch.bool)
        rewards = history_rewards.to(torch.float64)
        if torch.isnan(rewards).any():
            raise ValueError("history_rewards contain NaN; the median is undefined")
        median = torch.quantile(rewards, 0.5)  # mean of the two middle values for an even count
        return (rewards > median).to(target_ratings.device)
    if subset in TRAJECTORY_SUBSETS:
        if window_rewards is None:
            raise ValueError(
                f"subset {subset!r} needs each test user's accumulated reward over a window of H future events, "
                "and these evaluation rows have none (a leave-one-out or temporal split: one target per user). "
                "Fix: split with the `future` protocol (`split_sequences(sequences, 'future')`), or ask for "
                f"{SUBSET_HIGH_REWARD_TARGET!r} or {SUBSET_LONG_HISTORY!r}."
            )
        return _trajectory_mask(subset, window_rewards, window_positions).to(target_ratings.device)
    raise ValueError(f"unknown subset {subset!r}; valid subsets are {SUBSETS}")
