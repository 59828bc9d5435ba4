"""The benchmark's true-value column: when the embedded data is a log drawn in a simulated `World` (the preset's
`world`, no `--input`), every evaluated model's TRUE value at each test target, which offline metrics cannot see.

For a test target of user u logged at step t, the context is the world's state before it: every item u consumed
at steps < t, observed or not (`SimulationTruth.timestamps` give t). The model's policy π over the catalogue
(`recommender_policy`: items the context consumed excluded) is scored exactly with the world's true reward,
V*(π | context) = Σ_i π(i | context) r*(context, i) (`context_true_values`), one value per test row, saved in
dataset order beside the ranks so that the report averages a user's rows and forms subsets as for the ranking metrics.
The oracle's, the logging policy's and the uniform policy's values at the same contexts are the run's references.

The log is rebuilt from the world spec (`SimulatedLog.draw`, seeded) rather than stored; it is drawn once per
process (`draw_world_log`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data import write_movielens_file
from ..data.columns import TARGET_ITEM_ID, TARGET_TIMESTAMP, USER_ID
from ..data.prepared import load_prepared
from ..models import AutoModelForNextItemPrediction
from ..simulation import (
    EvaluationContexts,
    SimulationTruth,
    logging_policy_probabilities,
    oracle_probabilities,
    recommender_policy,
    uniform_probabilities,
)
from ..simulation.evaluation import context_true_values
from ..simulation.simulated_log import SimulatedLog
from .stages import stage

__all__ = [
    "REFERENCE_POLICIES",
    "TRUE_VALUES_FILE",
    "draw_world_log",
    "load_reference_values",
    "load_true_values",
    "simulate_world",
    "target_contexts",
    "world_references",
    "world_value",
]

TRUE_VALUES_FILE = "true_values.npy"
REFERENCES_FILE = "reference_true_values.npz"
# The policies every model is compared with in the world, in the order the report lists them.
REFERENCE_POLICIES = ("oracle", "logging", "uniform")


@functools.lru_cache(maxsize=2)
def _draw(spec: str) -> SimulatedLog:
    return SimulatedLog.draw(json.loads(spec))


def draw_world_log(world: dict[str, Any]) -> SimulatedLog:
    """The log of the preset's world spec (`SimulatedLog.draw` inputs), drawn once per process: every stage of a
    run that needs the truth gets the same seeded log without simulating it again."""
    return _draw(json.dumps(world, sort_keys=True))


@stage("simulate_world", output="ratings.dat")
def simulate_world(output: Path, *, world: dict[str, Any]) -> dict[str, Any]:
    """The embedded data when the preset has a world: a log drawn in it, as a MovieLens file (its truth is rebuilt
    from `world` by the stages that need it)."""
    log = draw_world_log(world)
    write_movielens_file(log.interactions, output)
    return {"num_interactions": len(log.interactions), "observed_share": float(log.truth.observed.mean()),
            "num_users": int(log.truth.items.shape[0]), "num_items": int(log.world.num_items)}


def target_contexts(truth: SimulationTruth, test_dataset: Any, raw_item_ids: list[Any]) -> EvaluationContexts:
    """The world's state before each test target, in dataset order: the user's items consumed at earlier steps,
    observed or not (the target itself excluded).

    Args:
        truth (`SimulationTruth`): the truth of the simulated log the test split was prepared from.
        test_dataset: the test split's rows (`USER_ID` = world user + 1, `TARGET_ITEM_ID`, `TARGET_TIMESTAMP`).
        raw_item_ids (`list`): the vocabulary's raw ids (`ItemVocabulary.raw_ids`, world item = raw id - 1).
    """
    if truth.timestamps is None:
        raise ValueError("truth.timestamps is None; pass the SimulationTruth that simulate_logs returned with the log.")
    users = np.asarray([int(user) for user in test_dataset[USER_ID]], dtype=np.int64) - 1
    times = np.asarray(test_dataset[TARGET_TIMESTAMP], dtype=np.int64)
    raw = np.asarray([int(raw_item_ids[index - 1]) for index in test_dataset[TARGET_ITEM_ID]], dtype=np.int64)
    # A user's timestamps increase strictly (every gap is at least a minute): the target's step is where its time is.
    steps = np.asarray([np.searchsorted(truth.timestamps[user], time) for user, time in zip(users, times)], np.int64)
    width = truth.items.shape[1]
    found = steps < width
    found[found] &= (truth.timestamps[users[found], steps[found]] == times[found]) & \
        (truth.items[users[found], steps[found]] + 1 == raw[found])
    if not found.all():
        row = int(np.flatnonzero(~found)[0])
        raise ValueError(f"test row {row} (user {users[row] + 1}, item {raw[row]}, time {times[row]}) is not an event "
                         "of the simulated log; prepare the data from the log of this world spec.")
    history = np.where(np.arange(width)[None, :] < steps[:, None], truth.items[users], -1)
    return EvaluationContexts(users, history)


def _test_contexts(world: dict[str, Any], data: Path, split: str) -> tuple[SimulatedLog, Any, EvaluationContexts]:
    log = draw_world_log(world)
    splits, vocabulary = load_prepared(data, split)
    return log, vocabulary, target_contexts(log.truth, splits["test"], vocabulary.raw_ids)


@stage("world_value")
def world_value(output: Path, *, model: Path, data: Path, split: str, world: dict[str, Any]) -> dict[str, Any]:
    """The true value V* of `model`'s policy at every test target (`TRUE_VALUES_FILE`, dataset order)."""
    log, vocabulary, contexts = _test_contexts(world, data, split)
    policy = recommender_policy(AutoModelForNextItemPrediction.from_pretrained(model), vocabulary,
                                log.world.num_items)
    values = context_true_values(log.world, contexts, policy)
    np.save(output / TRUE_VALUES_FILE, values)
    return {"mean_over_targets": float(values.mean()) if values.size else float("nan"), "num_targets": len(values)}


@stage("world_references")
def world_references(output: Path, *, data: Path, split: str, world: dict[str, Any]) -> dict[str, Any]:
    """The oracle's (argmax r*), the logging policy's and the uniform policy's V* at every test target
    (`REFERENCES_FILE`, one array per policy in dataset order)."""
    log, _, contexts = _test_contexts(world, data, split)
    probabilities = {"oracle": oracle_probabilities(log.world, contexts),
                     "logging": logging_policy_probabilities(log.world, log.policy, contexts),
                     "uniform": uniform_probabilities(log.world, contexts)}
    values = {name: context_true_values(log.world, contexts, probabilities[name]) for name in REFERENCE_POLICIES}
    np.savez(output / REFERENCES_FILE, **values)
    return {name: float(value.mean()) if value.size else float("nan") for name, value in values.items()}


def load_true_values(stage_dir: Path) -> np.ndarray:
    """What `world_value` saved in `stage_dir`."""
    return np.load(Path(stage_dir) / TRUE_VALUES_FILE)


def load_reference_values(stage_dir: Path) -> dict[str, np.ndarray]:
    """What `world_references` saved in `stage_dir`: `{policy: (N,) values}`."""
    with np.load(Path(stage_dir) / REFERENCES_FILE) as arrays:
        return {name: arrays[name] for name in REFERENCE_POLICIES}
