"""Reward-model metrics and the reward table (the Netflix post's Table 1, on our data).

Pure functions over arrays (`rmse`, `mae`, `binary_auc`, `pairwise_accuracy`), then `reward_table`,
which runs the reward heads and the naive baselines on the held-out events and computes them all, and
`uncertainty_by_popularity`, which checks where the ensemble disagrees.

Metric names are defined once here and shared with `RewardTrainer`, which logs them under
`hf_genrec.evaluation.metrics.metric_key` (`eval_reward/rmse`, ...).

Shapes: U evaluation cases, K ensemble members, C candidates per case, V items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..data.collator import SequenceCollator
from ..data.columns import ITEM_IDS, TARGET_ITEM_ID, TARGET_ITEM_IDS, TARGET_RATING, USER_ID
from ..data.history import History
from .baselines import ItemMeanReward, fit_reward_baselines, target_column
from .ensemble import RewardEnsemble, RewardPrediction

__all__ = [
    "HIGH_REWARD_THRESHOLD",
    "LOW_REWARD_THRESHOLD",
    "NEXT_ITEM_LOSS",
    "NUM_CASES",
    "PREDICTORS",
    "REWARD_AUC",
    "REWARD_MAE",
    "REWARD_MSE",
    "REWARD_PAIRWISE_ACCURACY",
    "REWARD_RMSE",
    "VALUE_MSE",
    "VALUE_RMSE",
    "binary_auc",
    "format_reward_table",
    "format_uncertainty",
    "mae",
    "pairwise_accuracy",
    "popularity_bins",
    "predict_candidate_rewards",
    "predict_targets",
    "reward_table",
    "rmse",
    "uncertainty_by_popularity",
]

# Metric names (namespaced; logged as `metric_key(name, prefix=...)`, e.g. `eval_reward/rmse`).
REWARD_RMSE = "reward/rmse"
REWARD_MAE = "reward/mae"
REWARD_MSE = "reward/mse"
REWARD_AUC = "reward/auc"
REWARD_PAIRWISE_ACCURACY = "reward/pairwise_accuracy"
VALUE_MSE = "value/mse"
VALUE_RMSE = "value/rmse"
NEXT_ITEM_LOSS = "next_item/loss"
# Evaluation cases a reward evaluation scored.
NUM_CASES = "num_cases"

# Directional score: how well predictions separate liked (>= 4 stars) from disliked (<= 2 stars) events.
HIGH_REWARD_THRESHOLD = 4.0
LOW_REWARD_THRESHOLD = 2.0

# Rows of the reward table, in report order, with their Markdown labels.
PREDICTORS = {
    "reward_head": "reward head (member 0)",
    "ensemble_mean": "ensemble mean",
    "user_mean": "user mean",
    "item_mean": "item mean",
    "global_mean": "global mean",
}

PROTOCOL = (
    "RMSE, MAE and AUC: the test split, one case per user (the rating of the user's held-out test event, "
    "predicted from the history before it). AUC separates test ratings >= {high} from <= {low} (others left "
    "out; ties count 1/2). Pairwise accuracy (within user): for each user with a validation and a test event "
    "of different ratings, both items are scored from the same context, the history before the validation "
    "event (with leave-one-out: the training sequence, so neither event was trained on), and the pair is "
    "correct when the higher-rated item scores higher (ties count 1/2); a predictor that ignores the item, "
    "like the user mean, scores exactly 0.5. Baselines are fitted on the training split; the user mean is "
    "the mean rating of the context's history."
)


def _as_numpy(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def rmse(predictions: Any, targets: Any) -> float:
    """sqrt(mean((prediction - target)^2)) over U cases (NaN without cases)."""
    predictions, targets = _as_numpy(predictions), _as_numpy(targets)
    if predictions.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((predictions - targets) ** 2)))


def mae(predictions: Any, targets: Any) -> float:
    """mean(|prediction - target|) over U cases."""
    predictions, targets = _as_numpy(predictions), _as_numpy(targets)
    return float(np.mean(np.abs(predictions - targets)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, ties sharing their average rank (as in the Mann-Whitney U statistic)."""
    unique, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # (unique,)
    return (first_rank + (counts - 1) / 2.0)[inverse]


