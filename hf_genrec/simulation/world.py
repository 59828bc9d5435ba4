"""`World`: a fully synthetic recommendation world whose true reward r*(history, item) is known for every item.

It extends the embedded generator (`hf_genrec.data.synthetic`) from genre blocks to latent features, and
keeps its rating scale (base, affinity scale, quality spread), so its logs look like the embedded dataset:

- item i has a unit-norm latent feature x_i in R^D (its genre's centroid plus item-level noise, genres are
  contiguous id blocks as in the embedded generator), a quality q_i ~ N(0, 0.5^2) and a Zipf-like
  log-popularity p_i whose rank order follows quality plus noise (popular items tend to be better);
- user u has a taste tau_u ~ N(0, I_D) that drifts slowly and smoothly with the number t of events the user has
  consumed: tau_u(t) = tau_u + delta * sum_k sin(2 pi t / P_k + phi_uk) a_uk, with a_uk ~ N(0, I_D / K);
- the history h = (h_0, ..., h_{t-1}) (oldest first) leaves a decayed memory m(h) = sum_s gamma^(t-1-s) x_{h_s}.

The true reward, on the real line under the 1-5 rating scale (observed ratings round and clip it), is

    r*(u, h, i) = base + A * tanh(<tau_u(t), x_i>) + q_i - sigma * max(0, <x_i, m(h)>) + nu * 1[i not in h]
                  + kappa * 1[i = next(h_{t-1})]

where the satiation term (sigma) makes repeated similar items lose value, with memory gamma, the novelty
term (nu) rewards items the user has never consumed, and the continuation term (kappa) rewards the item that
follows the last one consumed in its genre block, next(j) = j + 1 (a series' next episode: item-to-item
structure, which makes the next item depend on the last one and not only on the user's slowly drifting taste).
Everything is seeded and vectorised over users and over the whole catalogue; item and user indices are 0-based
here (logs add 1, as the embedded generator does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The same scale as the embedded dataset's ratings, so a simulated log reads like it.
from ..data.synthetic import _NUM_GENRES, _QUALITY_STD, _RATING_AFFINITY, _RATING_BASE, _ZIPF_EXPONENT

__all__ = ["World"]

_ITEM_SPREAD = 0.5  # item feature = normalise(genre centroid + spread * noise)
_POPULARITY_NOISE = 1.0  # rank popularity by quality + noise of this std (in units of the quality std)
_DRIFT_PERIODS = (50.0, 200.0)  # P_k, in events


@dataclass
class World:
    """A synthetic world: items, users and the true reward (see the module docstring for the formulas).

    Args:
        item_features (`np.ndarray` of shape `(num_items, dim)`): unit-norm latent features x_i.
        quality (`np.ndarray` of shape `(num_items,)`): item quality q_i.
        log_popularity (`np.ndarray` of shape `(num_items,)`): Zipf-like log-popularity p_i (0 for the top item).
        genre (`np.ndarray` of shape `(num_items,)`): the genre block of each item.
        user_taste (`np.ndarray` of shape `(num_users, dim)`): initial tastes tau_u.
        drift_directions (`np.ndarray` of shape `(num_users, K, dim)`): drift directions a_uk.
        drift_phases (`np.ndarray` of shape `(num_users, K)`): drift phases phi_uk.
        drift_periods (`np.ndarray` of shape `(K,)`): drift periods P_k, in events.
        drift (`float`): drift amplitude delta (0: tastes are fixed).
        base (`float`): the reward of a neutral item, `base`.
        affinity_scale (`float`): A, the weight of taste.
        satiation (`float`): sigma, the value lost per unit of similarity to the decayed memory.
        satiation_decay (`float`): gamma in [0, 1), the memory's decay per event.
        novelty (`float`): nu, the bonus of an item the user has never consumed.
        continuation (`float`): kappa, the bonus of the item that follows the last consumed one in its genre block.
    """

    item_features: np.ndarray
    quality: np.ndarray
    log_popularity: np.ndarray
    genre: np.ndarray
    user_taste: np.ndarray
    drift_directions: np.ndarray
    drift_phases: np.ndarray
    drift_periods: np.ndarray
    drift: float = 0.5
    base: float = _RATING_BASE
    affinity_scale: float = _RATING_AFFINITY
    satiation: float = 0.3
    satiation_decay: float = 0.8
    novelty: float = 0.2
    continuation: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.satiation_decay < 1.0:
            raise ValueError(f"satiation_decay must be in [0, 1), got {self.satiation_decay}.")

    @classmethod
    def synthetic(
        cls,
        num_users: int = 1000,
        num_items: int = 300,
        dim: int = 16,
        seed: int = 0,
        **reward_parameters: float,
    ) -> World:
        """Draws a world with `num_users` users and `num_items` items in `dim` latent dimensions.

        Args:
            num_users (`int`, defaults to 1000): users, indices 0..num_users-1.
            num_items (`int`, defaults to 300): catalogue size, indices 0..num_items-1.
            dim (`int`, defaults to 16): latent dimension D.
            seed (`int`, defaults to 0): seed of the `numpy.random.Generator`; the same seed gives the same world.
            **reward_parameters: `drift`, `base`, `affinity_scale`, `satiation`, `satiation_decay`, `novelty`,
                `continuation`.

        Example:

        ```python
        >>> world = World.synthetic(num_users=100, num_items=50, seed=0)
        >>> world.true_reward(np.arange(3), np.full((3, 0), -1)).shape
        (3, 50)
        ```
        """
        for name, value in (("num_users", num_users), ("num_items", num_items), ("dim", dim)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}.")
        rng = np.random.default_rng(seed)
        num_genres = min(_NUM_GENRES, num_items)
        genre = (np.arange(num_items) * num_genres) // num_items
        centroids = rng.normal(0.0, 1.0, (num_genres, dim))
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        features = centroids[genre] + _ITEM_SPREAD * rng.normal(0.0, 1.0 / np.sqrt(dim), (num_items, dim))
        features /= np.linalg.norm(features, axis=1, keepdims=True)
        quality = rng.normal(0.0, _QUALITY_STD, num_items)
        rank = np.argsort(np.argsort(-(quality + _POPULARITY_NOISE * rng.normal(0.0, _QUALITY_STD, num_items))))
        periods = np.asarray(_DRIFT_PERIODS)
        return cls(
            item_features=features,
            quality=quality,
            log_popularity=-_ZIPF_EXPONENT * np.log(rank + 1.0),
            genre=genre,
            user_taste=rng.normal(0.0, 1.0, (num_users, dim)),
            drift_directions=rng.normal(0.0, 1.0 / np.sqrt(len(periods)), (num_users, len(periods), dim)),
            drift_phases=rng.uniform(0.0, 2 * np.pi, (num_users, len(periods))),
            drift_periods=periods,
            **reward_parameters,
        )

    @property
    def num_items(self) -> int:
        return len(self.quality)

    @property
    def num_users(self) -> int:
        return len(self.user_taste)

    @property
    def successor(self) -> np.ndarray:
        """next(j) for every item `(num_items,)`: j + 1 when it is in the same genre block, else -1."""
        following = np.arange(1, self.num_items + 1)
        following[:-1][self.genre[1:] != self.genre[:-1]] = -1
        following[-1] = -1
        return following

    def taste(self, users: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """tau_u(t) for users `(B,)` after `steps` `(B,)` events -> `(B, dim)`."""
        users = np.asarray(users, dtype=np.int64)
        angle = 2 * np.pi * np.asarray(steps, dtype=np.float64)[:, None] / self.drift_periods[None, :]
        wave = np.sin(angle + self.drift_phases[users])  # (B, K)
        return self.user_taste[users] + self.drift * np.einsum("bk,bkd->bd", wave, self.drift_directions[users])

    def history_state(self, history: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The state a history leaves: `(steps (B,), memory m(h) (B, dim), seen (B, num_items) bool, last (B,))`,
        `last` the most recent item consumed (-1 for an empty history).

        `history` `(B, T)` holds item indices oldest first; entries < 0 are padding and are skipped.
        """
        history = np.asarray(history, dtype=np.int64)
        if history.ndim != 2:
            raise ValueError(f"history must be a (batch, length) array of item indices, got shape {history.shape}.")
        valid = history >= 0
        # age of a valid entry = number of valid entries after it (0 for the most recent).
        age = np.cumsum(valid[:, ::-1], axis=1)[:, ::-1] - 1
        weights = np.where(valid, self.satiation_decay ** np.maximum(age, 0), 0.0)  # (B, T)
        memory = np.einsum("bt,btd->bd", weights, self.item_features[np.maximum(history, 0)])
        seen = np.zeros((len(history), self.num_items), dtype=bool)
        rows, columns = np.nonzero(valid)
        seen[rows, history[rows, columns]] = True
        last = np.full(len(history), -1, dtype=np.int64)
        if history.shape[1]:  # the most recent valid entry is the one of age 0
            recent = valid & (age == 0)
            last = np.where(recent.any(axis=1), history[np.arange(len(history)), np.argmax(recent, axis=1)], -1)
        return valid.sum(axis=1), memory, seen, last

    def reward_from_state(
        self, users: np.ndarray, steps: np.ndarray, memory: np.ndarray, seen: np.ndarray, last: np.ndarray
    ) -> np.ndarray:
        """r* over the whole catalogue from a state (see `history_state`) -> `(B, num_items)`."""
        affinity = np.tanh(self.taste(users, steps) @ self.item_features.T)  # (B, I)
        satiation = np.maximum(memory @ self.item_features.T, 0.0)  # (B, I)
        rewards = (
            self.base
            + self.affinity_scale * affinity
            + self.quality[None, :]
            - self.satiation * satiation
            + self.novelty * (~seen)
        )
        if self.continuation:
            following = np.where(last >= 0, self.successor[np.maximum(last, 0)], -1)
            rows = np.flatnonzero(following >= 0)
            rewards[rows, following[rows]] += self.continuation
        return rewards

    def true_reward(
        self, users: np.ndarray, history: np.ndarray, items: np.ndarray | None = None
    ) -> np.ndarray:
        """r*(u, h, i) for every item of the catalogue (or of `items`), given each user's history.

        Args:
            users (`np.ndarray` of shape `(B,)`): user indices.
            history (`np.ndarray` of shape `(B, T)`): item indices consumed, oldest first; entries < 0 are padding.
            items (`np.ndarray` of shape `(n,)`, *optional*): item indices to score; all items when `None`.

        Returns:
            `np.ndarray` of shape `(B, num_items)` (or `(B, n)`): the true rewards, float64.
        """
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        if len(users) and (users.min() < 0 or users.max() >= self.num_users):
            raise ValueError(
                f"users must be indices in [0, {self.num_users}), got values in [{users.min()}, {users.max()}]."
            )
        steps, memory, seen, last = self.history_state(history)
        if len(steps) != len(users):
            raise ValueError(f"history must have one row per user ({len(users)}), got {len(steps)} rows.")
        rewards = self.reward_from_state(users, steps, memory, seen, last)
        return rewards if items is None else rewards[:, np.asarray(items, dtype=np.int64)]
