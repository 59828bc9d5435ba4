"""The judge's `train+validation` data on the `future` split: every user's events before the cutoff, never one at or
after it (the test rows' histories would hold the earlier test-window events)."""

import numpy as np
import pytest

from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.data.splits import future_cutoffs
from hf_genrec.workflows.reward import train_plus_validation

OPTIONS = {"cutoff_quantile": 0.8, "horizon": 3, "min_history": 5, "validation_fraction": 0.2}


@pytest.fixture(scope="module")
def future_data():
    sequences, _ = build_sequences(generate_synthetic_interactions(num_users=120, num_items=40, mean_events=30, seed=2))
    validation_start, cutoff = future_cutoffs(sequences, cutoff_quantile=OPTIONS["cutoff_quantile"],
                                              validation_fraction=OPTIONS["validation_fraction"])
    splits = split_sequences(sequences, "future", **OPTIONS)
    return sequences, splits, validation_start, cutoff


def test_future_cutoffs_are_the_splits(future_data):
    sequences, splits, validation_start, cutoff = future_data
    assert validation_start <= cutoff
    # The test windows start at the cutoff, the validation windows at validation_start; training ends before it.
    first = np.asarray(splits["test"]["window_position"]) == 0
    assert min(np.asarray(splits["test"]["target_timestamp"])[first]) >= cutoff
    assert max(np.asarray(splits["validation"]["target_timestamp"])) < cutoff
    assert max(max(times) for times in splits["train"]["timestamps"]) < validation_start
    fixed = split_sequences(sequences, "future", cutoff=cutoff, validation_start=validation_start,
                            horizon=OPTIONS["horizon"], min_history=OPTIONS["min_history"])
    for name in ("train", "validation", "test"):
        assert fixed[name]["item_ids"] == splits[name]["item_ids"]


def test_judge_data_is_every_users_events_before_the_cutoff(future_data):
    sequences, splits, validation_start, cutoff = future_data
    judge_data = train_plus_validation(splits, sequences, cutoff)
    assert judge_data.column_names == splits["train"].column_names
    # No event at or after the cutoff, though the test rows' histories hold some (positions 1..H-1).
    assert max(max(times) for times in judge_data["timestamps"]) < cutoff
    assert max(max(times) for times in splits["test"]["timestamps"]) >= cutoff
    # Every user with >= 2 events before the cutoff, with all of them (the validation window included).
    expected = {}
    for row in sequences:
        before = [i for i, t in zip(row["item_ids"], row["timestamps"]) if t < cutoff]
        if len(before) >= 2:
            expected[row["user_id"]] = before
    assert dict(zip(judge_data["user_id"], judge_data["item_ids"])) == expected
    assert len(expected) > len(set(splits["test"]["user_id"]))  # more than the test users
    in_validation_window = sum(validation_start <= t < cutoff for times in judge_data["timestamps"] for t in times)
    assert in_validation_window > 0


def test_future_split_needs_the_sequences_and_cutoff(future_data):
    _, splits, _, _ = future_data
    with pytest.raises(ValueError, match="needs `sequences` and `cutoff`"):
        train_plus_validation(splits)