def binary_auc(
    scores: Any,
    ratings: Any,
    high_threshold: float = HIGH_REWARD_THRESHOLD,
    low_threshold: float = LOW_REWARD_THRESHOLD,
) -> float:
    """AUC of `scores` separating cases rated >= `high_threshold` from cases rated <= `low_threshold`.

    AUC = P(score of a random high case > score of a random low case) + 1/2 P(equal scores), computed
    from average ranks (Mann-Whitney). Cases in between are left out. NaN when either class is empty.
    """
    scores, ratings = _as_numpy(scores), _as_numpy(ratings)
    if low_threshold >= high_threshold:
        raise ValueError(f"low_threshold ({low_threshold}) must be below high_threshold ({high_threshold}).")
    positive, negative = ratings >= high_threshold, ratings <= low_threshold
    num_positive, num_negative = int(positive.sum()), int(negative.sum())
    if num_positive == 0 or num_negative == 0:
        return float("nan")
    ranks = _average_ranks(scores[positive | negative])
    positive_ranks = ranks[positive[positive | negative]]
    u_statistic = positive_ranks.sum() - num_positive * (num_positive + 1) / 2.0
    return float(u_statistic / (num_positive * num_negative))


def pairwise_accuracy(predictions: Any, ratings: Any, groups: Any) -> tuple[float, int]:
    """Within-group ordering accuracy.

    Over every pair (i, j) of cases in the same group (user) with different ratings: 1 if the predictions
    order them like the ratings, 1/2 if the predictions are equal, 0 otherwise; averaged over pairs.

    Args:
        predictions: (U,) predicted rewards.
        ratings: (U,) observed rewards.
        groups: (U,) group keys (e.g. user ids), any comparable type.

    Returns:
        (accuracy, number of pairs); accuracy is NaN when there is no pair.
    """
    predictions, ratings = _as_numpy(predictions), _as_numpy(ratings)
    _, group_index = np.unique(np.asarray(groups), return_inverse=True)
    if not len(predictions) == len(ratings) == len(group_index):
        raise ValueError(
            f"predictions ({len(predictions)}), ratings ({len(ratings)}) and groups ({len(group_index)}) differ in length."
        )
    order = np.argsort(group_index, kind="stable")
    group_index, predictions, ratings = group_index[order], predictions[order], ratings[order]
    max_group = int(np.bincount(group_index).max()) if len(group_index) else 0
    correct, pairs = 0.0, 0
    # Sorted by group, the pairs of a group are (k, k + offset) for offsets below its size.
    for offset in range(1, max_group):
        same = group_index[offset:] == group_index[:-offset]
        rating_diff = (ratings[offset:] - ratings[:-offset])[same]
        prediction_diff = (predictions[offset:] - predictions[:-offset])[same]
        informative = rating_diff != 0
        agreement = np.sign(rating_diff[informative]) * np.sign(prediction_diff[informative])  # 1, 0 or -1
        correct += float(((agreement + 1) / 2).sum())
        pairs += int(informative.sum())
    return (correct / pairs if pairs else float("nan")), pairs


@torch.no_grad()
def predict_candidate_rewards(
    ensemble: RewardEnsemble, dataset: Any, candidate_item_ids: Any, batch_size: int = 256
) -> RewardPrediction:
    """The ensemble's rewards of given items after each evaluation row's history.

    Args:
        dataset: U evaluation rows (history + target).
        candidate_item_ids: (U, C) item indices to score for each row.

    Returns:
        `RewardPrediction` with (U, C) `mean` / `std` and (K, U, C) `members`, on CPU, in dataset order.
    """
    candidates = torch.as_tensor(np.asarray(candidate_item_ids, dtype=np.int64))
    if candidates.dim() != 2 or candidates.shape[0] != len(dataset):
        raise ValueError(f"candidate_item_ids must be ({len(dataset)}, C), got {tuple(candidates.shape)}.")
    collator = SequenceCollator(max_seq_len=ensemble.config.max_seq_len)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    members, offset = [], 0
    for batch in loader:
        size = batch[ITEM_IDS].shape[0]
        prediction = ensemble.predict_candidates(
            History.from_batch(batch), candidate_item_ids=candidates[offset : offset + size]
        )  # (K, B, C)
        members.append(prediction.members.float().cpu())
        offset += size
    return RewardPrediction.from_members(torch.cat(members, dim=1))  # (K, U, C)


def predict_targets(ensemble: RewardEnsemble, dataset: Any, batch_size: int = 256) -> RewardPrediction:
    """The ensemble's prediction of each evaluation row's target reward, from its history.

    Returns a `RewardPrediction` with (U,) `mean` / `std` and (K, U) `members`, on CPU, in dataset order.
    """
    targets = target_column(dataset, TARGET_ITEM_ID, np.int64)[:, None]  # (U, 1)
    prediction = predict_candidate_rewards(ensemble, dataset, targets, batch_size)
    return RewardPrediction(
        mean=prediction.mean[:, 0], std=prediction.std[:, 0], members=prediction.members[..., 0]
    )


