"""Fixtures of the post-training trainer tests (helpers live in `posttrain_helpers.py`)."""

from __future__ import annotations

import pytest
from datasets import Dataset
from posttrain_helpers import NUM_ITEMS, FakeRewardEnsemble

from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences


@pytest.fixture(scope="session")
def synthetic_data():
    """(splits, vocabulary) of 24 synthetic users over 30 items."""
    interactions = generate_synthetic_interactions(num_users=24, num_items=NUM_ITEMS, mean_events=20, seed=3)
    sequences, vocabulary = build_sequences(interactions)
    assert vocabulary.num_items == NUM_ITEMS
    return split_sequences(sequences, "leave-one-out"), vocabulary


@pytest.fixture
def train_rows(synthetic_data) -> Dataset:
    return synthetic_data[0]["train"]


@pytest.fixture
def fake_reward_model() -> FakeRewardEnsemble:
    return FakeRewardEnsemble()


