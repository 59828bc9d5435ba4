"""Sequences -> train / validation / test splits.

Every split is a `DatasetDict` with three splits and one column layout:

- `train`: `user_id, item_ids, ratings, timestamps`, the training sequences (next-item loss on every position);
- `validation` / `test`: the same history columns plus `target_item_id, target_rating, target_timestamp`,
  the held-out event to predict from that history; the `future` split adds `window_reward, window_position`
  (the user's accumulated reward over a window of H targets, and the row's place in it).

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

from .columns import (
    ITEM_IDS,
    RATINGS,
    TARGET_ITEM_ID,
    TARGET_RATING,
    TARGET_TIMESTAMP,
    TIMESTAMPS,
    USER_ID,
    WINDOW_POSITION,
    WINDOW_REWARD,
)
from .errors import DataFormatError
from .sequences import SEQUENCE_FEATURES, sequence_dataset

__all__ = [
    "EVALUATION_FEATURES",
    "FUTURE_EVALUATION_FEATURES",
    "SPLITS",
    "future_cutoffs",
    "future_split",
    "leave_one_out_split",
    "temporal_split",
    "split_method",
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

FUTURE_EVALUATION_FEATURES = Features(
    {**EVALUATION_FEATURES, WINDOW_REWARD: Value("float32"), WINDOW_POSITION: Value("int32")}
)
"""Columns of the `future` split's validation and test rows: `EVALUATION_FEATURES` plus the user's accumulated
window reward and the row's position in the window (the other splits keep `EVALUATION_FEATURES`)."""

SPLITS = ("leave-one-out", "temporal", "future")


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
        self,
        rows: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        targets: np.ndarray | None = None,
        window: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Dataset:
        """A dataset whose row k is events `starts[k]:starts[k] + lengths[k]` of row `rows[k]`, with the
        event at flat position `targets[k]` as its target when `targets` is given, and the window columns
        `window = (window_rewards, window_positions)` (one value per row) when given."""
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
            if window is not None:
                extra[WINDOW_REWARD], extra[WINDOW_POSITION] = window
                features = FUTURE_EVALUATION_FEATURES
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


