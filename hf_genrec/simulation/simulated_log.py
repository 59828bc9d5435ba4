"""`SimulatedLog`: a log drawn in a `World` from JSON inputs, with its hidden truth. It is rebuilt rather than
stored (everything is seeded), so every stage that needs the truth (the simulation study's, and the benchmark's
true-value column) draws the same log from the same inputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .calibration import calibrated_world
from .evaluation import EvaluationContexts
from .logging_policy import LoggingPolicy, ObservationModel, SimulationTruth, simulate_logs
from .world import World

__all__ = ["SimulatedLog", "WorldSetting", "build_world"]


@dataclass(frozen=True)
class WorldSetting:
    """One point of the sweep: observation noise std, users in the log, share of the catalogue the logging policy
    can show."""

    noise_std: float
    num_users: int
    coverage: float

    @property
    def name(self) -> str:
        """The setting's label in the results, e.g. `noise=0.6,users=400,coverage=0.8`."""
        return f"noise={self.noise_std:g},users={self.num_users},coverage={self.coverage:g}"


@dataclass
class SimulatedLog:
    """A world, its logging policy and a log drawn in it, with the truth (rebuilt, not stored: it is seeded)."""

    world: World
    policy: LoggingPolicy
    interactions: Any
    truth: SimulationTruth

    @classmethod
    def draw(cls, simulation: dict[str, Any]) -> SimulatedLog:
        """The log of `simulation_inputs(preset, setting, seed)`: the same inputs give the same log and truth."""
        setting = WorldSetting(**simulation["setting"])
        world = build_world(simulation["world"])
        policy = LoggingPolicy(coverage=setting.coverage, **simulation["logging"])
        observation = ObservationModel(noise_std=setting.noise_std, **simulation["observation"])
        interactions, truth = simulate_logs(world, setting.num_users, simulation["events_per_user"], policy,
                                            observation, seed=simulation["seed"])
        return cls(world, policy, interactions, truth)

    def contexts(self) -> EvaluationContexts:
        """Each user's state before the last logged event (the leave-one-out test target): the world's history is
        everything consumed before it, observed or not."""
        last = np.asarray([np.flatnonzero(row)[-1] for row in self.truth.observed])
        history = np.where(np.arange(self.truth.items.shape[1])[None, :] < last[:, None], self.truth.items, -1)
        return EvaluationContexts(np.arange(len(history)), history)


def build_world(world: dict[str, Any]) -> World:
    """The world of a simulation's inputs: `World.synthetic(**world)`, or, when `world` holds `calibrate` (a
    `calibration_spec`), the world calibrated on that ratings file (fitted once per process)."""
    if "calibrate" in world:
        return calibrated_world(world["calibrate"])[0]
    return World.synthetic(**world)
