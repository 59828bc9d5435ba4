"""Sanity tests of the simulator's world and logs (issue 14, items 1-2): the parts that need no training."""

import dataclasses
import json

import numpy as np
import pytest
from datasets import load_from_disk

from hf_genrec.data import ITEM_IDS, RATINGS, read_movielens, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.simulation import LoggingPolicy, ObservationModel, World, simulate_logs

NUM_USERS, NUM_ITEMS, EVENTS = 120, 60, 15


@pytest.fixture(scope="module")
def world():
    return World.synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS, dim=8, seed=3)


def test_fixed_seed_gives_identical_logs_and_truth(world):
    first, truth = simulate_logs(world, events_per_user=EVENTS, seed=7)
    again, truth_again = simulate_logs(world, events_per_user=EVENTS, seed=7)
    other, _ = simulate_logs(world, events_per_user=EVENTS, seed=8)
    for column in ("user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(first, column), getattr(again, column))
    np.testing.assert_array_equal(truth.true_rewards, truth_again.true_rewards)
    np.testing.assert_array_equal(truth.propensities, truth_again.propensities)
    assert not np.array_equal(first.item_ids, other.item_ids)
    rebuilt = World.synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS, dim=8, seed=3)
    np.testing.assert_array_equal(rebuilt.item_features, world.item_features)


def test_logged_true_reward_is_the_true_reward_of_the_history(world):
    # The sampler updates its state incrementally; true_reward rebuilds it from the history: they must agree.
    _, truth = simulate_logs(world, events_per_user=EVENTS, seed=1)
    users = np.arange(NUM_USERS)
    for step in (0, 1, EVENTS - 1):
        rewards = world.true_reward(users, truth.items[:, :step])
        assert rewards.shape == (NUM_USERS, NUM_ITEMS)
        np.testing.assert_allclose(rewards[users, truth.items[:, step]], truth.true_rewards[:, step], rtol=1e-10)
    # Padding (< 0) anywhere is ignored; `items` selects columns.
    history = truth.items[:, :4]
    padded = np.concatenate([np.full((NUM_USERS, 2), -1), history[:, :2], np.full((NUM_USERS, 1), -1),
                             history[:, 2:]], axis=1)
    np.testing.assert_allclose(world.true_reward(users, padded, items=[0, 5]),
                               world.true_reward(users, history)[:, [0, 5]])


def test_satiation_novelty_and_drift(world):
    users = np.zeros(1, dtype=np.int64)
    empty = np.full((1, 0), -1)
    item = 10
    same_genre = np.flatnonzero((world.genre == world.genre[item]) & (np.arange(NUM_ITEMS) != item))[:3]
    # After similar items, the item loses value (satiation); drift is off so only the history matters.
    still = dataclasses.replace(world, drift=0.0)
    after_similar = still.true_reward(users, same_genre[None, :])[0, item]
    assert after_similar < still.true_reward(users, np.full((1, len(same_genre)), -1))[0, item] - 0.1
    # Consuming the item itself costs its novelty bonus and a full unit of satiation (<x_i, x_i> = 1).
    fresh = still.true_reward(users, empty)[0, item]
    consumed = still.true_reward(users, np.array([[item]]))[0, item]
    np.testing.assert_allclose(consumed, fresh - still.novelty - still.satiation)
    # Tastes drift with the number of events; with drift=0 they do not.
    assert not np.allclose(world.taste(users, [0]), world.taste(users, [25]))
    np.testing.assert_array_equal(still.taste(users, [0]), still.taste(users, [25]))


def test_zero_noise_ratings_are_the_rounded_clipped_true_reward(world):
    interactions, truth = simulate_logs(world, events_per_user=EVENTS, observation=ObservationModel(noise_std=0.0))
    assert truth.observed.all() and len(interactions) == NUM_USERS * EVENTS
    expected = np.clip(np.round(truth.true_rewards), 1, 5)
    np.testing.assert_array_equal(interactions.ratings, expected[truth.observed].astype(np.float32))
    noisy, _ = simulate_logs(world, events_per_user=EVENTS, observation=ObservationModel(noise_std=1.0))
    assert not np.array_equal(noisy.ratings, interactions.ratings)


def test_trap_items_inflate_observed_but_not_true_reward(world):
    observation = ObservationModel(noise_std=0.3, trap_share=0.2, trap_boost=1.5)
    interactions, truth = simulate_logs(world, events_per_user=EVENTS, observation=observation, seed=2)
    items = truth.items[truth.observed]
    excess = interactions.ratings - np.clip(truth.true_rewards[truth.observed], 1, 5)  # observed - true
    is_trap = truth.traps[items]
    assert 0.1 * NUM_ITEMS <= truth.traps.sum() <= 0.3 * NUM_ITEMS and is_trap.any() and (~is_trap).any()
    assert excess[is_trap].mean() > 0.7  # inflated (clipping at 5 keeps it below the full boost)
    assert abs(excess[~is_trap].mean()) < 0.2  # unbiased up to rounding and clipping


