"""Per-method diagnostics of the post-training study (issue 13, item 8): where a method's ranking gain over
reward-weighted BC comes from, how concentrated its training weights are, how far it moved from the pretrained
policy, and how its judge reward relates to its ranking quality.

- `paired_differences_by_bucket` (and its two uses, `..._by_target_rating`, `..._by_history_length`): the paired
  per-user difference of a ranking metric, method − reference, per bucket of evaluation rows, with a bootstrap
  interval over users (and seeds) from `hf_genrec.evaluation.statistics`;
- `effective_sample_size`: ESS = (Σw)² / Σw² of training weights (`SFTTrainer.training_weights`);
- `policy_kl`: KL(π_θ ‖ π_pretrained) over the full catalogue at each test context, the context's history excluded
  from both policies as the ranking excludes it;
- `judge_ranking_point` and `plot_judge_vs_ranking`: per method, NDCG@10 of the high-reward subset against the
  judge reward, with intervals.

Users, not rows: on the `future` split each test user has H rows (one per event of its test window). A per-user
value is the mean over the user's rows in the bucket or subset, as in the benchmark's report, and the intervals
resample users. This module reads `hf_genrec.trainers.policy` (the policy's log-probabilities), so it is imported as
`hf_genrec.evaluation.diagnostics`, not re-exported by `hf_genrec.evaluation` (the trainers import that package).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.columns import HISTORY_ITEM_IDS
from ..data.history import History
from ..trainers.policy import items_log_softmax, seen_item_mask
from .evaluator import RankingPredictions
from .judge import JudgeScores
from .metrics import MRR, SUBSET_ALL, SUBSET_HIGH_REWARD_TRAJECTORY, ndcg_key
from .ranking import per_user_ranking_metrics
from .statistics import bootstrap_mean_ci

__all__ = [
    "DEFAULT_HISTORY_LENGTH_EDGES",
    "BucketDifference",
    "EffectiveSampleSize",
    "JudgeRankingPoint",
    "case_users",
    "effective_sample_size",
    "history_length_buckets",
    "judge_ranking_point",
    "paired_differences_by_bucket",
    "paired_differences_by_history_length",
    "paired_differences_by_target_rating",
    "plot_judge_vs_ranking",
    "policy_kl",
]

# Lower edges of the history-length buckets (events before the target): [1, 10), [10, 20), ..., [500, ∞).
DEFAULT_HISTORY_LENGTH_EDGES: tuple[int, ...] = (10, 20, 50, 100, 200, 500)


def case_users(predictions: RankingPredictions) -> np.ndarray:
    """(N,) int64: the test user of each evaluation row, numbered 0.. in dataset order.

    Rows of the `future` split come user by user, each user's window in order from `window_position` 0, so a new
    user starts at every position 0; without windows (leave-one-out, temporal) every row is its own user.
    """
    positions = predictions.window_positions.cpu().numpy()
    if not predictions.has_windows:
        return np.arange(positions.size, dtype=np.int64)
    starts = positions == 0
    users = np.cumsum(starts) - 1
    expected = np.arange(positions.size) - np.flatnonzero(starts)[users]  # position within the user's rows
    if not starts[0] or not np.array_equal(positions, expected):
        raise ValueError("the evaluation rows' window_positions do not run 0..H-1 user by user, so rows cannot be "
                         "grouped into users. Fix: evaluate the `future` split's test rows unfiltered, in order.")
    return users


def _seeds(predictions: RankingPredictions | Sequence[RankingPredictions]) -> list[RankingPredictions]:
    return [predictions] if isinstance(predictions, RankingPredictions) else list(predictions)


def _per_user_means(values: np.ndarray, users: np.ndarray) -> np.ndarray:
    """(S, N) row values and (N,) users of the selected rows -> (S, U_selected) per-user means, users in order."""
    _, index = np.unique(users, return_inverse=True)
    counts = np.bincount(index)
    return np.stack([np.bincount(index, weights=row, minlength=counts.size) / counts for row in values])


@dataclass
class BucketDifference:
    """The paired difference of a metric, method − reference, over the users with rows in one bucket.

    Attributes:
        difference: mean over seeds and users of the per-user difference (each user's rows in the bucket averaged).
        low, high: bootstrap interval of `difference` over users (and seeds, with several).
        method, reference: the two methods' means over the same users.
        num_users: users with at least one row in the bucket; num_targets: rows in the bucket.
    """

    difference: float
    low: float
    high: float
    method: float
    reference: float
    num_users: int
    num_targets: int


def paired_differences_by_bucket(
    method: RankingPredictions | Sequence[RankingPredictions],
    reference: RankingPredictions | Sequence[RankingPredictions],
    buckets: np.ndarray | Sequence[Any],
    *,
    metric: str = ndcg_key(10),
    subset: str = SUBSET_ALL,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[Any, BucketDifference]:
    """Paired per-user difference of `metric` (method − reference) per bucket of evaluation rows.

    For each bucket, each user's value is the mean of the metric over the user's rows of `subset` in the bucket, the
    difference is taken user by user (paired), and its mean gets a bootstrap interval (`bootstrap_mean_ci`; with S
    seeds the (S, U) differences resample seeds and users, seed i of the method paired with seed i of the reference).

    Args:
        method: the method's predictions on the test rows, or one per seed.
        reference: the reference's (reward-weighted BC's) predictions on the same rows, as many seeds.
        buckets: (N,) bucket of each row (e.g. `history_length_buckets(...)`); buckets are reported sorted.
        metric: a per-row ranking metric of `per_user_ranking_metrics` (`ndcg@10`, `hr@50`, `mrr`, ...).
        subset: restrict to the rows of this test subset first (e.g. `high_reward_trajectory`).
        num_resamples, confidence, seed: of the bootstrap.

    Returns:
        `{bucket: BucketDifference}`; buckets with no row in the subset are left out.

    Raises:
        ValueError: different seed counts, predictions of different rows, or `buckets` of the wrong length.
    """
    methods, references = _seeds(method), _seeds(reference)
    if len(methods) != len(references) or not methods:
        raise ValueError(f"method and reference need the same number (>= 1) of seeds, got {len(methods)} and "
                         f"{len(references)}; pass one RankingPredictions per seed for both, in seed order.")
    first = methods[0]
    for other in [*methods[1:], *references]:
        # Same rows: same targets' ratings, histories and windows (NaN window rewards on rows without a window).
        if len(other) != len(first) or not all(
            torch.equal(a, b) or torch.allclose(a.double(), b.double(), rtol=0, atol=0, equal_nan=True)
            for a, b in zip(first.tensors()[1:], other.tensors()[1:])
        ):
            raise ValueError("method and reference predictions are not on the same evaluation rows (their targets "
                             "differ); predict both on the same test split, in dataset order.")
    buckets = np.asarray(buckets)
    if buckets.shape != (len(first),):
        raise ValueError(f"buckets must give one bucket per evaluation row, shape ({len(first)},), got "
                         f"{buckets.shape}; build them from the same test rows.")
    mask = first.subset_mask(subset).cpu().numpy()
    users = case_users(first)
    method_rows = np.stack([_metric_rows(p, metric) for p in methods])  # (S, N)
    reference_rows = np.stack([_metric_rows(p, metric) for p in references])
    results: dict[Any, BucketDifference] = {}
    for bucket in np.unique(buckets[mask]):
        selected = mask & (buckets == bucket)
        method_users = _per_user_means(method_rows[:, selected], users[selected])  # (S, U_bucket)
        reference_users = _per_user_means(reference_rows[:, selected], users[selected])
        difference, low, high = bootstrap_mean_ci(method_users - reference_users, num_resamples=num_resamples,
                                                  confidence=confidence, seed=seed)
        results[bucket.item() if hasattr(bucket, "item") else bucket] = BucketDifference(
            difference, low, high, float(method_users.mean()), float(reference_users.mean()),
            num_users=method_users.shape[1], num_targets=int(selected.sum()))
    return results


def _metric_rows(predictions: RankingPredictions, metric: str) -> np.ndarray:
    """(N,) per-row values of `metric` at any cut-off (`hr@k`, `ndcg@k`, `mrr`)."""
    name, _, cutoff = metric.partition("@")
    if metric == MRR:
        cutoff = "1"
    elif name not in ("hr", "ndcg") or not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"metric must be a per-row ranking metric ('ndcg@10', 'hr@50', 'mrr'), got {metric!r}.")
    return per_user_ranking_metrics(predictions.ranks, [int(cutoff)])[metric].cpu().numpy()


def paired_differences_by_target_rating(
    method: RankingPredictions | Sequence[RankingPredictions],
    reference: RankingPredictions | Sequence[RankingPredictions],
    **kwargs: Any,
) -> dict[float, BucketDifference]:
    """`paired_differences_by_bucket` with one bucket per target rating (1.0 .. 5.0 on ML-1M)."""
    buckets = _seeds(method)[0].target_ratings.cpu().numpy()
    return paired_differences_by_bucket(method, reference, buckets, **kwargs)


def history_length_buckets(
    history_lengths: np.ndarray | Sequence[int], edges: Sequence[int] = DEFAULT_HISTORY_LENGTH_EDGES
) -> np.ndarray:
    """(N,) label of each row's history-length bucket: `"[a, b)"` for a <= length < b, the first bucket from 0, the
    last `"[e, inf)"`.

    Args:
        history_lengths: (N,) events in each row's history (`hf_genrec.evaluation.judge.history_lengths(dataset)`).
        edges: increasing lower edges of the buckets after the first.
    """
    edges = list(edges)
    if edges != sorted(set(edges)) or not edges or edges[0] <= 0:
        raise ValueError(f"edges must be strictly increasing positive lengths, got {edges}; e.g. "
                         f"{list(DEFAULT_HISTORY_LENGTH_EDGES)}.")
    bounds = [0, *edges, math.inf]
    labels = np.array([f"[{bounds[i]}, {bounds[i + 1]})" for i in range(len(bounds) - 1)])
    return labels[np.searchsorted(np.asarray(edges), np.asarray(history_lengths), side="right")]


def paired_differences_by_history_length(
    method: RankingPredictions | Sequence[RankingPredictions],
    reference: RankingPredictions | Sequence[RankingPredictions],
    history_lengths: np.ndarray | Sequence[int],
    edges: Sequence[int] = DEFAULT_HISTORY_LENGTH_EDGES,
    **kwargs: Any,
) -> dict[str, BucketDifference]:
    """`paired_differences_by_bucket` by history-length bucket (`history_length_buckets`), in `edges` order."""
    results = paired_differences_by_bucket(method, reference, history_length_buckets(history_lengths, edges),
                                           **kwargs)
    return dict(sorted(results.items(), key=lambda item: int(item[0][1:].split(",")[0])))  # "[10, 20)" -> 10


@dataclass
class EffectiveSampleSize:
    """ESS = (Σw)² / Σw² of N weights, and `fraction` = ESS / N (1: uniform weights; 1/N: one position counts)."""

    ess: float
    fraction: float
    num_positions: int


def effective_sample_size(weights: torch.Tensor | np.ndarray) -> EffectiveSampleSize:
    """Kish's effective sample size of training weights: how many equally weighted positions they are worth.

    Args:
        weights: (N,) non-negative weights, e.g. `SFTTrainer.training_weights().weights` of A-SFT or RW-BC on the
            training split (the trainers' own weighting, so the diagnostic is the training's).

    Raises:
        ValueError: a negative or non-finite weight, or all weights zero.
    """
    values = torch.as_tensor(weights).detach().cpu().double().reshape(-1)
    if not torch.isfinite(values).all() or (values < 0).any():
        raise ValueError("weights must be finite and >= 0; pass the loss weights of the training positions.")
    total, squares = values.sum().item(), values.square().sum().item()
    if squares == 0:
        raise ValueError(f"the {values.numel()} weights are all zero, so the effective sample size is undefined.")
    ess = total * total / squares
    return EffectiveSampleSize(ess, ess / values.numel(), values.numel())


@torch.no_grad()
def policy_kl(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(N,) float64 KL(π_θ ‖ π_ref) at each evaluation row's context, over the full catalogue minus the history.

        KL[n] = Σ_i π_θ(i | x_n) (log π_θ(i | x_n) − log π_ref(i | x_n)),   i ∉ history(x_n)

    with π(·|x) = `items_log_softmax` of the model's fp32 `score_next_items` with the history's items removed
    (`seen_item_mask` of `history_item_ids`, the items the ranking excludes), the policy the trainers optimise
    restricted to what can be recommended. Its mean is the average KL over test contexts; `case_users` groups
    rows into users.

    Args:
        policy: the post-trained recommender (`score_next_items`).
        reference: the pretrained one, same catalogue.
        dataset: evaluation rows (the test split), read in order.
        collator: the evaluation collator (`SequenceCollator`).
        batch_size: rows per forward pass.
        device: where to run; default the policy's device.
    """
    device = torch.device(device) if device is not None else next(policy.parameters()).device
    modes = policy.training, reference.training
    policy.eval()
    reference.eval()
    values = []
    try:
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator):
            batch = {key: value.to(device) for key, value in batch.items()}
            inputs = History.from_batch(batch).model_inputs()
            scores = policy.score_next_items(**inputs).float()  # (B, V + 1)
            exclude = seen_item_mask(batch[HISTORY_ITEM_IDS], scores.shape[1])
            log_p = items_log_softmax(scores, exclude)
            log_q = items_log_softmax(reference.score_next_items(**inputs).float(), exclude)
            terms = torch.where(exclude, torch.zeros_like(log_p), log_p.exp() * (log_p - log_q))
            values.append(terms.double().sum(dim=1).cpu())
    finally:
        policy.train(modes[0])
        reference.train(modes[1])
    return torch.cat(values) if values else torch.zeros(0, dtype=torch.float64)


