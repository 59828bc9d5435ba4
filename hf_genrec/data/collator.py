"""`SequenceCollator`: rows of a sequence / split dataset -> padded model batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .columns import (
    HISTORY_ITEM_IDS,
    HISTORY_REWARD_SUMS,
    ITEM_IDS,
    LABEL_RATINGS,
    LABELS,
    RATINGS,
    TARGET_ITEM_ID,
    TARGET_ITEM_IDS,
    TARGET_RATING,
    TARGET_RATINGS,
    TARGET_TIMESTAMP,
    TARGET_TIMESTAMPS,
    TIMESTAMPS,
    WINDOW_POSITION,
    WINDOW_POSITIONS,
    WINDOW_REWARD,
    WINDOW_REWARDS,
)
from .history import History
from .vocabulary import PAD_INDEX

__all__ = ["SequenceCollator"]


@dataclass
class SequenceCollator:
    """Pads a list of dataset rows into a batch of tensors; rows are right-padded with `PAD_INDEX` (0).

    Positions count from the oldest kept event. The padded length L is the longest kept length in the
    batch (rounded up to `pad_to_multiple_of`), not `max_seq_len`: cropping per batch keeps the
    quadratic attention cost down when most sequences are short.

    **Training rows** (no `target_item_id`): a sequence of T events is cut to its most recent
    `max_seq_len + 1` events; the inputs are events[:-1] and the next-item targets events[1:]:

    - `item_ids` (B, L) int64: input item indices, 0 on padding;
    - `timestamps` (B, L) int64: times of the input events;
    - `query_timestamps` (B, L) int64: time of the event predicted at each position (the next event);
    - `ratings` (B, L) float32: ratings of the input items;
    - `labels` (B, L) int64: the next item at each position, 0 (= ignore) on padding;
    - `label_ratings` (B, L) float32: rating of the next item (the reward of the action);
    - `attention_mask` (B, L) int64: 1 on real input positions.

    A row with T < 2 has no supervised position and becomes an all-padding row.

    **Evaluation rows** (with `target_item_id`): the history is cut to its most recent `max_seq_len` events:

    - `item_ids`, `timestamps`, `ratings`, `attention_mask` (B, L): the kept history, as above;
    - `query_timestamps` (B, L) int64: history times [1:] then the target's time at the last real position;
    - `target_item_ids` (B,) int64, `target_ratings` (B,) float32, `target_timestamps` (B,) int64;
    - `history_item_ids` (B, H) int64: the FULL, uncut history (to exclude seen items when ranking),
      0-padded, H = longest full history in the batch;
    - `history_reward_sums` (B,) float32: sum of the full history's ratings;
    - `window_rewards` (B,) float32, `window_positions` (B,) int64: only for rows of the `future` split, the
      user's accumulated test-window reward and the row's position in the window.

    All values are 0 on padding. Rows may hold lists, numpy arrays or torch tensors.

    Args:
        max_seq_len (`int`, defaults to 200): the most recent events kept as model input (ML-1M reference: 200).
        pad_to_multiple_of (`int`, *optional*): round L up to a multiple of this (e.g. 8 for tensor cores).
    """

    max_seq_len: int = 200
    pad_to_multiple_of: int | None = None

    def __post_init__(self) -> None:
        if self.max_seq_len < 1:
            raise ValueError(f"max_seq_len must be >= 1, got {self.max_seq_len}.")
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be >= 1 or None, got {self.pad_to_multiple_of}.")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("cannot collate an empty list of rows.")
        has_target = [TARGET_ITEM_ID in row for row in features]
        if all(has_target):
            return self._collate_evaluation(features)
        if not any(has_target):
            return self._collate_training(features)
        raise ValueError(
            f"the batch mixes training rows and evaluation rows (with {TARGET_ITEM_ID!r}): "
            f"{sum(has_target)} of {len(features)} have a target. Fix: collate each split separately."
        )

    def _padded_length(self, longest: int) -> int:
        length = max(longest, 1)  # an all-padding batch still yields (B, 1) tensors
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return length

    def _collate_training(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [_sequence(row) for row in features]
        keep = self.max_seq_len + 1
        rows = [(items[-keep:], ratings[-keep:], times[-keep:]) for items, ratings, times in rows]
        batch_size = len(rows)
        length = self._padded_length(max(len(items) - 1 for items, _, _ in rows))
        item_ids = np.full((batch_size, length), PAD_INDEX, dtype=np.int64)
        labels = np.full((batch_size, length), PAD_INDEX, dtype=np.int64)
        timestamps = np.zeros((batch_size, length), dtype=np.int64)
        label_times = np.zeros(batch_size, dtype=np.int64)  # time of the last input position's label
        ratings = np.zeros((batch_size, length), dtype=np.float32)
        label_ratings = np.zeros((batch_size, length), dtype=np.float32)
        attention_mask = np.zeros((batch_size, length), dtype=np.int64)
        for b, (items, rates, times) in enumerate(rows):
            n = len(items) - 1  # supervised positions
            if n <= 0:
                continue
            item_ids[b, :n] = items[:-1]
            labels[b, :n] = items[1:]
            timestamps[b, :n] = times[:-1]
            label_times[b] = times[-1]
            ratings[b, :n] = rates[:-1]
            label_ratings[b, :n] = rates[1:]
            attention_mask[b, :n] = 1
        history = History.from_events(torch.from_numpy(item_ids), torch.from_numpy(attention_mask),
                                      torch.from_numpy(timestamps), torch.from_numpy(label_times))
        return {
            **history.model_inputs(),
            RATINGS: torch.from_numpy(ratings),
            LABELS: torch.from_numpy(labels),
            LABEL_RATINGS: torch.from_numpy(label_ratings),
        }

    def _collate_evaluation(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [_sequence(row) for row in features]
        batch_size = len(rows)
        kept_lengths = [min(len(items), self.max_seq_len) for items, _, _ in rows]
        length = self._padded_length(max(kept_lengths))
        history_length = max(1, max(len(items) for items, _, _ in rows))
        item_ids = np.full((batch_size, length), PAD_INDEX, dtype=np.int64)
        timestamps = np.zeros((batch_size, length), dtype=np.int64)
        ratings = np.zeros((batch_size, length), dtype=np.float32)
        attention_mask = np.zeros((batch_size, length), dtype=np.int64)
        history_item_ids = np.full((batch_size, history_length), PAD_INDEX, dtype=np.int64)
        history_reward_sums = np.zeros(batch_size, dtype=np.float32)
        target_item_ids = np.array([int(row[TARGET_ITEM_ID]) for row in features], dtype=np.int64)
        target_ratings = np.array([float(row[TARGET_RATING]) for row in features], dtype=np.float32)
        target_timestamps = np.array([int(row[TARGET_TIMESTAMP]) for row in features], dtype=np.int64)
        for b, ((items, rates, times), n) in enumerate(zip(rows, kept_lengths)):
            history_item_ids[b, : len(items)] = items
            history_reward_sums[b] = rates.sum(dtype=np.float64)
            if n == 0:
                continue
            item_ids[b, :n] = items[-n:]
            timestamps[b, :n] = times[-n:]
            ratings[b, :n] = rates[-n:]
            attention_mask[b, :n] = 1
        # The last real position predicts the held-out target: its query time is the target's time.
        history = History.from_events(torch.from_numpy(item_ids), torch.from_numpy(attention_mask),
                                      torch.from_numpy(timestamps), torch.from_numpy(target_timestamps))
        windows = {}
        if WINDOW_REWARD in features[0]:
            windows[WINDOW_REWARDS] = torch.tensor([float(row[WINDOW_REWARD]) for row in features], dtype=torch.float32)
            windows[WINDOW_POSITIONS] = torch.tensor([int(row[WINDOW_POSITION]) for row in features], dtype=torch.long)
        return {
            **history.model_inputs(),
            RATINGS: torch.from_numpy(ratings),
            TARGET_ITEM_IDS: torch.from_numpy(target_item_ids),
            TARGET_RATINGS: torch.from_numpy(target_ratings),
            TARGET_TIMESTAMPS: torch.from_numpy(target_timestamps),
            HISTORY_ITEM_IDS: torch.from_numpy(history_item_ids),
            HISTORY_REWARD_SUMS: torch.from_numpy(history_reward_sums),
            **windows,
        }


def _sequence(row: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The aligned (items, ratings, timestamps) arrays of a row, whatever container they come in."""
    try:
        items = _as_array(row[ITEM_IDS], np.int64)
        ratings = _as_array(row[RATINGS], np.float32)
        times = _as_array(row[TIMESTAMPS], np.int64)
    except KeyError as error:
        raise KeyError(
            f"a row lacks the column {error.args[0]!r}; it has {sorted(row)}. Fix: collate rows of a dataset "
            "built by `build_sequences` / `split_sequences` (columns item_ids, ratings, timestamps)."
        ) from None
    if not len(items) == len(ratings) == len(times):
        raise ValueError(
            f"a row has {len(items)} item_ids, {len(ratings)} ratings and {len(times)} timestamps. "
            "Fix: the list columns must be aligned, one entry per event."
        )
    return items, ratings, times


def _as_array(values: Any, dtype: np.dtype) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype).reshape(-1)