def _check_fraction(name: str, fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(
            f"{name} must be in (0, 1), got {fraction}. Fix: pass a fraction strictly between 0 and 1."
        )


def _check_time_order(flat: _FlatSequences, split: str) -> np.ndarray:
    """The row index of every event (E,), after checking that there are events and each row is chronological
    (so the events before any cut-off are a prefix of the row)."""
    timestamps = flat.timestamps
    if timestamps.size == 0:
        raise DataFormatError(f"{split} split: the sequences hold no events. Fix: check the input data.")
    rows_of_events = flat.rows_of_events()
    unsorted = (timestamps[1:] < timestamps[:-1]) & (rows_of_events[1:] == rows_of_events[:-1])
    if unsorted.any():
        row = int(rows_of_events[1:][unsorted][0])
        raise ValueError(
            f"{split} split: the events of user {flat.user_ids[row]!r} are not in time order. "
            "Fix: build the sequences with `build_sequences`, which sorts them."
        )
    return rows_of_events


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
    rows_of_events = _check_time_order(flat, "temporal")
    for name, fraction in (("validation_fraction", validation_fraction), ("test_fraction", test_fraction)):
        _check_fraction(name, fraction)
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


def _check_window_arguments(
    cutoff_quantile: float, horizon: int, min_history: int, validation_fraction: float
) -> None:
    _check_fraction("cutoff_quantile", cutoff_quantile)
    _check_fraction("validation_fraction", validation_fraction)
    for name, value in (("horizon", horizon), ("min_history", min_history)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(
                f"{name} must be an int >= 1, got {value!r}. Fix: pass a positive number of events."
            )


def _future_cutoffs(
    timestamps: np.ndarray,
    cutoff: int | None,
    cutoff_quantile: float,
    validation_start: int | None,
    validation_fraction: float,
) -> tuple[int, int]:
    """(validation_start, cutoff): the test window starts at `cutoff`, the validation window [validation_start,
    cutoff) holds about `validation_fraction` of the events before the cutoff."""
    if cutoff is None:
        cutoff = _quantile_cutoff(timestamps, 1.0 - cutoff_quantile)
    cutoff = int(cutoff)
    before = timestamps[timestamps < cutoff]
    if before.size == 0:
        raise ValueError(
            f"future split: no event happens before the cutoff {cutoff} ({_format_time(cutoff)}), so there is no "
            "training data. Fix: pass a later `cutoff` or a larger `cutoff_quantile`."
        )
    if validation_start is None:
        validation_start = _quantile_cutoff(before, validation_fraction)
    validation_start = int(validation_start)
    if validation_start > cutoff:
        raise ValueError(
            f"validation_start ({validation_start}) is after the cutoff ({cutoff}). Fix: the validation window "
            "[validation_start, cutoff) must come before the test window."
        )
    return validation_start, cutoff


def future_cutoffs(
    sequences: Dataset,
    *,
    cutoff: int | None = None,
    cutoff_quantile: float = 0.9,
    validation_start: int | None = None,
    validation_fraction: float = 0.1,
) -> tuple[int, int]:
    """`(validation_start, cutoff)` in Unix seconds, as `future_split` computes them from the same arguments.

    A caller that fixes them once (e.g. the benchmark, which records them and passes them to every stage) gets the
    same split as `future_split` with the quantile arguments, and knows where the test window starts.
    """
    _check_window_arguments(cutoff_quantile, 1, 1, validation_fraction)
    flat = _FlatSequences.from_dataset(sequences)
    _check_time_order(flat, "future")
    return _future_cutoffs(flat.timestamps, cutoff, cutoff_quantile, validation_start, validation_fraction)


def _window_rows(flat: _FlatSequences, rows: np.ndarray, window_starts: np.ndarray, horizon: int) -> Dataset:
    """One evaluation row per event of each user's window: row (u, j) has target = the `j`-th event from flat
    position `window_starts[u]` of row `rows[u]`, and history = all the row's events before that target.

    Shapes: `rows`, `window_starts` (N,) -> a dataset of N * horizon rows, a user's rows consecutive.
    """
    positions = np.tile(np.arange(horizon, dtype=np.int64), len(rows))  # (N * H,)
    targets = np.repeat(window_starts, horizon) + positions  # (N * H,)
    row_of_target = np.repeat(rows, horizon)  # (N * H,)
    starts = flat.offsets[row_of_target]
    # Accumulated reward of the window: the sum of its H observed ratings, the same on each of the user's H rows.
    rewards = flat.ratings[targets].reshape(-1, horizon).sum(axis=1, dtype=np.float64)  # (N,)
    window = (np.repeat(rewards, horizon).astype(np.float32), positions.astype(np.int32))
    return flat.subset(row_of_target, starts, targets - starts, targets=targets, window=window)


def future_split(
    sequences: Dataset,
    *,
    cutoff: int | None = None,
    cutoff_quantile: float = 0.9,
    horizon: int = 10,
    min_history: int = 10,
    validation_fraction: float = 0.1,
    validation_start: int | None = None,
) -> DatasetDict:
    """The Netflix post's protocol: test users are evaluated on their first `horizon` events after a global cutoff.

    "This test set is collected on a future date after the training." One cutoff time splits the data; every event
    at or after it is test-only, and validation comes from before it, so no stage before the test reads the test
    window. With `validation_start <= cutoff`:

    - `train`: each user's events before `validation_start` (users with at least 2 of them);
    - `validation`: for each user with at least `min_history` events before `validation_start` and at least
      `horizon` events in [validation_start, cutoff): their first `horizon` events in that window, each a
      target row whose history is all of the user's events before it;
    - `test`: for each user with at least `min_history` events before the cutoff and at least `horizon` events at
      or after it: their first `horizon` events from the cutoff on, each a target row whose history is all the
      user's events before it (the earlier test-window events included, as a deployed model sees them).

    Each validation and test row also carries `window_reward`, the sum of the `horizon` observed ratings of the
    user's window (the same on the user's rows; a fixed `horizon`, so it does not count events), and
    `window_position` (0..horizon-1). A user's rows are consecutive, in window order.

    Args:
        sequences (`Dataset`): chronological sequences, as built by `build_sequences`.
        cutoff (`int`, *optional*): the start of the test window, in Unix seconds; by default the
            `cutoff_quantile` quantile of all event times (a real event time).
        cutoff_quantile (`float`, *optional*, defaults to 0.9): used only when `cutoff` is not given.
        horizon (`int`, *optional*, defaults to 10): H, the events of each validation and test window.
        min_history (`int`, *optional*, defaults to 10): the events a user needs before the window.
        validation_fraction (`float`, *optional*, defaults to 0.1): about this fraction of the events before the
            cutoff lie in the validation window; used only when `validation_start` is not given.
        validation_start (`int`, *optional*): the start of the validation window, in Unix seconds.

    Returns:
        `DatasetDict` with `train` (`SEQUENCE_FEATURES`), `validation` and `test` (`FUTURE_EVALUATION_FEATURES`).
    """
    _check_window_arguments(cutoff_quantile, horizon, min_history, validation_fraction)
    flat = _FlatSequences.from_dataset(sequences)
    rows_of_events = _check_time_order(flat, "future")
    timestamps, num_rows = flat.timestamps, len(flat.user_ids)
    validation_start, cutoff = _future_cutoffs(
        timestamps, cutoff, cutoff_quantile, validation_start, validation_fraction
    )
    # Rows are chronological, so the events before a cut-off are a prefix of the row: counts give its length.
    before_validation = np.bincount(rows_of_events[timestamps < validation_start], minlength=num_rows)
    before_cutoff = np.bincount(rows_of_events[timestamps < cutoff], minlength=num_rows)
    starts, lengths = flat.offsets[:-1], flat.lengths
    train_rows = np.flatnonzero(before_validation >= 2)
    validation_rows = np.flatnonzero(
        (before_validation >= min_history) & (before_cutoff - before_validation >= horizon)
    )
    test_rows = np.flatnonzero((before_cutoff >= min_history) & (lengths - before_cutoff >= horizon))
    splits = {
        "train": flat.subset(train_rows, starts[train_rows], before_validation[train_rows]),
        "validation": _window_rows(
            flat, validation_rows, starts[validation_rows] + before_validation[validation_rows], horizon
        ),
        "test": _window_rows(flat, test_rows, starts[test_rows] + before_cutoff[test_rows], horizon),
    }
    logger.info(
        "future split: cutoff %s, validation from %s, H=%d, min_history=%d: %d train users (%d events), "
        "%d validation users (%d targets), %d test users (%d targets).",
        _format_time(cutoff),
        _format_time(validation_start),
        horizon,
        min_history,
        len(train_rows),
        int(before_validation[train_rows].sum()),
        len(validation_rows),
        len(splits["validation"]),
        len(test_rows),
        len(splits["test"]),
    )
    for split, dataset in splits.items():
        if len(dataset) == 0:
            logger.warning(
                "future split: the %s split is empty; move the cutoff or lower `horizon` / `min_history`.",
                split,
            )
    return DatasetDict(splits)


def split_method(method: str) -> str:
    """The canonical name, one of `SPLITS`, of a split method written with any case or `_` for `-`
    (`"Leave_One_Out"` -> `"leave-one-out"`).

    Raises:
        ValueError: `method` names no split.
    """
    normalised = method.strip().lower().replace("_", "-")
    if normalised not in SPLITS:
        raise ValueError(f"unknown split method {method!r}; valid methods are {list(SPLITS)}.")
    return normalised


def split_sequences(sequences: Dataset, method: str, **kwargs: Any) -> DatasetDict:
    """Splits sequences with `method`, one of `SPLITS` (`"leave-one-out"`, `"temporal"` or `"future"`); `kwargs`
    go to `leave_one_out_split`, `temporal_split` or `future_split`."""
    split = {"leave-one-out": leave_one_out_split, "temporal": temporal_split, "future": future_split}
    return split[split_method(method)](sequences, **kwargs)