def _finite_targets(dataset: Any, split: str) -> np.ndarray:
    ratings = target_column(dataset, TARGET_RATING, np.float64)
    if not np.isfinite(ratings).all():
        raise ValueError(f"the {split} split's {TARGET_RATING!r} holds NaN or infinite values.")
    return ratings


def reward_table(
    ensemble: RewardEnsemble,
    splits: Any,
    *,
    batch_size: int = 256,
    high_threshold: float = HIGH_REWARD_THRESHOLD,
    low_threshold: float = LOW_REWARD_THRESHOLD,
) -> dict[str, Any]:
    """The reward table: RMSE, MAE, AUC (>= high vs <= low) and within-user pairwise accuracy of the single
    reward head (member 0), the ensemble mean and the user-mean, item-mean and global-mean baselines.

    Protocol (`PROTOCOL`):

    - RMSE, MAE, AUC on the test split: one case per user, the held-out test event predicted from the
      history before it.
    - Pairwise accuracy needs several scored events per user: each user's validation and test events
      (with leave-one-out, the last two, both absent from training) are scored from the same context, the
      validation row's history, and ordered; users with equal ratings on both give no pair. Scoring both
      from one context makes it a test of ordering items for a user, which is what rejection-sampled
      preference pairs and the judge rely on, and gives item-blind predictors exactly 0.5.

    Args:
        ensemble: the reward ensemble (K >= 1).
        splits: a `DatasetDict` (or mapping) with `train`, `validation` and `test`.
        batch_size: histories per forward pass.

    Returns:
        JSON-serialisable dict: `predictors` ({name: {reward/rmse, reward/mae, reward/auc,
        reward/pairwise_accuracy}}), the case counts and the protocol text.
    """
    missing = [name for name in ("train", "validation", "test") if name not in splits]
    if missing:
        raise ValueError(f"reward_table needs the splits train, validation and test; {missing} missing.")
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    baselines = fit_reward_baselines(train, ensemble.config.num_items)

    # Test cases: the test target from its own history.
    test_ratings = _finite_targets(test, "test")
    test_prediction = predict_targets(ensemble, test, batch_size)
    test_predictions = {
        "reward_head": test_prediction.members[0].double().numpy(),
        "ensemble_mean": test_prediction.mean.double().numpy(),
        **{name: baseline.predict(test) for name, baseline in baselines.items()},
    }

    # Pairs: the validation and the test item of each user, both from the validation context.
    test_row = {user: row for row, user in enumerate(test[USER_ID])}
    paired = [(row, test_row[user]) for row, user in enumerate(validation[USER_ID]) if user in test_row]
    context = validation.select([v for v, _ in paired])
    test_rows = np.asarray([t for _, t in paired], dtype=np.int64)
    pair_items = np.stack(
        [target_column(context, TARGET_ITEM_ID, np.int64), target_column(test, TARGET_ITEM_ID, np.int64)[test_rows]],
        axis=1,
    )  # (U2, 2)
    pair_ratings = np.stack([_finite_targets(context, "validation"), test_ratings[test_rows]], axis=1)  # (U2, 2)
    pair_prediction = predict_candidate_rewards(ensemble, context, pair_items, batch_size)  # (K, U2, 2)
    item_means = baselines["item_mean"].item_means
    item_blind = {name: np.repeat(baselines[name].predict(context)[:, None], 2, axis=1)
                  for name in ("user_mean", "global_mean")}
    pair_predictions = {
        "reward_head": pair_prediction.members[0].double().numpy(),
        "ensemble_mean": pair_prediction.mean.double().numpy(),
        "user_mean": item_blind["user_mean"],
        "item_mean": item_means[pair_items],
        "global_mean": item_blind["global_mean"],
    }
    pair_groups = np.repeat(np.arange(len(paired)), 2)

    rows, num_pairs = {}, 0
    for name in PREDICTORS:
        accuracy, num_pairs = pairwise_accuracy(pair_predictions[name].reshape(-1), pair_ratings.reshape(-1), pair_groups)
        predictions = test_predictions[name]
        rows[name] = {
            REWARD_RMSE: rmse(predictions, test_ratings),
            REWARD_MAE: mae(predictions, test_ratings),
            REWARD_AUC: binary_auc(predictions, test_ratings, high_threshold, low_threshold),
            REWARD_PAIRWISE_ACCURACY: accuracy,
        }
    return {
        "predictors": rows,
        "num_members": ensemble.num_members,
        "num_test_cases": int(len(test_ratings)),
        "num_auc_high": int((test_ratings >= high_threshold).sum()),
        "num_auc_low": int((test_ratings <= low_threshold).sum()),
        "num_pairs": num_pairs,
        "protocol": PROTOCOL.format(high=high_threshold, low=low_threshold),
    }


