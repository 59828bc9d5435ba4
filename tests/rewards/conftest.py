"""Fixtures for the reward tests: a tiny synthetic dataset, a tiny pretrained next-item checkpoint and a
2-member reward ensemble trained on it (about a second on one CPU thread)."""

from __future__ import annotations

import pytest
import torch
from reward_fixtures import TINY_MODEL, tiny_reward_args

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import build_sequences, generate_synthetic_interactions, split_sequences


@pytest.fixture(scope="session")
def tiny_data():
    """(splits, vocabulary) of 60 synthetic users over 30 items."""
    interactions = generate_synthetic_interactions(num_users=60, num_items=30, mean_events=20, seed=4)
    sequences, vocabulary = build_sequences(interactions)
    return split_sequences(sequences, "leave-one-out"), vocabulary


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory, tiny_data):
    """A directory holding an (untrained) next-item checkpoint and its vocabulary."""
    splits, vocabulary = tiny_data
    path = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **TINY_MODEL)).save_pretrained(path)
    vocabulary.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_ensemble(tmp_path_factory, tiny_data, tiny_pretrained):
    from hf_genrec.workflows.reward import train_reward_ensemble

    splits, vocabulary = tiny_data
    args = tiny_reward_args(tmp_path_factory.mktemp("reward"))
    return train_reward_ensemble(
        tiny_pretrained, splits["train"], splits["validation"], args, vocabulary=vocabulary,
        trained_on={"data": "synthetic"},
    )
