"""Interactions -> one chronological sequence per user (a `datasets.Dataset` with list columns)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
from datasets import Dataset, DatasetInfo, Features, List, Value

from .columns import ITEM_IDS, RATINGS, TIMESTAMPS, USER_ID
from .errors import DataFormatError
from .interactions import Interactions
from .vocabulary import ItemVocabulary

__all__ = ["SEQUENCE_FEATURES", "DUPLICATE_POLICIES", "build_sequences"]

logger = logging.getLogger(__name__)

SEQUENCE_FEATURES = Features(
    {
        USER_ID: Value("string"),
        ITEM_IDS: List(Value("int32")),
        RATINGS: List(Value("float32")),
        TIMESTAMPS: List(Value("int64")),
    }
)
"""Columns of a sequence dataset: `item_ids` are vocabulary indices, aligned with `ratings` and `timestamps`."""

DUPLICATE_POLICIES = ("keep", "drop", "error")


def build_sequences(
    interactions: Interactions,
    vocabulary: ItemVocabulary | None = None,
    *,
    duplicates: str = "keep",
    min_events: int = 1,
) -> tuple[Dataset, ItemVocabulary]:
    """Groups an interaction log into one chronological sequence per user.

    Each user's events are sorted by timestamp; events with equal timestamps keep their file order
    (a stable sort over the whole log), so the result is deterministic. Users are ordered by raw id
    (numerically for int ids).

    Args:
        interactions (`Interactions`): the raw log.
        vocabulary (`ItemVocabulary`, *optional*): the vocabulary to encode items with, e.g. the one
            saved with a pretrained model. When `None`, one is built from the items in `interactions`.
        duplicates (`str`, defaults to `"keep"`): what to do with repeated (user, item, timestamp)
            events: `"keep"` them (logs may legitimately repeat an event, e.g. a re-watch logged at
            day resolution), `"drop"` all but the first occurrence, or raise an `"error"`.
        min_events (`int`, defaults to 1): users with fewer events (after `duplicates`) are dropped.

    Returns:
        `(sequences, vocabulary)`: a `Dataset` with `SEQUENCE_FEATURES` (one row per user) and the vocabulary.
    """
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates={duplicates!r} is not a policy; use one of {list(DUPLICATE_POLICIES)}.")
    if min_events < 1:
        raise ValueError(f"min_events must be >= 1, got {min_events}.")
    if len(interactions) == 0:
        raise DataFormatError(
            f"{interactions.source}: no interactions to build sequences from. Fix: check the input file."
        )
    if vocabulary is None:
        vocabulary = ItemVocabulary.from_items(interactions.item_ids)
    items = vocabulary.encode_array(interactions.item_ids)  # raises UnknownItemError
    user_keys, users = np.unique(interactions.user_ids, return_inverse=True)  # sorted raw ids
    users = users.reshape(-1)
    ratings, timestamps = interactions.ratings, interactions.timestamps

    keep = _duplicate_mask(users, items, timestamps, duplicates, interactions, user_keys, vocabulary)
    if keep is not None:
        users, items, ratings, timestamps = users[keep], items[keep], ratings[keep], timestamps[keep]

    # lexsort is stable: events of one user with the same timestamp stay in file order.
    order = np.lexsort((timestamps, users))
    users, items, ratings, timestamps = users[order], items[order], ratings[order], timestamps[order]
    counts = np.bincount(users, minlength=len(user_keys))

    kept_users = counts >= min_events
    if not kept_users.all():
        dropped = int((~kept_users & (counts > 0)).sum())
        logger.info("Dropped %d users with fewer than %d events (min_events).", dropped, min_events)
        event_mask = kept_users[users]
        users, items, ratings, timestamps = (
            users[event_mask],
            items[event_mask],
            ratings[event_mask],
            timestamps[event_mask],
        )
        counts = counts[kept_users]
        user_keys = user_keys[kept_users]
    else:
        counts = counts[counts > 0]
    if len(user_keys) == 0:
        raise DataFormatError(
            f"{interactions.source}: no user has at least {min_events} events. Fix: lower min_events."
        )
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    sequences = sequence_dataset(
        user_ids=[str(key) for key in user_keys.tolist()],
        offsets=offsets,
        item_ids=items,
        ratings=ratings,
        timestamps=timestamps,
    )
    logger.info(
        "Built %d user sequences (%d events, %d items) from %s.",
        len(sequences),
        int(offsets[-1]),
        vocabulary.num_items,
        interactions.source,
    )
    return sequences, vocabulary


def _duplicate_mask(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    policy: str,
    interactions: Interactions,
    user_keys: np.ndarray,
    vocabulary: ItemVocabulary,
) -> np.ndarray | None:
    """Boolean mask of the events to keep, or `None` to keep all."""
    if policy == "keep":
        return None
    # Sort by (user, item, timestamp); stability keeps the first file occurrence first in each group.
    order = np.lexsort((timestamps, items, users))
    same = (
        (users[order][1:] == users[order][:-1])
        & (items[order][1:] == items[order][:-1])
        & (timestamps[order][1:] == timestamps[order][:-1])
    )
    repeated = order[1:][same]  # every occurrence after the first
    if repeated.size == 0:
        return None
    if policy == "error":
        position = int(repeated.min())
        rank = int(np.flatnonzero(order == position)[0])
        first = int(order[rank - 1])
        while rank > 1 and same[rank - 2]:  # walk back to the group's first occurrence
            rank -= 1
            first = int(order[rank - 1])
        user = user_keys[users[position]]
        user = user.item() if isinstance(user, np.generic) else user  # 1, not np.int64(1)
        item = vocabulary.decode_one(int(items[position]))
        raise DataFormatError(
            f"{interactions.source}: data rows {first + 1} and {position + 1} (counting from 1, header "
            f"excluded) are the same event: user {user!r}, item {item!r}, timestamp {int(timestamps[position])} "
            f"({repeated.size} repeated events in total). Fix: remove the repeated rows, or pass "
            "duplicates='drop' to keep the first of each, or duplicates='keep'."
        )
    logger.info("Dropped %d repeated (user, item, timestamp) events (duplicates='drop').", repeated.size)
    keep = np.ones(len(users), dtype=bool)
    keep[repeated] = False
    return keep


def sequence_dataset(
    *,
    user_ids: list[str],
    offsets: np.ndarray,
    item_ids: np.ndarray,
    ratings: np.ndarray,
    timestamps: np.ndarray,
    extra_columns: dict[str, np.ndarray] | None = None,
    features: Features | None = None,
) -> Dataset:
    """Builds a sequence `Dataset` from flat event arrays, without a per-event Python loop.

    Args:
        user_ids: one id per row, length R.
        offsets (`np.ndarray` of shape `(R + 1,)`): row r holds events `offsets[r]:offsets[r + 1]`.
        item_ids, ratings, timestamps (`np.ndarray` of shape `(offsets[-1],)`): the flat event columns.
        extra_columns: scalar columns (one value per row), e.g. the targets of an evaluation split.
        features: the dataset's features; defaults to `SEQUENCE_FEATURES` plus the extra columns' types.
    """
    offsets32 = pa.array(np.asarray(offsets, dtype=np.int32))
    columns = {
        USER_ID: pa.array(user_ids, type=pa.string()),
        ITEM_IDS: pa.ListArray.from_arrays(offsets32, pa.array(np.asarray(item_ids, dtype=np.int32))),
        RATINGS: pa.ListArray.from_arrays(offsets32, pa.array(np.asarray(ratings, dtype=np.float32))),
        TIMESTAMPS: pa.ListArray.from_arrays(offsets32, pa.array(np.asarray(timestamps, dtype=np.int64))),
    }
    for name, values in (extra_columns or {}).items():
        columns[name] = pa.array(values)
    table = pa.table(columns)
    if features is None:
        features = Features({**Features.from_arrow_schema(table.schema), **SEQUENCE_FEATURES})
    # Features.arrow_schema is the target schema: e.g. a target column built as int64 is cast to int32.
    table = table.select(list(features)).cast(features.arrow_schema)
    return Dataset(table, info=DatasetInfo(features=features))
