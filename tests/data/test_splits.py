import logging

import numpy as np
import pytest
from sequence_rows import sequences_from_rows

from hf_genrec.data import (
    EVALUATION_FEATURES,
    SEQUENCE_FEATURES,
    SPLITS,
    DataFormatError,
    build_sequences,
    generate_synthetic_interactions,
    leave_one_out_split,
    split_sequences,
    temporal_split,
)

EXAMPLE = {
    "a": [(1, 5.0, 10), (2, 4.0, 20), (3, 3.0, 30), (4, 2.0, 40)],
    "b": [(5, 1.0, 15), (6, 2.0, 25), (7, 3.0, 35)],
    "c": [(8, 4.0, 12), (9, 5.0, 22)],  # too short for leave-one-out
}


def test_leave_one_out_exact_rows(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_genrec.data.splits"):
        splits = leave_one_out_split(sequences_from_rows(EXAMPLE))
    assert "dropped 1 users with fewer than 3 events" in caplog.text
    assert splits["train"].features == SEQUENCE_FEATURES
    assert splits["test"].features == EVALUATION_FEATURES
    assert splits["train"].to_list() == [
        {"user_id": "a", "item_ids": [1, 2], "ratings": [5.0, 4.0], "timestamps": [10, 20]},
        {"user_id": "b", "item_ids": [5], "ratings": [1.0], "timestamps": [15]},
    ]
    assert splits["validation"].to_list() == [
        {"user_id": "a", "item_ids": [1, 2], "ratings": [5.0, 4.0], "timestamps": [10, 20],
         "target_item_id": 3, "target_rating": 3.0, "target_timestamp": 30},
        {"user_id": "b", "item_ids": [5], "ratings": [1.0], "timestamps": [15],
         "target_item_id": 6, "target_rating": 2.0, "target_timestamp": 25},
    ]  # fmt: skip
    assert splits["test"].to_list() == [
        {"user_id": "a", "item_ids": [1, 2, 3], "ratings": [5.0, 4.0, 3.0], "timestamps": [10, 20, 30],
         "target_item_id": 4, "target_rating": 2.0, "target_timestamp": 40},
        {"user_id": "b", "item_ids": [5, 6], "ratings": [1.0, 2.0], "timestamps": [15, 25],
         "target_item_id": 7, "target_rating": 3.0, "target_timestamp": 35},
    ]  # fmt: skip


def test_leave_one_out_needs_three_events():
    with pytest.raises(DataFormatError, match="at least 3 events"):
        leave_one_out_split(sequences_from_rows({"c": EXAMPLE["c"]}))


def test_leave_one_out_honours_an_indices_mapping():
    sequences = sequences_from_rows(EXAMPLE).select([1, 0])  # a view: rows reordered, arrow data untouched
    assert leave_one_out_split(sequences)["test"]["user_id"] == ["b", "a"]


TEMPORAL = {
    "a": [(1, 5.0, 10), (2, 4.0, 20), (3, 3.0, 30), (4, 2.0, 40), (5, 1.0, 50)],
    "b": [(6, 1.0, 5), (7, 2.0, 42), (8, 3.0, 44)],
    "c": [(9, 4.0, 35), (10, 5.0, 36)],  # no event before 30: no validation history
    "d": [(11, 3.0, 1), (12, 3.0, 2), (13, 3.0, 3)],  # all events in train
}


def test_temporal_split_exact_targets():
    splits = temporal_split(sequences_from_rows(TEMPORAL), validation_start=30, test_start=40)
    train = {row["user_id"]: row["item_ids"] for row in splits["train"]}
    assert train == {"a": [1, 2], "d": [11, 12, 13]}  # b has one event before 30, c none
    validation = {row["user_id"]: (row["item_ids"], row["target_item_id"]) for row in splits["validation"]}
    assert validation == {"a": ([1, 2], 3)}  # c's first window event (35) has no history
    test = {row["user_id"]: row for row in splits["test"]}
    assert sorted(test) == ["a", "b"]  # c, d have no event at or after 40
    assert (test["a"]["item_ids"], test["a"]["target_item_id"]) == ([1, 2, 3], 4)  # history spans the window
    assert test["a"]["timestamps"] == [10, 20, 30] and test["a"]["target_timestamp"] == 40
    assert (test["b"]["item_ids"], test["b"]["target_item_id"], test["b"]["target_rating"]) == ([6], 7, 2.0)


def test_temporal_split_default_cutoffs_are_quantiles():
    sequences, _ = build_sequences(generate_synthetic_interactions(num_users=200, seed=1))
    timestamps = np.concatenate(sequences["timestamps"])
    splits = temporal_split(sequences, validation_fraction=0.1, test_fraction=0.2)
    test_start = min(splits["test"]["target_timestamp"])
    validation_start = min(splits["validation"]["target_timestamp"])
    assert np.mean(timestamps >= test_start) == pytest.approx(0.2, abs=0.02)
    assert np.mean((timestamps >= validation_start) & (timestamps < test_start)) == pytest.approx(
        0.1, abs=0.02
    )
    assert max(max(ts) for ts in splits["train"]["timestamps"]) < validation_start
    for row in splits["test"]:
        assert max(row["timestamps"]) <= row["target_timestamp"]


def test_split_sequences_dispatch():
    assert SPLITS == ("leave-one-out", "temporal", "future")
    sequences = sequences_from_rows(TEMPORAL)
    assert split_sequences(sequences, "leave-one-out")["test"]["target_item_id"] == [5, 8, 13]
    assert len(split_sequences(sequences, "temporal", validation_start=30, test_start=40)["test"]) == 2
    with pytest.raises(ValueError, match="valid methods are \\['leave-one-out', 'temporal', 'future'\\]"):
        split_sequences(sequences, "random")
    with pytest.raises(ValueError, match="after test_start"):
        temporal_split(sequences, validation_start=50, test_start=40)
