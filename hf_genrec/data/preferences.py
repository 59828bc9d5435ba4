"""Offline preference data: logged (history, chosen item, rejected item) pairs for DPO, as TRL's preference
datasets hold (prompt, chosen, rejected) text.

A preference dataset has one row per pair:

- `history` (`list[int]`): the items consumed before the request, oldest first (vocabulary indices);
- `chosen` (`int`), `rejected` (`int`): the preferred and the dispreferred item (vocabulary indices);
- optional `history_timestamps` (`list[int]`, aligned with `history`) and `timestamp` (`int`, the time of the
  request, i.e. when the chosen item was consumed): with them the model reads the same time features as in
  pretraining; without them it skips its time features.

`build_preference_dataset` makes one from logged ratings; `PreferenceCollator` pads its rows into the batch
`DPOTrainer` reads (and collates every other row as `SequenceCollator` does, so evaluation rows still work).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from .collator import SequenceCollator, _as_array, _sequence
from .columns import USER_ID
from .history import History
from .vocabulary import PAD_INDEX

__all__ = [
    "CHOSEN",
    "CHOSEN_ITEM_IDS",
    "HISTORY",
    "HISTORY_TIMESTAMPS",
    "PREFERENCE_COLUMNS",
    "REJECTED",
    "REJECTED_ITEM_IDS",
    "REQUEST_TIMESTAMP",
    "PreferenceCollator",
    "build_preference_dataset",
    "is_preference_dataset",
]

# Dataset columns of a preference dataset.
HISTORY = "history"
CHOSEN = "chosen"
REJECTED = "rejected"
HISTORY_TIMESTAMPS = "history_timestamps"
REQUEST_TIMESTAMP = "timestamp"
PREFERENCE_COLUMNS = (HISTORY, CHOSEN, REJECTED)
# Batch keys `PreferenceCollator` adds to the history's model inputs: (B,) item indices.
CHOSEN_ITEM_IDS = "chosen_item_ids"
REJECTED_ITEM_IDS = "rejected_item_ids"


def is_preference_dataset(dataset: Any) -> bool:
    """Whether `dataset` (a `datasets.Dataset` or any object with `column_names`) holds preference rows
    (`history`, `chosen` and `rejected` columns)."""
    columns = getattr(dataset, "column_names", None)
    return columns is not None and all(column in columns for column in PREFERENCE_COLUMNS)


def _is_preference_row(row: Mapping[str, Any]) -> bool:
    return all(column in row for column in PREFERENCE_COLUMNS)


@dataclass
class PreferenceCollator(SequenceCollator):
    """Pads preference rows (see the module docstring) into a batch; any other row is collated by
    [`SequenceCollator`], so one collator serves a preference training set and a ranking evaluation set.

    A preference batch holds the history's model inputs, cut to its most recent `max_seq_len` events and
    right-padded (`item_ids`, `attention_mask` (B, L) and, with timestamps, `timestamps` and `query_timestamps`,
    the last real position asking about the request's `timestamp`), plus `chosen_item_ids` and
    `rejected_item_ids` (B,). The user's state for the pair is the model's output at the last real position.
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        preference = [_is_preference_row(row) for row in features]
        if not any(preference):
            return super().__call__(features)
        if not all(preference):
            raise ValueError(
                f"the batch mixes preference rows (with {list(PREFERENCE_COLUMNS)}) and sequence rows: "
                f"{sum(preference)} of {len(features)} are preferences. Fix: keep each kind in its own dataset."
            )
        return self._collate_preferences(features)

    def _collate_preferences(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        timed = [HISTORY_TIMESTAMPS in row and row[HISTORY_TIMESTAMPS] is not None for row in features]
        if any(timed) and not all(timed):
            raise ValueError(
                f"{sum(timed)} of {len(features)} preference rows have {HISTORY_TIMESTAMPS!r}. Fix: give every row "
                "timestamps or none."
            )
        histories = [_as_array(row[HISTORY], np.int64)[-self.max_seq_len :] for row in features]
        if any(len(items) == 0 for items in histories):
            raise ValueError(f"a preference row has an empty {HISTORY!r}; the model needs at least one past item.")
        chosen = np.array([int(row[CHOSEN]) for row in features], dtype=np.int64)
        rejected = np.array([int(row[REJECTED]) for row in features], dtype=np.int64)
        same = np.flatnonzero(chosen == rejected)
        if len(same):
            raise ValueError(f"a preference row has chosen == rejected == {chosen[same[0]]}; drop such rows.")
        batch_size, length = len(features), self._padded_length(max(len(items) for items in histories))
        item_ids = np.full((batch_size, length), PAD_INDEX, dtype=np.int64)
        attention_mask = np.zeros((batch_size, length), dtype=np.int64)
        timestamps = np.zeros((batch_size, length), dtype=np.int64)
        for b, items in enumerate(histories):
            item_ids[b, : len(items)] = items
            attention_mask[b, : len(items)] = 1
            if timed[0]:
                times = _as_array(features[b][HISTORY_TIMESTAMPS], np.int64)[-self.max_seq_len :]
                if len(times) != len(items):
                    raise ValueError(f"a preference row has {len(items)} {HISTORY} items but {len(times)} "
                                     f"{HISTORY_TIMESTAMPS}. Fix: one timestamp per history item.")
                timestamps[b, : len(items)] = times
        requests = None
        if timed[0] and all(row.get(REQUEST_TIMESTAMP) is not None for row in features):
            requests = torch.tensor([int(row[REQUEST_TIMESTAMP]) for row in features], dtype=torch.int64)
        history = History.from_events(torch.from_numpy(item_ids), torch.from_numpy(attention_mask),
                                      torch.from_numpy(timestamps) if timed[0] else None, requests)
        inputs = {name: value for name, value in history.model_inputs().items() if value is not None}
        return {**inputs, CHOSEN_ITEM_IDS: torch.from_numpy(chosen), REJECTED_ITEM_IDS: torch.from_numpy(rejected)}


def _user_pairs(items: np.ndarray, ratings: np.ndarray, high: float, low: float,
                rng: np.random.Generator) -> list[tuple[int, int]]:
    """(chosen position t, rejected position) pairs of one user's chronological log."""
    pairs = []
    low_positions = np.flatnonzero(ratings <= low)
    for t in np.flatnonzero(ratings >= high):
        if t == 0:
            continue  # no history to condition on
        later = low_positions[low_positions > t]
        # A disliked item already in the history would be a repeat recommendation; keep the unseen ones.
        later = later[~np.isin(items[later], items[: t + 1])]
        if len(later):
            pairs.append((int(t), int(rng.choice(later))))
    return pairs


def build_preference_dataset(
    sequences: Dataset,
    high_rating: float = 4.0,
    low_rating: float = 2.0,
    max_history_length: int | None = 200,
    seed: int = 0,
) -> Dataset:
    """A preference dataset (see the module docstring) from logged ratings.

    For each user (a row of `sequences`: chronological `item_ids`, `ratings`, `timestamps`, as `build_sequences`
    or a training split gives) and each position t > 0 whose item is rated >= `high_rating`: the request is the
    user's state before t, chosen = the item consumed at t, rejected = an item the same user consumed LATER and
    rated <= `low_rating`, drawn uniformly (seeded) among those not already in the history. Both items are
    logged consumptions of the same user, so the pair compares two items this user actually judged, by the
    user's own ratings (taste is assumed stable over the user's log). Taking the rejected item from after t keeps
    it out of the history the model conditions on, so both items are candidates at the request, as in the
    sampled pairs, where seen items are never candidates. Positions without such a later item (other than the
    chosen item itself) give no pair.

    Args:
        sequences: rows with `item_ids`, `ratings`, `timestamps` (and optionally `user_id`, copied).
        high_rating: ratings at or above this make an item a chosen item.
        low_rating: ratings at or below this make an item a rejected item (must be < `high_rating`).
        max_history_length: the most recent events kept in each pair's `history` (`None` keeps all; the
            collator cuts to the model's window anyway, this bounds the dataset's size).
        seed: seed of the draw of the rejected item.

    Returns:
        A `Dataset` with `history`, `history_timestamps`, `timestamp`, `chosen`, `rejected` (and `user_id`).
    """
    if not low_rating < high_rating:
        raise ValueError(f"low_rating ({low_rating}) must be < high_rating ({high_rating}); lower low_rating.")
    if max_history_length is not None and max_history_length < 1:
        raise ValueError(f"max_history_length must be >= 1 or None, got {max_history_length}.")
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {HISTORY: [], HISTORY_TIMESTAMPS: [], REQUEST_TIMESTAMP: [], CHOSEN: [], REJECTED: []}
    has_user = USER_ID in sequences.column_names
    if has_user:
        columns[USER_ID] = []
    for row in sequences:
        items, ratings, times = _sequence(row)
        for t, rejected in _user_pairs(items, ratings, high_rating, low_rating, rng):
            start = 0 if max_history_length is None else max(0, t - max_history_length)
            columns[HISTORY].append(items[start:t].tolist())
            columns[HISTORY_TIMESTAMPS].append(times[start:t].tolist())
            columns[REQUEST_TIMESTAMP].append(int(times[t]))
            columns[CHOSEN].append(int(items[t]))
            columns[REJECTED].append(int(items[rejected]))
            if has_user:
                columns[USER_ID].append(row[USER_ID])
    return Dataset.from_dict(columns)
