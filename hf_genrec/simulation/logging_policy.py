"""Logging and observation in a `World`: who saw what (with propensities), and the ratings they left.

The logging policy, over the items a user has not consumed yet and that lie in its support S (a fixed random
share `coverage` of the catalogue), is a softmax of true taste mixed with popularity, plus uniform exploration:

    pi_log(i | u, h) = (1 - eps) * softmax_i(beta * r*(u, h, i) + alpha * p_i) + eps / |available|

(beta: `strength`, how closely the log follows true taste; alpha: `popularity_weight`; eps: `exploration`).
The observed rating of a logged event adds noise, a popularity bias and a "trap" boost, then rounds and clips:

    y = clip(round(r* + b * z(p_i) + c * 1[i in traps] + N(0, s^2)), 1, 5)

(s: `noise_std`; b: `popularity_bias`, z the standardised log-popularity; c: `trap_boost` on a random share
`trap_share` of the catalogue, items whose observed reward is inflated but whose true reward is not). A rating y
goes missing with probability `missingness * (5 - y) / 4` (users rate what they like: low ratings go missing
more often). The log keeps the observed events, in the loaders' `Interactions` schema; the truth (every consumed
item, its true reward and propensity, which events were observed, the traps) comes back separately. What a log
carries of the propensities is a choice (`logged_propensities`): hidden, exported, or wrong (a misspecified
policy's); `write_propensities` puts them in a side file next to the log, whose schema has no such column.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from ..data.interactions import Interactions
from ..data.synthetic import _GAP_SIGMA, _MAX_GAP, _MEDIAN_GAP, _MIN_GAP, _START_SPREAD
from .world import World

__all__ = [
    "PROPENSITY_MODES",
    "LoggingPolicy",
    "ObservationModel",
    "SimulationTruth",
    "logged_propensities",
    "read_propensities",
    "simulate_logs",
    "write_propensities",
]


@dataclass
class LoggingPolicy:
    """The policy that chose the logged items (see the module docstring for pi_log).

    Args:
        strength (`float`, defaults to 1.0): beta, the inverse temperature on the true reward (0: taste ignored).
        popularity_weight (`float`, defaults to 0.0): alpha, the weight of the log-popularity.
        exploration (`float`, defaults to 0.0): eps in [0, 1], the uniform share over the available items.
        coverage (`float`, defaults to 1.0): the share of the catalogue in the support, in (0, 1].
        seed (`int`, defaults to 0): seed of the support's draw.
    """

    strength: float = 1.0
    popularity_weight: float = 0.0
    exploration: float = 0.0
    coverage: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.coverage <= 1.0:
            raise ValueError(f"coverage must be in (0, 1], got {self.coverage}.")
        if not 0.0 <= self.exploration <= 1.0:
            raise ValueError(f"exploration must be in [0, 1], got {self.exploration}.")

    def support(self, world: World) -> np.ndarray:
        """The items the policy can show, `(num_items,)` bool: a seeded random share `coverage` of the catalogue."""
        size = max(1, int(np.ceil(self.coverage * world.num_items)))
        support = np.zeros(world.num_items, dtype=bool)
        support[np.random.default_rng(self.seed).permutation(world.num_items)[:size]] = True
        return support

    def probabilities(self, world: World, rewards: np.ndarray, seen: np.ndarray) -> np.ndarray:
        """pi_log over the catalogue `(B, num_items)` from true rewards `(B, num_items)` and the seen mask."""
        available = self.support(world)[None, :] & ~seen
        logits = self.strength * rewards + self.popularity_weight * world.log_popularity[None, :]
        logits = np.where(available, logits, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        softmax = np.exp(logits)
        softmax /= softmax.sum(axis=1, keepdims=True)
        uniform = available / available.sum(axis=1, keepdims=True)
        return (1.0 - self.exploration) * softmax + self.exploration * uniform


@dataclass
class ObservationModel:
    """How a consumed item becomes an observed 1-5 rating (see the module docstring for y).

    Args:
        noise_std (`float`, defaults to 0.6, the embedded dataset's): s, the std of the rating noise.
        popularity_bias (`float`, defaults to 0.0): b, the rating inflation per std of log-popularity.
        missingness (`float`, defaults to 0.0): in [0, 1]; a rating y is missing with probability
            `missingness * (5 - y) / 4`.
        trap_share (`float`, defaults to 0.0): the share of the catalogue that is a trap, in [0, 1].
        trap_boost (`float`, defaults to 1.5): c, the inflation of a trap's observed rating.
    """

    noise_std: float = 0.6
    popularity_bias: float = 0.0
    missingness: float = 0.0
    trap_share: float = 0.0
    trap_boost: float = 1.5

    def __post_init__(self) -> None:
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}.")
        for name in ("missingness", "trap_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")

    def observe(
        self, world: World, items: np.ndarray, true_rewards: np.ndarray, traps: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ratings and the observed mask for consumed `items` with `true_rewards` (same shape), `traps` a bool
        mask over the catalogue -> `(ratings float32, observed bool)`, both shaped like `items`."""
        popularity = world.log_popularity
        z = (popularity - popularity.mean()) / max(popularity.std(), 1e-12)
        noisy = (
            true_rewards
            + self.popularity_bias * z[items]
            + self.trap_boost * traps[items]
            + rng.normal(0.0, 1.0, items.shape) * self.noise_std
        )
        ratings = np.clip(np.round(noisy), 1, 5).astype(np.float32)
        observed = rng.random(items.shape) >= self.missingness * (5.0 - ratings) / 4.0
        return ratings, observed


@dataclass
class SimulationTruth:
    """What the log hides. Arrays are `(num_users, events_per_user)`, user then step; the log's rows are the
    entries where `observed` is True, in row-major order (so `true_rewards[observed]` aligns with them).

    Args:
        items (`np.ndarray`): the item index consumed at each step (every event, observed or not).
        true_rewards (`np.ndarray`): r*(u, h, i) of the consumed item, given everything consumed before.
        propensities (`np.ndarray`): pi_log(i | u, h) of the consumed item.
        observed (`np.ndarray`): whether the event's rating is in the log.
        traps (`np.ndarray` of shape `(num_items,)`): which items are traps.
        support (`np.ndarray` of shape `(num_items,)`): the logging policy's support.
        timestamps (`np.ndarray`, *optional*): the Unix time of each step (the log's `timestamps` where observed),
            which tells which user and step a logged history belongs to (`WorldRewardModel`).
    """

    items: np.ndarray
    true_rewards: np.ndarray
    propensities: np.ndarray
    observed: np.ndarray
    traps: np.ndarray
    support: np.ndarray
    timestamps: np.ndarray | None = None


def _consume(
    world: World, policy: LoggingPolicy, num_users: int, events_per_user: int, rng: np.random.Generator | None,
    forced: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs the logging policy for every user in lock-step -> `(items, true_rewards, propensities)`, each
    `(num_users, events_per_user)`. The state is updated incrementally: m <- gamma * m + x_chosen, last <- chosen.
    With `forced` `(num_users, events_per_user)` the items are those (a replay: `rng` is not used) and only the
    propensities that `policy` gives them are new."""
    users = np.arange(num_users)
    memory = np.zeros((num_users, world.item_features.shape[1]))
    seen = np.zeros((num_users, world.num_items), dtype=bool)
    last = np.full(num_users, -1)
    shape = (num_users, events_per_user)
    items, rewards, propensities = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)
    for step in range(events_per_user):
        all_rewards = world.reward_from_state(users, np.full(num_users, step), memory, seen, last)
        probabilities = policy.probabilities(world, all_rewards, seen)
        if forced is not None:
            chosen = forced[:, step]
        else:
            with np.errstate(divide="ignore"):  # log(0) = -inf: items outside the support are never drawn
                chosen = np.argmax(np.log(probabilities) + rng.gumbel(size=probabilities.shape), axis=1)
        items[:, step] = chosen
        rewards[:, step] = all_rewards[users, chosen]
        propensities[:, step] = probabilities[users, chosen]
        memory = world.satiation_decay * memory + world.item_features[chosen]
        seen[users, chosen] = True
        last = chosen
    return items, rewards, propensities


def simulate_logs(
    world: World,
    num_users: int | None = None,
    events_per_user: int = 20,
    policy: LoggingPolicy | None = None,
    observation: ObservationModel | None = None,
    *,
    seed: int = 0,
    start_timestamp: int = 978_300_000,
) -> tuple[Interactions, SimulationTruth]:
    """Simulates a logged interaction log in `world` and returns it with the hidden truth.

    Args:
        world (`World`): the world; its first `num_users` users consume items.
        num_users (`int`, *optional*): how many users log events; all of the world's when `None`.
        events_per_user (`int`, defaults to 20): items each user consumes (no item twice), at most the support size.
        policy (`LoggingPolicy`, *optional*): who chooses the items; `LoggingPolicy()` when `None`.
        observation (`ObservationModel`, *optional*): how ratings are observed; `ObservationModel()` when `None`.
        seed (`int`, defaults to 0): seed of the draws; the same seed gives the same log and truth.
        start_timestamp (`int`, defaults to 978_300_000): Unix time of the earliest possible event.

    Returns:
        `(interactions, truth)`: the observed events as `Interactions` (user ids 1..num_users, item ids
        1..num_items, ratings 1-5, increasing timestamps per user, ordered by user then time; write it with
        `hf_genrec.data.write_movielens_file` for `prepare`) and the `SimulationTruth`.
    """
    policy = policy or LoggingPolicy()
    observation = observation or ObservationModel()
    num_users = world.num_users if num_users is None else num_users
    if not 1 <= num_users <= world.num_users:
        raise ValueError(f"num_users must be in [1, {world.num_users}] (the world's users), got {num_users}.")
    support = policy.support(world)
    if not 1 <= events_per_user <= support.sum():
        raise ValueError(
            f"events_per_user must be in [1, {support.sum()}] (the logging policy's support: no item is consumed "
            f"twice), got {events_per_user}; raise coverage or lower events_per_user."
        )
    rng = np.random.default_rng(seed)
    items, true_rewards, propensities = _consume(world, policy, num_users, events_per_user, rng)
    traps = np.zeros(world.num_items, dtype=bool)
    traps[rng.permutation(world.num_items)[: int(round(observation.trap_share * world.num_items))]] = True
    ratings, observed = observation.observe(world, items, true_rewards, traps, rng)

    # Timestamps as in the embedded generator: log-normal gaps from a minute to four weeks, users join over years.
    gaps = np.clip(rng.lognormal(np.log(_MEDIAN_GAP), _GAP_SIGMA, items.shape), _MIN_GAP, _MAX_GAP).astype(np.int64)
    starts = start_timestamp + rng.integers(0, _START_SPREAD, num_users)
    times = starts[:, None] + np.cumsum(gaps, axis=1) - gaps[:, :1]
    user_ids = np.broadcast_to(np.arange(1, num_users + 1, dtype=np.int64)[:, None], items.shape)
    interactions = Interactions(
        user_ids=user_ids[observed],
        item_ids=items[observed] + 1,
        ratings=ratings[observed],
        timestamps=times[observed],
        source=f"simulated(seed={seed})",
    )
    truth = SimulationTruth(items, true_rewards, propensities, observed, traps, support, times)
    return interactions, truth


PROPENSITY_MODES = ("hidden", "exported", "wrong")


def logged_propensities(
    world: World, policy: LoggingPolicy, truth: SimulationTruth, mode: str = "exported", *, temperature: float = 0.5
) -> np.ndarray | None:
    """The logging propensity of each observed event (in the log's order) as a log would carry it.

    Args:
        world (`World`), policy (`LoggingPolicy`), truth (`SimulationTruth`): the log's world, policy and truth.
        mode (`str`, defaults to `"exported"`): `"hidden"`: none (`None`), what a real log usually has;
            `"exported"`: the true pi_log of each observed event; `"wrong"`: the propensities of a misspecified
            policy, the true one with its taste strength beta multiplied by `temperature`, replayed along the same
            consumed items (so they are exact probabilities of a policy, only not of the one that logged).
        temperature (`float`, defaults to 0.5): the factor on beta of the `"wrong"` policy (1: the true one; 0: a
            policy blind to taste; > 1: sharper than the truth).

    Returns:
        `np.ndarray` of shape `(num_observed_events,)` or `None` when hidden.
    """
    if mode not in PROPENSITY_MODES:
        raise ValueError(f"propensities mode {mode!r} is unknown; use one of {', '.join(PROPENSITY_MODES)}.")
    if mode == "hidden":
        return None
    if mode == "exported":
        return truth.propensities[truth.observed]
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}; pass the factor on the policy's strength.")
    wrong = dataclasses.replace(policy, strength=policy.strength * temperature)
    _, _, propensities = _consume(world, wrong, *truth.items.shape, None, forced=truth.items)
    return propensities[truth.observed]


def write_propensities(path: str | os.PathLike, interactions: Interactions, propensities: np.ndarray) -> str:
    """Writes the propensities of a log's events to a side file next to it (the loaders' schema has no propensity
    column): CSV `user_id,item_id,timestamp,propensity`, one row per event in the log's order. Returns the path."""
    propensities = np.asarray(propensities, dtype=np.float64)
    if len(propensities) != len(interactions):
        raise ValueError(f"propensities has {len(propensities)} values for a log of {len(interactions)} events; pass "
                         "one per event (logged_propensities of this log).")
    table = np.stack([interactions.user_ids.astype(np.int64), interactions.item_ids.astype(np.int64),
                      interactions.timestamps], axis=1)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("user_id,item_id,timestamp,propensity\n")
        for (user, item, timestamp), value in zip(table.tolist(), propensities.tolist()):
            handle.write(f"{user},{item},{timestamp},{value!r}\n")
    return str(path)


def read_propensities(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a `write_propensities` file -> `{"user_id", "item_id", "timestamp", "propensity"}` arrays."""
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    return {"user_id": table[:, 0].astype(np.int64), "item_id": table[:, 1].astype(np.int64),
            "timestamp": table[:, 2].astype(np.int64), "propensity": table[:, 3]}
