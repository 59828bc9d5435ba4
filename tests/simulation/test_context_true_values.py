"""`context_true_values`: V*(π | c) at every context in one vectorised pass (the benchmark's true-value column,
`world_value`), equal to `evaluate_policy` run on each context alone, the loop it replaced."""

import numpy as np
import pytest

from hf_genrec.simulation import (
    EvaluationContexts,
    evaluate_policy,
    logging_policy_probabilities,
    oracle_probabilities,
    uniform_probabilities,
)
from hf_genrec.simulation.evaluation import context_true_values
from hf_genrec.simulation.simulated_log import SimulatedLog

# A mini world, every event observed (as the benchmark's embedded world).
WORLD = {"world": {"num_users": 50, "num_items": 30, "dim": 4, "seed": 0}, "events_per_user": 12,
         "logging": {"strength": 2.0}, "observation": {"trap_share": 0.1},
         "setting": {"noise_std": 0.6, "num_users": 50, "coverage": 1.0}, "seed": 0}


@pytest.fixture(scope="module")
def log():
    return SimulatedLog.draw(WORLD)


@pytest.fixture(scope="module")
def contexts(log):
    """Test-target-like contexts: users at random steps (several per user, some with an empty history), padded."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, log.truth.items.shape[0], size=80)
    steps = rng.integers(0, log.truth.items.shape[1], size=80)
    width = log.truth.items.shape[1]
    history = np.where(np.arange(width)[None, :] < steps[:, None], log.truth.items[users], -1)
    return EvaluationContexts(users, history)


def _one_by_one(world, contexts, probabilities) -> np.ndarray:
    """The loop `world_value` ran before: `evaluate_policy` on every context alone."""
    return np.asarray([evaluate_policy(world, EvaluationContexts(contexts.users[i : i + 1],
                                                                 contexts.history[i : i + 1]),
                                       probabilities[i : i + 1]).true_value for i in range(len(contexts))])


def test_context_true_values_equal_the_per_context_loop(log, contexts):
    world = log.world
    rng = np.random.default_rng(1)
    policies = {"oracle": oracle_probabilities(world, contexts),
                "logging": logging_policy_probabilities(world, log.policy, contexts),
                "uniform": uniform_probabilities(world, contexts),
                "random": rng.dirichlet(np.ones(world.num_items), size=len(contexts))}
    for name, probabilities in policies.items():
        values = context_true_values(world, contexts, probabilities)
        assert values.shape == (len(contexts),), name
        np.testing.assert_allclose(values, _one_by_one(world, contexts, probabilities), rtol=0, atol=1e-6,
                                   err_msg=name)
        assert evaluate_policy(world, contexts, probabilities).true_value == pytest.approx(values.mean(), abs=1e-12)
    # The contexts differ: one value per context, not one broadcast mean.
    assert np.unique(np.round(context_true_values(world, contexts, policies["random"]), 9)).size > 1


def test_context_true_values_takes_a_callable_policy_and_checks_it(log, contexts):
    world = log.world
    values = context_true_values(world, contexts, lambda c: uniform_probabilities(world, c))
    np.testing.assert_allclose(values, _one_by_one(world, contexts, uniform_probabilities(world, contexts)),
                               rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        context_true_values(world, contexts, np.full((len(contexts), world.num_items), 0.5))
