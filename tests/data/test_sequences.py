import logging

import numpy as np
import pytest

from hf_genrec.data import (
    SEQUENCE_FEATURES,
    DataFormatError,
    Interactions,
    ItemVocabulary,
    UnknownItemError,
    build_sequences,
)


def _log(rows, source="test.dat"):
    users, items, ratings, timestamps = zip(*rows)
    return Interactions(
        np.array(users), np.array(items), np.array(ratings), np.array(timestamps), source=source
    )


def test_sequences_are_sorted_with_stable_tie_break():
    interactions = _log(
        [
            (2, 30, 1, 50),
            (1, 10, 5, 300),
            (1, 20, 4, 100),
            (1, 40, 3, 200),  # same time as the next two: file order 40, 30, 10 must be kept
            (1, 30, 2, 200),
            (1, 50, 1, 200),
            (2, 10, 2, 10),
        ]
    )
    sequences, vocab = build_sequences(interactions)
    assert vocab.raw_ids == [10, 20, 30, 40, 50]
    assert sequences.features == SEQUENCE_FEATURES
    rows = sequences.to_list()
    assert [row["user_id"] for row in rows] == ["1", "2"]
    first = rows[0]
    assert vocab.decode(first["item_ids"]) == [20, 40, 30, 50, 10]
    assert first["item_ids"] == [2, 4, 3, 5, 1]  # vocabulary indices, not raw ids
    assert first["ratings"] == [4.0, 3.0, 2.0, 1.0, 5.0]  # aligned with the items
    assert first["timestamps"] == [100, 200, 200, 200, 300]
    assert rows[1] == {"user_id": "2", "item_ids": [1, 3], "ratings": [2.0, 1.0], "timestamps": [10, 50]}


def test_users_are_sorted_numerically_and_string_ids_work():
    interactions = _log([(10, "b", 1, 1), (9, "a", 1, 2), (10, "a", 1, 3)])
    sequences, vocab = build_sequences(interactions)
    assert sequences["user_id"] == ["9", "10"]
    assert vocab.raw_ids == ["a", "b"]
    assert sequences["item_ids"] == [[1], [2, 1]]


def test_given_vocabulary_is_used_and_unknown_items_rejected():
    interactions = _log([(1, 7, 1, 1), (1, 8, 1, 2)])
    vocab = ItemVocabulary([8, 9, 7])
    sequences, returned = build_sequences(interactions, vocab)
    assert returned is vocab
    assert sequences["item_ids"] == [[3, 1]]
    with pytest.raises(UnknownItemError, match="item 8 is not in the item vocabulary"):
        build_sequences(interactions, ItemVocabulary([7]))


def test_min_events_drops_short_users(caplog):
    interactions = _log([(1, 1, 1, 1), (1, 2, 1, 2), (2, 1, 1, 1)])
    with caplog.at_level(logging.INFO, logger="hf_genrec.data.sequences"):
        sequences, _ = build_sequences(interactions, min_events=2)
    assert sequences["user_id"] == ["1"]
    assert "Dropped 1 users" in caplog.text
    with pytest.raises(DataFormatError, match="no user has at least 5 events"):
        build_sequences(interactions, min_events=5)


DUPLICATED = [(1, 5, 4, 100), (1, 6, 3, 100), (1, 5, 2, 100), (2, 5, 1, 100)]


def test_duplicates_keep():
    sequences, _ = build_sequences(_log(DUPLICATED), duplicates="keep")
    assert sequences[0]["item_ids"] == [1, 2, 1]


def test_duplicates_drop_keeps_first_occurrence():
    sequences, _ = build_sequences(_log(DUPLICATED), duplicates="drop")
    assert sequences[0]["item_ids"] == [1, 2]
    assert sequences[0]["ratings"] == [4.0, 3.0]  # the first occurrence's rating
    assert sequences[1]["item_ids"] == [1]  # same item and time but another user: not a duplicate


def test_duplicates_error_names_rows():
    with pytest.raises(DataFormatError) as info:
        build_sequences(_log(DUPLICATED, source="log.dat"), duplicates="error")
    message = str(info.value)
    assert message.startswith("log.dat: data rows 1 and 3")
    assert "user 1, item 5, timestamp 100" in message and "duplicates='drop'" in message
    with pytest.raises(ValueError, match="not a policy"):
        build_sequences(_log(DUPLICATED), duplicates="first")
