"""Column names of the sequence datasets and keys of the collated batches, defined once.

Dataset columns (one row per user or per evaluation case):

- `USER_ID`: the raw user id, as a string.
- `ITEM_IDS`, `RATINGS`, `TIMESTAMPS`: aligned, chronological lists; item ids are vocabulary indices.
- `TARGET_ITEM_ID`, `TARGET_RATING`, `TARGET_TIMESTAMP`: the held-out event of an evaluation row.
- `WINDOW_REWARD`, `WINDOW_POSITION`: only on the rows of the `future` split, whose test trajectory is a window of
  H events, each a row: the user's accumulated window reward (sum of the H observed ratings, the same on the
  user's H rows) and the row's position in the window (0..H-1).

Batch keys produced by `SequenceCollator` reuse `ITEM_IDS`, `RATINGS` and `TIMESTAMPS` and add the
`*_KEY` names below.
"""

from __future__ import annotations

# Dataset columns.
USER_ID = "user_id"
ITEM_IDS = "item_ids"
RATINGS = "ratings"
TIMESTAMPS = "timestamps"
TARGET_ITEM_ID = "target_item_id"
TARGET_RATING = "target_rating"
TARGET_TIMESTAMP = "target_timestamp"
WINDOW_REWARD = "window_reward"
WINDOW_POSITION = "window_position"

# Batch keys (see `SequenceCollator`).
ATTENTION_MASK = "attention_mask"
QUERY_TIMESTAMPS = "query_timestamps"
LABELS = "labels"
LABEL_RATINGS = "label_ratings"
TARGET_ITEM_IDS = "target_item_ids"
TARGET_RATINGS = "target_ratings"
TARGET_TIMESTAMPS = "target_timestamps"
HISTORY_ITEM_IDS = "history_item_ids"
HISTORY_REWARD_SUMS = "history_reward_sums"
WINDOW_REWARDS = "window_rewards"
WINDOW_POSITIONS = "window_positions"

__all__ = [
    "USER_ID",
    "ITEM_IDS",
    "RATINGS",
    "TIMESTAMPS",
    "TARGET_ITEM_ID",
    "TARGET_RATING",
    "TARGET_TIMESTAMP",
    "WINDOW_REWARD",
    "WINDOW_POSITION",
    "ATTENTION_MASK",
    "QUERY_TIMESTAMPS",
    "LABELS",
    "LABEL_RATINGS",
    "TARGET_ITEM_IDS",
    "TARGET_RATINGS",
    "TARGET_TIMESTAMPS",
    "HISTORY_ITEM_IDS",
    "HISTORY_REWARD_SUMS",
    "WINDOW_REWARDS",
    "WINDOW_POSITIONS",
]
