"""Naive reward predictors, the Netflix post's yardsticks for a reward model.

Each is fitted on the training split and predicts the rating of each evaluation row's target (the rows of
the validation / test splits: a history and a `target_item_id`):

- `GlobalMeanReward`: the mean of every training rating;
- `UserMeanReward`: the mean rating of the user's past interactions, i.e. of the row's own history (the
  same events the reward model reads); a user with no past rating falls back to the global mean;
- `ItemMeanReward`: the mean rating the item received over the training split; an item unseen in
  training falls back to the global mean.

Shapes: U evaluation rows, V items (indices 1..V; 0 is padding).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow.compute as pc

from ..data.columns import ITEM_IDS, RATINGS, TARGET_ITEM_ID

__all__ = [
    "GlobalMeanReward",
    "ItemMeanReward",
    "UserMeanReward",
    "fit_reward_baselines",
    "flat_list_column",
    "target_column",
]


def flat_list_column(dataset: Any, column: str, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
    """(values (E,), lengths (U,)) of a list column of a `datasets.Dataset`, read through Arrow.

    Raises a `ValueError` naming the column when it is missing, and when float values hold NaN.
    """
    if column not in dataset.column_names:
        raise ValueError(
            f"the dataset has no {column!r} column (it has {dataset.column_names}). Fix: reward models need "
            "a rating for every event; prepare the data from a file with a rating column."
        )
    # `with_format("arrow")[:]` honours an indices mapping (after select/shuffle), `.data` would not.
    lists = dataset.select_columns([column]).with_format("arrow")[:].column(column)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy().astype(np.int64)
    values = pc.list_flatten(lists).to_numpy(zero_copy_only=False).astype(dtype)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise ValueError(
            f"column {column!r} holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s). Fix: every "
            "event needs a numeric rating; drop or impute missing ratings before `hf-genrec prepare`."
        )
    return values, lengths


def target_column(dataset: Any, column: str, dtype) -> np.ndarray:
    if column not in dataset.column_names:
        raise ValueError(
            f"the evaluation dataset has no {column!r} column (it has {dataset.column_names}). Fix: pass the "
            "validation or test split of `split_sequences`."
        )
    return np.asarray(dataset.select_columns([column]).with_format("numpy")[column], dtype=dtype)


class GlobalMeanReward:
    """Predicts the mean training rating for every case."""

    name = "global_mean"

    def __init__(self) -> None:
        self.global_mean: float | None = None

    def fit(self, train_dataset: Any) -> GlobalMeanReward:
        ratings, _ = flat_list_column(train_dataset, RATINGS)
        if ratings.size == 0:
            raise ValueError("the training split holds no rating; cannot fit a mean-reward baseline.")
        self.global_mean = float(ratings.mean())
        return self

    def _check_fitted(self) -> float:
        if self.global_mean is None:
            raise ValueError(f"{type(self).__name__} is not fitted; call fit(train_dataset) first.")
        return self.global_mean

    def predict(self, dataset: Any) -> np.ndarray:
        """(U,) predictions for the evaluation rows of `dataset`."""
        return np.full(len(dataset), self._check_fitted(), dtype=np.float64)


class UserMeanReward(GlobalMeanReward):
    """Predicts the mean of the user's past ratings: those of the evaluation row's own history.

    In a leave-one-out split the test row's history is the training sequence plus the validation event,
    exactly what the reward model reads. A row without any past rating gets the global training mean.
    """

    name = "user_mean"

    def predict(self, dataset: Any) -> np.ndarray:
        global_mean = self._check_fitted()
        ratings, lengths = flat_list_column(dataset, RATINGS)
        sums = np.zeros(len(lengths), dtype=np.float64)
        np.add.at(sums, np.repeat(np.arange(len(lengths)), lengths), ratings)
        return np.where(lengths > 0, sums / np.maximum(lengths, 1), global_mean)  # (U,)


class ItemMeanReward(GlobalMeanReward):
    """Predicts the mean training rating of the target item; items unseen in training get the global mean.

    Args:
        num_items: V, the vocabulary size (item indices are 1..V).
    """

    name = "item_mean"

    def __init__(self, num_items: int) -> None:
        super().__init__()
        if num_items < 1:
            raise ValueError(f"num_items must be >= 1, got {num_items}.")
        self.num_items = num_items
        self.item_means: np.ndarray | None = None  # (V + 1,)
        self.item_counts: np.ndarray | None = None  # (V + 1,)

    def fit(self, train_dataset: Any) -> ItemMeanReward:
        super().fit(train_dataset)
        ratings, _ = flat_list_column(train_dataset, RATINGS)
        items, _ = flat_list_column(train_dataset, ITEM_IDS, dtype=np.int64)
        if items.size and (items.min() < 1 or items.max() > self.num_items):
            raise ValueError(f"training item indices must lie in 1..{self.num_items}, got {items.min()}..{items.max()}.")
        counts = np.bincount(items, minlength=self.num_items + 1).astype(np.float64)
        sums = np.bincount(items, weights=ratings, minlength=self.num_items + 1)
        self.item_counts = counts
        self.item_means = np.where(counts > 0, sums / np.maximum(counts, 1), self.global_mean)
        return self

    def predict(self, dataset: Any) -> np.ndarray:
        self._check_fitted()
        targets = target_column(dataset, TARGET_ITEM_ID, np.int64)
        known = (targets >= 1) & (targets <= self.num_items)
        return np.where(known, self.item_means[np.where(known, targets, 0)], self.global_mean)  # (U,)


def fit_reward_baselines(train_dataset: Any, num_items: int) -> dict[str, GlobalMeanReward]:
    """The three baselines, fitted on `train_dataset`, keyed by their `name`."""
    baselines = [UserMeanReward(), ItemMeanReward(num_items), GlobalMeanReward()]
    return {baseline.name: baseline.fit(train_dataset) for baseline in baselines}
