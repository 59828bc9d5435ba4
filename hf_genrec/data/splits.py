"""Sequences -> train / validation / test splits.

Every split is a `DatasetDict` with three splits and one column layout:

- `train`: `user_id, item_ids, ratings, timestamps`, the training sequences (next-item loss on every position);
- `validation` / `test`: the same history columns plus `target_item_id, target_rating, target_timestamp`,
  the held-out event to predict from that history.

All work is vectorised over the flat event arrays (no per-user Python loop).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict, Features, Value

from .columns import ITEM_IDS, RATINGS, TARGET_ITEM_ID, TARGET_RATING, TARGET_TIMESTAMP, TIMESTAMPS, USER_ID
from .errors import DataFormatError
from .sequences import SEQUENCE_FEATURES, sequence_dataset

__all__ = [
    "EVALUATION_FEATURES",
    "SPLITS",
    "leave_one_out_split",
    "temporal_split",
    "split_sequences",
]

logger = logging.getLogger(__name__)

EVALUATION_FEATURES = Features(
    {
        **SEQUENCE_FEATURES,
        TARGET_ITEM_ID: Value("int32"),
        TARGET_RATING: Value("float32"),
        TARGET_TIMESTAMP: Value("int64"),
    }
)
"""Columns of the validation and test splits: the history (as in `SEQUENCE_FEATURES`) and its target."""

SPLITS = ("leave-one-out", "temporal")


@dataclass
class _FlatSequences:
    """A sequence dataset as flat numpy arrays: row r holds events `offsets[r]:offsets[r + 1]`."""

    user_ids: list[str]
    offsets: np.ndarray  # (R + 1,)
    item_ids: np.ndarray  # (E,)
    ratings: np.ndarray  # (E,)
    timestamps: np.ndarray  # (E,)

    @classmethod
    def from_dataset(cls, sequences: Dataset) -> _FlatSequences:
        missing = [
            column
            for column in (USER_ID, ITEM_IDS, RATINGS, TIMESTAMPS)
            if column not in sequences.column_names
        ]
        if missing:
            raise ValueError(
                f"the sequence dataset lacks the column(s) {missing}; it has {sequences.column_names}. "
                "Fix: build it with `build_sequences`."
            )
        # `with_format("arrow")[:]` honours an indices mapping (after select/shuffle), `.data` would not.
        table = sequences.select_columns([USER_ID, ITEM_IDS, RATINGS, TIMESTAMPS]).with_format("arrow")[:]
        lengths = None
        flat = {}
        for column in (ITEM_IDS, RATINGS, TIMESTAMPS):
            lists = table.column(column)
            column_lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy()
            if lengths is None:
                lengths = column_lengths
            elif not np.array_equal(lengths, column_lengths):
                row = int(np.flatnonzero(lengths != column_lengths)[0])
                raise ValueError(
                    f"row {row} of the sequence dataset has {lengths[row]} item_ids but {column_lengths[row]} "
                    f"{column}. Fix: the list columns must be aligned, one entry per event."
                )
            flat[column] = pc.list_flatten(lists).to_numpy(zero_copy_only=False)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(
            user_ids=table.column(USER_ID).to_pylist(),
            offsets=offsets,
            item_ids=flat[ITEM_IDS].astype(np.int32, copy=False),
            ratings=flat[RATINGS].astype(np.float32, copy=False),
            timestamps=flat[TIMESTAMPS].astype(np.int64, copy=False),
        )

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def rows_of_events(self) -> np.ndarray:
        """Row index of every event, shape (E,)."""
        return np.repeat(np.arange(len(self.user_ids)), self.lengths)

    def subset(
        self, rows: np.ndarray, starts: np.ndarray, lengths: np.ndarray, targets: np.ndarray | None = None
    ) -> Dataset:
        """A dataset whose row k is events `starts[k]:starts[k] + lengths[k]` of row `rows[k]`, with the
        event at flat position `targets[k]` as its target when `targets` is given."""
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        events = _ranges(starts, lengths)
        extra = None
        features = SEQUENCE_FEATURES
        if targets is not None:
            extra = {
                TARGET_ITEM_ID: self.item_ids[targets],
                TARGET_RATING: self.ratings[targets],
                TARGET_TIMESTAMP: self.timestamps[targets],
            }
            features = EVALUATION_FEATURES
        return sequence_dataset(
            user_ids=[self.user_ids[row] for row in rows.tolist()],
            offsets=offsets,
            item_ids=self.item_ids[events],
            ratings=self.ratings[events],
            timestamps=self.timestamps[events],
            extra_columns=extra,
            features=features,
        )


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenation of `arange(s, s + n)` for each (s, n), without a Python loop. Shape (sum(lengths),)."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    # Each event's flat index minus the running count, shifted by its range's start.
    return np.arange(total, dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)


def leave_one_out_split(sequences: Dataset) -> DatasetDict:
    """Leave-one-out split, per user (HSTU / SASRec protocol).

    For a user with events e_1..e_n (n >= 3):

    - `train`: history e_1..e_{n-2};
    - `validation`: history e_1..e_{n-2}, target e_{n-1};
    - `test`: history e_1..e_{n-1}, target e_n.

    Users with fewer than 3 events cannot be split and are dropped (a warning gives the count).

    Args:
        sequences (`Dataset`): chronological sequences, as built by `build_sequences`.

    Returns:
        `DatasetDict` with `train` (`SEQUENCE_FEATURES`), `validation` and `test` (`EVALUATION_FEATURES`).
    """
    flat = _FlatSequences.from_dataset(sequences)
    lengths = flat.lengths
    splittable = lengths >= 3
    dropped = int((~splittable).sum())
    if dropped:
        logger.warning(
            "leave-one-out: dropped %d users with fewer than 3 events (they cannot be split).", dropped
        )
    if not splittable.any():
        raise DataFormatError(
            f"leave-one-out split: none of the {len(lengths)} users has at least 3 events (train, validation "
            "and test each need one). Fix: use data with at least 3 events per user."
        )
    rows = np.flatnonzero(splittable)
    starts, n = flat.offsets[rows], lengths[rows]
    return DatasetDict(
        {
            "train": flat.subset(rows, starts, n - 2),
            "validation": flat.subset(rows, starts, n - 2, targets=starts + n - 2),
            "test": flat.subset(rows, starts, n - 1, targets=starts + n - 1),
        }
    )


def _quantile_cutoff(timestamps: np.ndarray, fraction_after: float) -> int:
    # "higher": the cut-off is a real event time, and about `fraction_after` of events lie at or after it.
    return int(np.quantile(timestamps, 1.0 - fraction_after, method="higher"))


def _format_time(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(timestamp)


def temporal_split(
    sequences: Dataset,
    *,
    validation_start: int | None = None,
    test_start: int | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> DatasetDict:
    """Global temporal split: validation and test events happen after every training event.

    Two cut-offs, `validation_start <= test_start`, divide time into train `[.., validation_start)`,
    validation `[validation_start, test_start)` and test `[test_start, ..)`:

    - `train`: each user's events before `validation_start` (users with at least 2 of them);
    - `validation`: for each user with an event in the validation window, target = their first event in
      it, history = all their events before it (at least 1);
    - `test`: for each user with an event at or after `test_start`, target = their first such event,
      history = all their events before it (at least 1), validation-window events included.

    Args:
        sequences (`Dataset`): chronological sequences, as built by `build_sequences`.
        validation_start, test_start (`int`, *optional*): the cut-offs in Unix seconds. When not given,
            they are quantiles of all event timestamps such that about `test_fraction` of the events are
            at or after `test_start` and about `validation_fraction` lie in the validation window.
        validation_fraction, test_fraction (`float`): used only for the cut-offs not given.

    Returns:
        `DatasetDict` with `train` (`SEQUENCE_FEATURES`), `validation` and `test` (`EVALUATION_FEATURES`).
    """
    flat = _FlatSequences.from_dataset(sequences)
    timestamps = flat.timestamps
    if timestamps.size == 0:
        raise DataFormatError("temporal split: the sequences hold no events. Fix: check the input data.")
    rows_of_events = flat.rows_of_events()
    unsorted = (timestamps[1:] < timestamps[:-1]) & (rows_of_events[1:] == rows_of_events[:-1])
    if unsorted.any():
        row = int(rows_of_events[1:][unsorted][0])
        raise ValueError(
            f"temporal split: the events of user {flat.user_ids[row]!r} are not in time order. "
            "Fix: build the sequences with `build_sequences`, which sorts them."
        )
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {fraction}.")
    if test_start is None:
        test_start = _quantile_cutoff(timestamps, test_fraction)
    if validation_start is None:
        if validation_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"validation_fraction + test_fraction must be < 1 (got {validation_fraction} + {test_fraction})."
            )
        validation_start = min(_quantile_cutoff(timestamps, test_fraction + validation_fraction), test_start)
    validation_start, test_start = int(validation_start), int(test_start)
    if validation_start > test_start:
        raise ValueError(
            f"validation_start ({validation_start}) is after test_start ({test_start}). "
            "Fix: the validation window [validation_start, test_start) must come before the test period."
        )

    num_rows = len(flat.user_ids)
    starts = flat.offsets[:-1]
    positions = np.arange(timestamps.size, dtype=np.int64)

    def first_event(mask: np.ndarray) -> np.ndarray:
        """Flat position of each row's first event where `mask` holds (E if none), shape (R,)."""
        first = np.full(num_rows, timestamps.size, dtype=np.int64)
        np.minimum.at(first, rows_of_events[mask], positions[mask])
        return first

    # Sequences are chronological, so the events before a cut-off are a prefix of the row.
    train_lengths = first_event(timestamps >= validation_start)
    train_lengths = np.where(train_lengths == timestamps.size, flat.offsets[1:], train_lengths) - starts
    train_rows = np.flatnonzero(train_lengths >= 2)
    splits = {"train": flat.subset(train_rows, starts[train_rows], train_lengths[train_rows])}
    windows = {
        "validation": (timestamps >= validation_start) & (timestamps < test_start),
        "test": timestamps >= test_start,
    }
    for split, in_window in windows.items():
        targets = first_event(in_window)
        history_lengths = targets - starts
        rows = np.flatnonzero((targets < timestamps.size) & (history_lengths >= 1))
        splits[split] = flat.subset(rows, starts[rows], history_lengths[rows], targets=targets[rows])
    logger.info(
        "temporal split: validation from %s, test from %s: %d train / %d validation / %d test users.",
        _format_time(validation_start),
        _format_time(test_start),
        len(splits["train"]),
        len(splits["validation"]),
        len(splits["test"]),
    )
    for split, dataset in splits.items():
        if len(dataset) == 0:
            logger.warning("temporal split: the %s split is empty; move the cut-offs.", split)
    return DatasetDict(splits)


def split_sequences(sequences: Dataset, method: str, **kwargs: Any) -> DatasetDict:
    """Splits sequences with `method`, one of `SPLITS` (`"leave-one-out"` or `"temporal"`); `kwargs` go to
    `leave_one_out_split` or `temporal_split`."""
    normalised = method.strip().lower().replace("_", "-")
    if normalised == "leave-one-out":
        return leave_one_out_split(sequences, **kwargs)
    if normalised == "temporal":
        return temporal_split(sequences, **kwargs)
    raise ValueError(f"unknown split method {method!r}; valid methods are {list(SPLITS)}.")
