"""`Interactions`: the raw, columnar interaction log that the loaders produce."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Interactions"]


@dataclass
class Interactions:
    """A raw interaction log, one event per position, as read from a file (file order is kept).

    Args:
        user_ids (`np.ndarray` of shape `(n,)`): raw user ids, int64 or object (str).
        item_ids (`np.ndarray` of shape `(n,)`): raw item ids, int64 or object (str).
        ratings (`np.ndarray` of shape `(n,)`): rewards, float32 (1.0 for implicit data).
        timestamps (`np.ndarray` of shape `(n,)`): Unix seconds, int64.
        source (`str`): where the events come from (a file name), used in error messages.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    source: str = field(default="<interactions>")

    def __post_init__(self) -> None:
        self.user_ids = _as_id_array(self.user_ids)
        self.item_ids = _as_id_array(self.item_ids)
        self.ratings = np.asarray(self.ratings, dtype=np.float32).reshape(-1)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64).reshape(-1)
        lengths = {
            "user_ids": len(self.user_ids),
            "item_ids": len(self.item_ids),
            "ratings": len(self.ratings),
            "timestamps": len(self.timestamps),
        }
        if len(set(lengths.values())) > 1:
            raise ValueError(
                f"{self.source}: the columns of an Interactions log must have equal lengths, got {lengths}. "
                "Fix: pass one value per event in every column."
            )

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def num_users(self) -> int:
        """Number of distinct users."""
        return len(np.unique(self.user_ids))

    @property
    def num_items(self) -> int:
        """Number of distinct items."""
        return len(np.unique(self.item_ids))

    def select(self, indices: np.ndarray) -> Interactions:
        """A new log with the events at `indices` (an index or boolean array), in that order."""
        return Interactions(
            user_ids=self.user_ids[indices],
            item_ids=self.item_ids[indices],
            ratings=self.ratings[indices],
            timestamps=self.timestamps[indices],
            source=self.source,
        )


def _as_id_array(values: object) -> np.ndarray:
    """Ids stay int64 when they are integers; anything else becomes an object array of str."""
    array = np.asarray(values).reshape(-1)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind == "O":
        values = array.tolist()
        if all(isinstance(value, str) for value in values):
            return array
        if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            return array.astype(np.int64)
    return array.astype(str).astype(object)
