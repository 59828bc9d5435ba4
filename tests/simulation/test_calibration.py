"""A world calibrated on a ratings log (`calibrate_world`) and the logging propensities a log can carry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_genrec.cli import build_parser
from hf_genrec.commands.simulate import simulate
from hf_genrec.data import write_movielens_file
from hf_genrec.data.loaders import read_movielens
from hf_genrec.simulation import LoggingPolicy, ObservationModel, World, simulate_logs
from hf_genrec.simulation.calibration import calibrate_world, read_ratings
from hf_genrec.simulation.evaluation import _pearson, _ranks
from hf_genrec.simulation.logging_policy import logged_propensities, read_propensities, write_propensities
from hf_genrec.simulation.study import SimulationPreset, training_recipes


@pytest.fixture(scope="module")
def synthetic_log():
    world = World.synthetic(num_users=400, num_items=60, dim=4, seed=0)
    policy = LoggingPolicy(strength=0.0, exploration=0.2)  # taste-blind: item means are not selection-biased
    interactions, truth = simulate_logs(world, events_per_user=30, policy=policy, observation=ObservationModel(),
                                        seed=1)
    return world, policy, interactions, truth


def spearman(first: np.ndarray, second: np.ndarray) -> float:
    return _pearson(_ranks(np.asarray(first, dtype=np.float64)), _ranks(np.asarray(second, dtype=np.float64)))


def _item_mean_ratings(interactions, item_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, items = np.unique(interactions.item_ids, return_inverse=True)
    counts = np.bincount(items, minlength=len(item_ids))
    return np.bincount(items, interactions.ratings, minlength=len(item_ids)) / np.maximum(counts, 1), counts


def test_calibration_recovers_the_item_effects_of_a_known_world(synthetic_log):
    world, _, interactions, _ = synthetic_log
    calibrated, fit = calibrate_world(interactions, dim=4, seed=0)
    true_effect = world.quality[fit.item_ids - 1]  # simulated item ids are world indices + 1
    correlation = np.corrcoef(calibrated.quality, true_effect)[0, 1]
    assert correlation > 0.8, f"calibrated item effects correlate {correlation:.3f} with the true qualities"
    # and the calibrated r* explains the ratings better than the item means, out of sample
    assert fit.heldout_rmse < fit.item_mean_heldout_rmse


def test_calibrated_world_reproduces_the_item_mean_ordering(synthetic_log):
    _, _, interactions, _ = synthetic_log
    calibrated, fit = calibrate_world(interactions, dim=4, seed=0)
    means, counts = _item_mean_ratings(interactions, fit.item_ids)
    first_reward = calibrated.true_reward(np.arange(calibrated.num_users), np.full((calibrated.num_users, 0), -1))
    rank = spearman(first_reward.mean(axis=0), means)
    assert rank > 0.95, f"the calibrated world's mean r* ranks items like their mean ratings with Spearman {rank:.3f}"
    assert calibrated.num_items == len(counts) and calibrated.num_users == interactions.num_users
    np.testing.assert_allclose(calibrated.log_popularity.max(), 0.0)


def test_calibrated_fit_is_consistent_with_its_world(synthetic_log):
    _, _, interactions, _ = synthetic_log
    calibrated, fit = calibrate_world(interactions, dim=4, holdout=0.0, seed=0)
    _, users = np.unique(interactions.user_ids, return_inverse=True)
    _, items = np.unique(interactions.item_ids, return_inverse=True)
    first_reward = calibrated.true_reward(np.arange(calibrated.num_users), np.full((calibrated.num_users, 0), -1))
    rmse = np.sqrt(np.mean((first_reward[users, items] - interactions.ratings) ** 2))
    np.testing.assert_allclose(fit.train_rmse, rmse, rtol=1e-5)
    assert fit.num_heldout == 0 and np.isnan(fit.heldout_rmse)
    assert 0.0 < fit.noise_std < fit.train_rmse


def test_calibration_on_real_movielens(data_root):
    ratings = read_movielens(data_root / "ml-1m" / "ratings.dat.gz")
    subset = ratings.select(ratings.user_ids <= 600)
    calibrated, fit = calibrate_world(subset, dim=8, iterations=5, seed=0)
    assert fit.num_users == 600 and calibrated.num_items == fit.num_items == subset.num_items
    # the factorised r* beats the item-mean baseline out of sample on real ratings (measured, not assumed):
    assert fit.heldout_rmse < fit.item_mean_heldout_rmse, fit.to_dict()
    assert fit.train_rmse < fit.item_mean_train_rmse
    means, counts = _item_mean_ratings(subset, fit.item_ids)
    frequent = counts >= 30
    rank = spearman(calibrated.quality[frequent], means[frequent])
    assert rank > 0.9


def test_propensity_modes_round_trip(synthetic_log, tmp_path):
    world, _, _, _ = synthetic_log
    policy = LoggingPolicy(strength=1.0, popularity_weight=0.5, exploration=0.1, coverage=0.8)
    interactions, truth = simulate_logs(world, 50, 10, policy, ObservationModel(missingness=0.5), seed=3)
    assert logged_propensities(world, policy, truth, "hidden") is None
    exported = logged_propensities(world, policy, truth, "exported")
    assert exported.shape == (len(interactions),) and (exported > 0).all() and (exported <= 1).all()
    # replaying the consumed items under the true policy gives back the propensities they were drawn with
    np.testing.assert_array_equal(logged_propensities(world, policy, truth, "wrong", temperature=1.0), exported)
    wrong = logged_propensities(world, policy, truth, "wrong", temperature=0.0)
    assert wrong.shape == exported.shape and not np.allclose(wrong, exported)
    path = write_propensities(tmp_path / "propensities.csv", interactions, exported)
    read = read_propensities(path)
    np.testing.assert_array_equal(read["propensity"], exported)
    np.testing.assert_array_equal(read["user_id"], interactions.user_ids)
    np.testing.assert_array_equal(read["item_id"], interactions.item_ids)
    np.testing.assert_array_equal(read["timestamp"], interactions.timestamps)
    with pytest.raises(ValueError, match="propensities mode 'bogus'"):
        logged_propensities(world, policy, truth, "bogus")


_MODEL = {"hidden_size": 8, "num_hidden_layers": 1, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 10,
          "max_position_embeddings": 13, "num_negatives": 8, "input_dropout": 0.0, "linear_dropout": 0.0}


def test_simulate_calibrated_on_an_input_file(synthetic_log, tmp_path):
    _, _, interactions, _ = synthetic_log
    ratings = tmp_path / "ratings.dat"
    write_movielens_file(interactions, ratings)
    preset = SimulationPreset(
        "micro", world={"num_users": 60, "num_items": 20, "dim": 3, "seed": 0}, events_per_user=8,
        logging={"strength": 1.0}, observation={}, noise_levels=(0.5,), log_sizes=(60,), coverages=(0.8,),
        training=training_recipes("micro", _MODEL, epochs=1, reward_epochs=1, members=2, steps=2, batch=20),
        methods=("sft",), propensities="exported",
    )
    results = simulate(tmp_path / "run", preset=preset, input_path=ratings, show_progress=False)
    loaded = json.loads((tmp_path / "run" / "results.json").read_text())
    fit = loaded["calibration"]["fit"]
    _, expected = calibrate_world(read_ratings(ratings), seed=0)
    assert fit == pytest.approx(expected.to_dict())
    assert "calibrated on" in results["markdown"]
    (propensity_file,) = (tmp_path / "run" / "stages").glob("simulate-*/propensities.csv")
    logged = read_propensities(propensity_file)
    simulated = read_movielens(propensity_file.parent / "ratings.dat")  # one propensity per event, in log order
    np.testing.assert_array_equal(logged["user_id"], simulated.user_ids)
    np.testing.assert_array_equal(logged["timestamp"], simulated.timestamps)
    assert ((logged["propensity"] > 0) & (logged["propensity"] <= 1)).all()
    # the simulated log lives in the calibrated world: its items are that world's (60 items of the input)
    assert logged["item_id"].max() <= expected.num_items


def test_simulate_input_flags():
    args = build_parser().parse_args(["simulate", "--input", "r.csv", "--format", "csv", "--columns",
                                      "user,item,rating,timestamp", "--header"])
    assert (args.input, args.format, args.columns, args.header) == ("r.csv", "csv", "user,item,rating,timestamp", True)
    with pytest.raises(ValueError, match="--input"):
        simulate("unused", format="csv")