def test_popularity_bias_and_missingness(world):
    biased, truth = simulate_logs(world, events_per_user=EVENTS, observation=ObservationModel(popularity_bias=1.0))
    z = world.log_popularity - world.log_popularity.mean()
    excess = biased.ratings - np.clip(truth.true_rewards[truth.observed], 1, 5)
    assert np.corrcoef(z[truth.items[truth.observed]], excess)[0, 1] > 0.3
    full, _ = simulate_logs(world, events_per_user=EVENTS, seed=4)
    sparse, sparse_truth = simulate_logs(world, events_per_user=EVENTS, seed=4,
                                         observation=ObservationModel(missingness=0.9))
    assert len(sparse) < len(full) and not sparse_truth.observed.all()
    assert sparse.ratings.mean() > full.ratings.mean() + 0.1  # low ratings go missing more often


def test_logging_policy_coverage_and_propensities(world):
    policy = LoggingPolicy(strength=1.0, popularity_weight=0.5, exploration=0.1, coverage=0.5, seed=1)
    _, truth = simulate_logs(world, events_per_user=EVENTS, policy=policy)
    assert truth.support.sum() == NUM_ITEMS // 2 and truth.support[truth.items].all()
    seen = np.zeros((NUM_USERS, NUM_ITEMS), dtype=bool)
    seen[np.arange(NUM_USERS)[:, None], truth.items[:, :3]] = True
    users = np.arange(NUM_USERS)
    probabilities = policy.probabilities(world, world.true_reward(users, truth.items[:, :3]), seen)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert (probabilities[:, ~truth.support] == 0).all() and (probabilities[seen] == 0).all()
    np.testing.assert_allclose(probabilities[users, truth.items[:, 3]], truth.propensities[:, 3])
    with pytest.raises(ValueError, match="events_per_user"):
        simulate_logs(world, events_per_user=NUM_ITEMS // 2 + 1, policy=policy)


def test_stronger_logging_policy_has_higher_true_reward(world):
    values = [simulate_logs(world, events_per_user=EVENTS, policy=LoggingPolicy(strength=strength), seed=0)[1]
              .true_rewards.mean() for strength in (0.0, 1.0, 3.0)]
    assert values[0] + 0.2 < values[1] < values[2] - 0.1


def test_oracle_has_the_highest_one_step_true_value(world):
    _, truth = simulate_logs(world, events_per_user=EVENTS, seed=5)
    users, step = np.arange(NUM_USERS), 5
    rewards = world.true_reward(users, truth.items[:, :step])
    seen = np.zeros_like(rewards, dtype=bool)
    seen[users[:, None], truth.items[:, :step]] = True
    unseen = ~seen / (~seen).sum(axis=1, keepdims=True)
    popular = np.zeros_like(rewards)
    popular[users, np.argmax(np.where(seen, -np.inf, world.log_popularity[None, :]), axis=1)] = 1.0
    oracle = np.zeros_like(rewards)
    oracle[users, np.argmax(rewards, axis=1)] = 1.0
    policies = {"random": unseen, "popularity": popular, "oracle": oracle,
                "logging": LoggingPolicy().probabilities(world, rewards, seen)}
    values = {name: float((probabilities * rewards).sum(axis=1).mean()) for name, probabilities in policies.items()}
    assert max(values, key=values.get) == "oracle"
    assert values["oracle"] > max(value for name, value in values.items() if name != "oracle") + 0.1
    assert values["logging"] > values["random"]


def test_logs_load_through_prepare(world, tmp_path):
    interactions, truth = simulate_logs(world, events_per_user=EVENTS, seed=6,
                                        observation=ObservationModel(missingness=0.3))
    path = write_movielens_file(interactions, tmp_path / "raw" / "ratings.dat")
    read = read_movielens(path)
    np.testing.assert_array_equal(read.item_ids, interactions.item_ids)
    same_user = read.user_ids[1:] == read.user_ids[:-1]
    assert (np.diff(read.timestamps)[same_user] > 0).all()  # one chronological sequence per user
    manifest = prepare_dataset(path, tmp_path / "data")
    assert manifest["num_interactions"] == int(truth.observed.sum())
    assert json.loads((tmp_path / "data" / "prepare.json").read_text())["num_users"] == interactions.num_users
    sequences = load_from_disk(str(tmp_path / "data" / "sequences"))
    assert sum(len(row) for row in sequences[ITEM_IDS]) == len(interactions)
    assert set(np.concatenate([np.asarray(row) for row in sequences[RATINGS]]).tolist()) <= {1, 2, 3, 4, 5}
