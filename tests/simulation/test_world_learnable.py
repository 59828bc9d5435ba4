"""The embedded simulated world (`EMBEDDED_WORLD`, `hf-genrec benchmark --world`) is one a tiny HSTU learns from.

In a world whose only history effect is a slowly drifting taste spread over several genres (with satiation pushing
the next item away from the last one's genre), a tiny HSTU's test HR@10 was most-popular's (0.057 vs 0.058 on the
tiny preset), so a true-value column over such models compared methods that had learned nothing. The world's
continuation term (the item that follows the last one consumed in its genre block gains `continuation`, a series'
next episode) gives the next item the item-to-item dependence a sequence model picks up; these tests check the term
itself and that a tiny HSTU trained on a slice of the embedded world's log clearly beats most-popular.
"""

import numpy as np
import pytest

from hf_genrec.benchmark.presets import EMBEDDED_WORLD
from hf_genrec.data import SequenceCollator, write_movielens_file
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.evaluation import MostPopularRecommender, evaluate_ranking
from hf_genrec.models import AutoModelForNextItemPrediction
from hf_genrec.simulation import World
from hf_genrec.simulation.simulated_log import SimulatedLog
from hf_genrec.workflows import pretrain

SPLIT = "leave-one-out"
# A slice of the embedded world's log: its world, logging policy and observation model, the first 300 users.
NUM_USERS = 300
MODEL = {"hidden_size": 32, "num_hidden_layers": 1, "attention_dim": 32, "linear_dim": 32, "max_seq_len": 32,
         "max_position_embeddings": 35, "num_negatives": 64, "input_dropout": 0.0, "linear_dropout": 0.0}
PRETRAIN = {"model": MODEL, "data": {"split": SPLIT}, "method": {},
            "training": {"num_train_epochs": 5, "learning_rate": 3e-3, "per_device_train_batch_size": 64,
                         "per_device_eval_batch_size": 512, "early_stopping_patience": None, "bf16": False,
                         "seed": 0}}


def _world(**reward_parameters: float) -> World:
    return World.synthetic(num_users=4, num_items=24, dim=4, seed=0, drift=0.0, **reward_parameters)


def test_continuation_rewards_the_next_item_of_the_last_ones_genre_block():
    plain, kappa = _world(), 1.5
    continued = _world(continuation=kappa)
    first = int(np.flatnonzero(plain.successor >= 0)[0])
    following = int(plain.successor[first])
    assert following == first + 1 and plain.genre[following] == plain.genre[first]
    # Block ends have no successor: the next id starts another genre.
    ends = np.flatnonzero(plain.successor < 0)
    assert all(end == plain.num_items - 1 or plain.genre[end + 1] != plain.genre[end] for end in ends)
    users = np.zeros(3, dtype=np.int64)
    # The last consumed item is what counts, wherever the padding lies; an empty history gets no bonus.
    histories = np.array([[-1, first, -1], [first, -1, -1], [following, -1, first]])
    difference = continued.true_reward(users, histories) - plain.true_reward(users, histories)
    expected = np.zeros_like(difference)
    expected[:, following] = kappa
    np.testing.assert_allclose(difference, expected, atol=1e-12)
    for empty in (np.full((1, 2), -1), np.full((1, 0), -1)):
        assert not (continued.true_reward(users[:1], empty) - plain.true_reward(users[:1], empty)).any()
    after_end = np.array([[ends[0]]])
    assert not (continued.true_reward(users[:1], after_end) - plain.true_reward(users[:1], after_end)).any()


def test_logged_true_rewards_include_the_continuation_bonus():
    # The logging policy updates its state step by step: its rewards equal r* recomputed from each history.
    spec = {**EMBEDDED_WORLD, "setting": {**EMBEDDED_WORLD["setting"], "num_users": 20}, "events_per_user": 12}
    log = SimulatedLog.draw(spec)
    users, items = np.arange(20), log.truth.items
    assert log.world.continuation > 0
    for step in range(1, 12):
        rewards = log.world.true_reward(users, items[:, :step])
        np.testing.assert_allclose(log.truth.true_rewards[:, step], rewards[users, items[:, step]], atol=1e-12)
    follows = items[:, 1:] == log.world.successor[items[:, :-1]]
    assert follows.mean() > 0.1  # users do follow series in the log


@pytest.fixture(scope="module")
def embedded_slice(tmp_path_factory):
    root = tmp_path_factory.mktemp("learnable")
    spec = {**EMBEDDED_WORLD, "setting": {**EMBEDDED_WORLD["setting"], "num_users": NUM_USERS}}
    log = SimulatedLog.draw(spec)
    prepare_dataset(write_movielens_file(log.interactions, root / "ratings.dat"), root / "data")
    pretrain(root / "data", root / "hstu", recipe=PRETRAIN)
    return root


def _ranking(model, splits, collator) -> dict[str, float]:
    """HR@10 and NDCG@10 over the validation and the test targets (one each per user: 2 x NUM_USERS targets)."""
    metrics = [evaluate_ranking(model, splits[name], collator)["all"] for name in ("validation", "test")]
    return {key: float(np.mean([m[key] for m in metrics])) for key in ("hr@10", "ndcg@10")}


def test_a_tiny_hstu_beats_most_popular_in_the_embedded_world(embedded_slice):
    splits, vocabulary = load_prepared(embedded_slice / "data", SPLIT)
    collator = SequenceCollator(max_seq_len=MODEL["max_seq_len"])
    hstu = _ranking(AutoModelForNextItemPrediction.from_pretrained(embedded_slice / "hstu"), splits, collator)
    popular = _ranking(MostPopularRecommender.from_dataset(splits["train"], vocabulary.num_items), splits, collator)
    print({"hstu": hstu, "most_popular": popular})
    # A clear win, not a tie (measured: HR@10 0.140 vs 0.055, NDCG@10 0.091 vs 0.027). In the world before the
    # continuation term (and base) this slice gave HR@10 0.057 vs 0.052 and NDCG@10 0.026 vs 0.026 (the tiny
    # benchmark: HR@10 0.057 vs 0.058).
    assert hstu["hr@10"] >= popular["hr@10"] + 0.05, (hstu, popular)
    assert hstu["ndcg@10"] >= 2 * popular["ndcg@10"], (hstu, popular)
