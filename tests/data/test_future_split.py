"""The `future` split (the Netflix post's protocol): a global cutoff, H test targets per test user."""

import logging

import numpy as np
import pytest
from sequence_rows import sequences_from_rows

from hf_genrec.data import (
    SEQUENCE_FEATURES,
    build_sequences,
    generate_synthetic_interactions,
    split_sequences,
)
from hf_genrec.data.columns import WINDOW_POSITION, WINDOW_REWARD
from hf_genrec.data.splits import EVALUATION_FEATURES, FUTURE_EVALUATION_FEATURES, future_split

# validation_start = 5, cutoff = 10, H = 2, min_history = 2.
EXAMPLE = {
    "a": [
        (1, 5.0, 1),
        (2, 4.0, 2),
        (3, 3.0, 3),
        (4, 2.0, 5),
        (5, 1.0, 6),
        (6, 4.0, 10),
        (7, 5.0, 11),
        (8, 1.0, 12),
    ],
    "b": [
        (9, 1.0, 1),
        (10, 2.0, 2),
        (11, 3.0, 7),
        (12, 5.0, 10),
        (13, 2.0, 13),
    ],  # 1 validation event: no rows
    "c": [
        (14, 4.0, 1),
        (15, 4.0, 6),
        (16, 4.0, 8),
        (17, 4.0, 11),
    ],  # 1 event before validation, 1 after cutoff
    "d": [(18, 3.0, 10), (19, 3.0, 11), (20, 3.0, 12)],  # no history before the cutoff
    "e": [
        (21, 2.0, 2),
        (22, 2.0, 3),
        (23, 2.0, 4),
        (24, 5.0, 9),
        (25, 3.0, 10),
        (26, 1.0, 20),
    ],  # test from t=10
}


def _rows(dataset):
    return [
        (r["user_id"], r["item_ids"], r["target_item_id"], r[WINDOW_REWARD], r[WINDOW_POSITION])
        for r in dataset
    ]


def test_future_split_exact_rows(caplog):
    with caplog.at_level(logging.INFO, logger="hf_genrec.data.splits"):
        splits = future_split(sequences_from_rows(EXAMPLE), cutoff=10, validation_start=5, horizon=2, min_history=2)
    assert splits["train"]["user_id"] == ["a", "b", "e"]  # c has 1 event before validation_start, d none
    assert splits["train"]["item_ids"] == [[1, 2, 3], [9, 10], [21, 22, 23]]
    # Validation: only a has >= 2 events before validation_start and >= 2 in [5, 10); both are targets.
    assert _rows(splits["validation"]) == [("a", [1, 2, 3], 4, 3.0, 0), ("a", [1, 2, 3, 4], 5, 3.0, 1)]
    # Test: every target's history is all events before it, earlier test-window events included; the event
    # at the cutoff itself (t=10) is a test event.
    assert _rows(splits["test"]) == [
        ("a", [1, 2, 3, 4, 5], 6, 9.0, 0),
        ("a", [1, 2, 3, 4, 5, 6], 7, 9.0, 1),
        ("b", [9, 10, 11], 12, 7.0, 0),
        ("b", [9, 10, 11, 12], 13, 7.0, 1),
        ("e", [21, 22, 23, 24], 25, 4.0, 0),
        ("e", [21, 22, 23, 24, 25], 26, 4.0, 1),
    ]
    assert splits["test"]["target_rating"] == [4.0, 5.0, 5.0, 2.0, 3.0, 1.0]
    assert splits["train"].features == SEQUENCE_FEATURES
    assert splits["test"].features == FUTURE_EVALUATION_FEATURES
    # The other splits keep their columns.
    assert (
        split_sequences(sequences_from_rows(EXAMPLE), "temporal", validation_start=5, test_start=10)["test"].features
        == EVALUATION_FEATURES
    )
    assert "cutoff" in caplog.text and "3 test users (6 targets)" in caplog.text


def _synthetic():
    sequences, _ = build_sequences(generate_synthetic_interactions(num_users=60, num_items=40, seed=3))
    return sequences


def _event_sets(dataset, with_targets):
    events = set()
    for row in dataset:
        events |= {(row["user_id"], t, i) for t, i in zip(row["timestamps"], row["item_ids"])}
        if with_targets:
            events.add((row["user_id"], row["target_timestamp"], row["target_item_id"]))
    return events


