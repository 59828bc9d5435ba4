"""`WorldRewardModel`: the world's true reward behind the reward-ensemble interface, checked against the truth the
simulator recorded for every logged event (no training)."""

import numpy as np
import pytest
import torch

from hf_genrec.data import SequenceCollator, write_movielens_file
from hf_genrec.data.history import History
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.simulation import LoggingPolicy, ObservationModel, World, WorldRewardModel, simulate_logs
from hf_genrec.trainers.policy import load_reward_model

EVENTS = 10
POLICY = LoggingPolicy(strength=1.5, coverage=0.9, seed=1)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    world = World.synthetic(num_users=40, num_items=30, dim=3, seed=2)
    interactions, truth = simulate_logs(world, events_per_user=EVENTS, policy=POLICY, seed=3)
    folder = tmp_path_factory.mktemp("true_reward")
    prepare_dataset(write_movielens_file(interactions, folder / "ratings.dat"), folder / "data")
    splits, vocabulary = load_prepared(folder / "data", "leave-one-out")
    batch = SequenceCollator(max_seq_len=EVENTS)([splits["train"][row] for row in range(len(splits["train"]))])
    return world, truth, vocabulary, splits["train"], batch


def test_rewards_of_logged_items_are_the_recorded_true_rewards(simulated):
    world, truth, vocabulary, train, batch = simulated
    model = load_reward_model(WorldRewardModel(world, truth, vocabulary, POLICY))  # has the trainers' methods
    history = History.from_batch(batch)
    positions = model.predict_positions(history, labels=batch["labels"])
    users = np.asarray(train["user_id"]).astype(int) - 1  # raw user id = world user + 1
    for row, user in enumerate(users):
        length = int((batch["labels"][row] != 0).sum())
        # Label at position i is the user's event i + 1 (every event is observed here).
        np.testing.assert_allclose(positions.mean[row, :length].numpy(), truth.true_rewards[user, 1:length + 1],
                                   rtol=1e-6)
        assert (positions.mean[row, length:] == 0).all()
    assert (positions.std == 0).all() and positions.members.shape[0] == 1
    # Candidates after each whole history: r* of any item given everything consumed so far.
    candidates = torch.tensor([[1, 5, 9]]).expand(len(users), 3)
    scores = model.predict_candidates(history, candidate_item_ids=candidates).mean.numpy()
    world_items = np.asarray([int(vocabulary.raw_ids[i - 1]) - 1 for i in (1, 5, 9)])
    lengths = batch["attention_mask"].sum(dim=1).numpy()
    for row, user in enumerate(users):
        expected = world.true_reward(np.array([user]), truth.items[user:user + 1, :lengths[row]], items=world_items)
        np.testing.assert_allclose(scores[row], expected[0], rtol=1e-6)
    # The value is the logging policy's expected r* at the state after each position.
    values = model.value_positions(history)
    state = truth.items[users[0]:users[0] + 1, :3]
    rewards = world.true_reward(users[:1], state)
    seen = np.zeros((1, world.num_items), dtype=bool)
    seen[0, state[0]] = True
    expected = (POLICY.probabilities(world, rewards, seen) * rewards).sum()
    assert values[0, 2].item() == pytest.approx(expected, rel=1e-5)


def test_histories_from_another_log_are_refused(simulated):
    world, truth, vocabulary, _, batch = simulated
    model = WorldRewardModel(world, truth, vocabulary)
    moved = History(batch["item_ids"], batch["attention_mask"], batch["timestamps"] + 1)
    with pytest.raises(ValueError, match="not an event of this simulation"):
        model.predict_candidates(moved, candidate_item_ids=batch["item_ids"][:, :2])
    with pytest.raises(ValueError, match="timestamps"):
        model.predict_candidates(batch["item_ids"], candidate_item_ids=batch["item_ids"][:, :2])
    _, other_truth = simulate_logs(world, events_per_user=EVENTS, observation=ObservationModel(), seed=3)
    other_truth.timestamps = None
    with pytest.raises(ValueError, match="truth.timestamps"):
        WorldRewardModel(world, other_truth, vocabulary)