@dataclass
class JudgeRankingPoint:
    """One method in the judge-vs-ranking figure: x = ranking metric, y = judge reward, with intervals."""

    ranking: float
    ranking_low: float
    ranking_high: float
    judge: float
    judge_low: float
    judge_high: float


def judge_ranking_point(
    rankings: RankingPredictions | Sequence[RankingPredictions],
    judges: JudgeScores | Sequence[JudgeScores],
    *,
    metric: str = ndcg_key(10),
    ranking_subset: str = SUBSET_HIGH_REWARD_TRAJECTORY,
    judge_subset: str = SUBSET_ALL,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> JudgeRankingPoint:
    """A method's point: mean per-user `metric` over `ranking_subset` and mean per-user judge score over
    `judge_subset`, each with its bootstrap interval over users (and seeds: one predictions/judge pair per seed).

    Args:
        rankings: the method's ranking predictions on the test rows, one per seed.
        judges: its judge scores on the same rows (`JudgeScores`, aligned with the rows), one per seed.
        metric: the ranking metric (x).
        ranking_subset: x's subset; the post's high-reward trajectories by default (on leave-one-out rows pass
            `high_reward_target`).
        judge_subset: y's subset.
    """
    rankings, judges = _seeds(rankings), [judges] if isinstance(judges, JudgeScores) else list(judges)
    if len(rankings) != len(judges) or any(len(r) != len(j) for r, j in zip(rankings, judges)):
        raise ValueError("rankings and judges must pair up seed by seed on the same rows; got "
                         f"{[len(r) for r in rankings]} ranking rows and {[len(j) for j in judges]} judged rows.")
    users = case_users(rankings[0])
    ranking_mask = rankings[0].subset_mask(ranking_subset).cpu().numpy()
    judge_mask = rankings[0].subset_mask(judge_subset).cpu().numpy()
    ranking_values = _per_user_means(np.stack([_metric_rows(r, metric) for r in rankings])[:, ranking_mask],
                                     users[ranking_mask])
    judge_values = _per_user_means(np.stack([j.scores.cpu().double().numpy() for j in judges])[:, judge_mask],
                                   users[judge_mask])
    options = dict(num_resamples=num_resamples, confidence=confidence, seed=seed)
    return JudgeRankingPoint(*bootstrap_mean_ci(ranking_values, **options), *bootstrap_mean_ci(judge_values, **options))


def plot_judge_vs_ranking(
    points: Mapping[str, JudgeRankingPoint],
    path: str | os.PathLike,
    *,
    xlabel: str = "NDCG@10 (high-reward trajectories)",
    ylabel: str = "judge reward",
) -> str:
    """Scatter of the methods' `JudgeRankingPoint`s with their intervals as error bars, saved to `path` (PNG).

    A method above the others on the judge but not on the ranking is what overfitting the reward model looks like.
    Needs matplotlib (`pip install matplotlib`).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # optional dependency, as the benchmark's figures
        raise ImportError("plot_judge_vs_ranking needs matplotlib: pip install matplotlib") from error
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, point in points.items():
        xerr = [[point.ranking - point.ranking_low], [point.ranking_high - point.ranking]]
        yerr = [[point.judge - point.judge_low], [point.judge_high - point.judge]]
        ax.errorbar([point.ranking], [point.judge], xerr=np.nan_to_num(xerr).clip(min=0),
                    yerr=np.nan_to_num(yerr).clip(min=0), marker="o", capsize=3, label=name)
        ax.annotate(name, (point.ranking, point.judge), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("judge reward vs ranking; bars: 95% intervals")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