def format_reward_table(table: dict[str, Any]) -> str:
    """The reward table as Markdown: one row per predictor."""
    columns = [(REWARD_RMSE, "RMSE"), (REWARD_MAE, "MAE"), (REWARD_AUC, "AUC (>=4 vs <=2)"),
               (REWARD_PAIRWISE_ACCURACY, "pairwise acc.")]
    lines = ["| predictor | " + " | ".join(label for _, label in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, metrics in table["predictors"].items():
        label = PREDICTORS.get(name, name)
        if name == "ensemble_mean":
            label = f"{label} (K={table['num_members']})"
        lines.append(f"| {label} | " + " | ".join(f"{metrics[key]:.4f}" for key, _ in columns) + " |")
    lines.append(
        f"\n{table['num_test_cases']} test cases ({table['num_auc_high']} high / {table['num_auc_low']} low for the "
        f"AUC), {table['num_pairs']} within-user pairs."
    )
    return "\n".join(lines)


def popularity_bins(item_counts: Any, num_bins: int = 5) -> np.ndarray:
    """(V + 1,) popularity bin of every item: items 1..V sorted by training count (ties by index) and cut
    into `num_bins` equal-size groups, 0 = least rated; padding gets -1."""
    counts = _as_numpy(item_counts)[1:]
    order = np.argsort(counts, kind="stable")
    bins = np.empty(len(counts), dtype=np.int64)
    bins[order] = np.arange(len(counts)) * num_bins // max(len(counts), 1)
    return np.concatenate([[-1], bins])


@torch.no_grad()
def uncertainty_by_popularity(
    ensemble: RewardEnsemble,
    dataset: Any,
    train_dataset: Any,
    *,
    num_candidates: int = 20,
    num_bins: int = 5,
    batch_size: int = 256,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean ensemble std per item-popularity bin, over (history, item) pairs of `dataset`.

    For each evaluation row, the ensemble scores the logged target and `num_candidates` items drawn
    uniformly from the catalogue (seeded). Items are binned by their training rating count (`popularity_bins`,
    quintiles by default). Reports the mean std of the logged targets and of the uniform candidates per bin;
    if the std tracks epistemic uncertainty it is largest for the least rated items.
    """
    item_model = ItemMeanReward(ensemble.config.num_items).fit(train_dataset)
    bins = popularity_bins(item_model.item_counts, num_bins)
    generator = torch.Generator().manual_seed(seed)
    collator = SequenceCollator(max_seq_len=ensemble.config.max_seq_len)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    stds, items = [], []
    for batch in loader:
        uniform = torch.randint(
            1, ensemble.config.num_items + 1, (batch[ITEM_IDS].shape[0], num_candidates), generator=generator
        )
        candidates = torch.cat([batch[TARGET_ITEM_IDS][:, None], uniform], dim=1)  # (B, 1 + C)
        prediction = ensemble.predict_candidates(History.from_batch(batch), candidate_item_ids=candidates)
        stds.append(prediction.std.float().cpu().numpy())
        items.append(candidates.numpy())
    std, item_ids = np.concatenate(stds), np.concatenate(items)  # (U, 1 + C)
    counts = item_model.item_counts
    rows = []
    for b in range(num_bins):
        in_bin = bins == b
        row = {
            "bin": b + 1,
            "item_count_min": int(counts[in_bin].min()) if in_bin.any() else None,
            "item_count_max": int(counts[in_bin].max()) if in_bin.any() else None,
        }
        for name, column in (("logged", slice(0, 1)), ("uniform", slice(1, None))):
            selected = bins[item_ids[:, column]] == b
            values = std[:, column][selected]
            row[f"{name}_mean_std"] = float(values.mean()) if values.size else None
            row[f"{name}_num_pairs"] = int(values.size)
        rows.append(row)
    return {
        "num_bins": num_bins,
        "num_uniform_candidates": num_candidates,
        "bins": rows,
        "definition": f"bin 1 = least rated items in training, bin {num_bins} = most rated; mean across-member std "
        "of the predicted reward of (history, item) pairs: 'logged' = the held-out target, 'uniform' = "
        "items drawn uniformly from the catalogue.",
    }


def format_uncertainty(report: dict[str, Any]) -> str:
    """The std-by-popularity report as Markdown."""
    lines = ["| popularity bin | train ratings per item | mean std (logged targets) | mean std (uniform items) |",
             "|---|---|---:|---:|"]
    for row in report["bins"]:
        cells = []
        for name in ("logged", "uniform"):
            value = row[f"{name}_mean_std"]
            cells.append("n/a" if value is None else f"{value:.4f} (n={row[f'{name}_num_pairs']})")
        lines.append(f"| {row['bin']} | {row['item_count_min']}-{row['item_count_max']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)
