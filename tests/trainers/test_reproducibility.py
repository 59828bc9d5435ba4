"""Same seed -> identical weights, for the methods that sample (contexts, candidates, actions)."""

import pytest
from posttrain_helpers import (
    FakeRewardEnsemble,
    max_abs_difference,
    posttrain_trainer,
    tiny_model,
    trainable_state,
)


def run(method, tmp_path, rows, seed):
    model = tiny_model(seed=0)
    posttrain_trainer(method, tmp_path, rows, model=model, reward_model=FakeRewardEnsemble(), seed=seed,
                      max_steps=4, contexts_per_sequence=2, **({"num_candidates": 4} if method == "dpo" else {})).train()
    return trainable_state(model)


@pytest.mark.parametrize("method", ["dpo", "ppo"])
def test_same_seed_same_weights(method, tmp_path, train_rows):
    first = run(method, tmp_path / "a", train_rows, seed=11)
    second = run(method, tmp_path / "b", train_rows, seed=11)
    other = run(method, tmp_path / "c", train_rows, seed=12)
    assert max_abs_difference(first, second) == 0.0
    assert max_abs_difference(first, other) > 0.0  # the seed does drive the sampling