def test_nothing_at_or_after_the_cutoff_reaches_train_or_validation():
    sequences = _synthetic()
    horizon, min_history = 3, 4
    splits = future_split(sequences, cutoff_quantile=0.7, horizon=horizon, min_history=min_history)
    timestamps = np.concatenate([np.asarray(t) for t in sequences["timestamps"]])
    cutoff = int(np.quantile(timestamps, 0.7, method="higher"))  # the documented default
    assert len(splits["train"]) and len(splits["validation"]) and len(splits["test"])
    train = _event_sets(splits["train"], with_targets=False)
    validation = _event_sets(splits["validation"], with_targets=True)
    assert max(t for _, t, _ in train | validation) < cutoff
    validation_start = min(splits["validation"]["target_timestamp"])
    assert max(t for _, t, _ in train) < validation_start
    targets = set(
        zip(
            splits["validation"]["user_id"],
            splits["validation"]["target_timestamp"],
            splits["validation"]["target_item_id"],
        )
    )
    assert not targets & train  # no validation target is a training event
    assert min(splits["test"]["target_timestamp"]) >= cutoff


def test_each_test_user_has_exactly_h_targets_with_full_histories():
    sequences = _synthetic()
    horizon, min_history = 3, 4
    splits = future_split(sequences, cutoff_quantile=0.7, horizon=horizon, min_history=min_history)
    cutoff = int(
        np.quantile(np.concatenate([np.asarray(t) for t in sequences["timestamps"]]), 0.7, method="higher")
    )
    assert len(splits["validation"]) and len(splits["test"])
    by_user = {row["user_id"]: row for row in sequences}
    for split in ("validation", "test"):
        rows = list(splits[split])
        users = [row["user_id"] for row in rows]
        assert all(users.count(user) == horizon for user in set(users))
        for user in set(users):
            window = [row for row in rows if row["user_id"] == user]
            assert [row[WINDOW_POSITION] for row in window] == list(range(horizon))
            full = by_user[user]
            first = len(window[0]["item_ids"])
            assert first >= min_history
            for j, row in enumerate(window):
                # The history is exactly the user's events before the target, the target the next event.
                assert row["item_ids"] == full["item_ids"][: first + j]
                assert row["ratings"] == full["ratings"][: first + j]
                assert row["target_item_id"] == full["item_ids"][first + j]
                assert row["target_rating"] == full["ratings"][first + j]
            if split == "test":  # the window is the user's first H events at or after the cutoff
                assert full["timestamps"][first - 1] < cutoff <= full["timestamps"][first]
            accumulated = sum(full["ratings"][first : first + horizon])
            assert [row[WINDOW_REWARD] for row in window] == pytest.approx([accumulated] * horizon)


def test_test_labels_change_nothing_before_the_cutoff():
    sequences = _synthetic()
    splits = future_split(sequences, cutoff_quantile=0.7, horizon=3, min_history=4)
    # Change the rating of every test target of the first test user.
    user = splits["test"][0]["user_id"]
    cutoff = min(splits["test"]["target_timestamp"])

    def relabel(row):
        if row["user_id"] == user:
            row["ratings"] = [
                6.0 - r if t >= cutoff else r for r, t in zip(row["ratings"], row["timestamps"])
            ]
        return row

    changed = future_split(sequences.map(relabel), cutoff_quantile=0.7, horizon=3, min_history=4)
    assert changed["train"].to_dict() == splits["train"].to_dict()
    assert changed["validation"].to_dict() == splits["validation"].to_dict()
    assert changed["test"]["target_rating"] != splits["test"]["target_rating"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be an int >= 1, got 0"),
        ({"min_history": 0}, "min_history must be an int >= 1"),
        ({"cutoff_quantile": 1.0}, r"cutoff_quantile must be in \(0, 1\), got 1.0"),
        ({"validation_fraction": 0.0}, r"validation_fraction must be in \(0, 1\)"),
        ({"cutoff": 1}, "no event happens before the cutoff"),
        ({"cutoff": 10, "validation_start": 11}, "validation_start .* is after the cutoff"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        future_split(sequences_from_rows(EXAMPLE), **kwargs)


def test_empty_test_split_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="hf_genrec.data.splits"):
        splits = split_sequences(sequences_from_rows(EXAMPLE), "future", cutoff=10, validation_start=5, horizon=5)
    assert len(splits["test"]) == 0
    assert "the test split is empty" in caplog.text
