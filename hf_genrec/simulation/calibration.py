"""A `World` calibrated on a real ratings log (issue 14, item 1): its true reward r* is fitted to the observed
ratings at run time, so nothing derived from the real data is ever committed.

The fit, on a seeded random share `1 - holdout` of the ratings (the rest measures it):

- `base` is the global mean rating mu; the item effect q_i is the shrunk item mean,
  q_i = sum_u (y_ui - mu) / (n_i + `shrinkage`) (an item rated by few users stays near 0);
- a user bias b_u, shrunk the same way, and `dim` latent factors from alternating least squares on the centred
  residuals y_ui - mu - q_i - b_u (`iterations` sweeps, ridge `regularization`, all users and items solved at once
  with dense matrix products: ML-1M takes seconds on 2 cores);
- the world's features are the item factors plus a constant coordinate that carries the user bias
  (x_i = [v_i, 1] / s, tau_u = [w_u, b_u] * s / A), so A * tanh(<tau_u, x_i>) = A * tanh((<w_u, v_i> + b_u) / A);
  A (`affinity_scale`) is set so that tanh stays close to linear on 99% of the observed pairs;
- the observation noise std is the residual std of the training ratings around r*, less the variance that rounding
  to integer stars adds (1/12), and the log-popularity p_i is log(n_i / max n) from the item counts.

Tastes do not drift and there is no satiation or novelty (a ratings log without exposures identifies neither);
pass them as `reward_parameters` to study them on a calibrated world. `CalibrationFit` reports the train and
held-out RMSE of r* against the observed ratings beside the item-mean baseline mu + q_i.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.interactions import Interactions
from ..data.loaders import check_input_file, read_delimited, read_movielens
from ..data.prepared import parse_columns
from ..rewards.metrics import rmse
from .world import World

__all__ = ["CalibrationFit", "calibrate_world", "calibrated_world", "calibration_spec", "read_ratings"]

_ROUNDING_VARIANCE = 1.0 / 12.0  # variance added by rounding a continuous rating to the nearest integer
_LINEAR_TANH = 0.5  # A is chosen so that |affinity| / A <= this on 99% of pairs (tanh(0.5) = 0.46: near linear)


@dataclass
class CalibrationFit:
    """How well a calibrated world's r* reproduces the real ratings (RMSE on the 1-5 scale).

    Attributes:
        train_rmse, heldout_rmse: r* (no history: the first-event reward) against the observed ratings.
        item_mean_train_rmse, item_mean_heldout_rmse: the item-mean baseline mu + q_i against the same ratings.
        noise_std: the fitted observation noise std.
        num_users, num_items, num_train, num_heldout: the sizes of the fit.
        user_ids, item_ids: the raw id of each world user / item index (world index i is raw id `item_ids[i]`).
    """

    train_rmse: float
    heldout_rmse: float
    item_mean_train_rmse: float
    item_mean_heldout_rmse: float
    noise_std: float
    num_users: int
    num_items: int
    num_train: int
    num_heldout: int
    user_ids: np.ndarray
    item_ids: np.ndarray

    def to_dict(self) -> dict[str, float | int]:
        """The fit as JSON numbers (the id maps are left out)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name not in ("user_ids", "item_ids")}


def _ridge_solve(ratings: np.ndarray, mask: np.ndarray, factors: np.ndarray, regularization: float) -> np.ndarray:
    """Least-squares rows for every row of the dense `ratings` `(R, C)` (observed where `mask`) given the column
    `factors` `(C, d)`: all R ridge problems at once, their Gram matrices from one product mask @ (v v^T)."""
    dim = factors.shape[1]
    outer = (factors[:, :, None] * factors[:, None, :]).reshape(len(factors), dim * dim)
    gram = (mask @ outer).reshape(-1, dim, dim).astype(np.float64)
    gram += regularization * np.eye(dim)[None]
    rhs = (ratings @ factors).astype(np.float64)
    return np.linalg.solve(gram, rhs[:, :, None])[:, :, 0].astype(np.float32)


def _shrunk_means(values: np.ndarray, index: np.ndarray, size: int, shrinkage: float) -> np.ndarray:
    return np.bincount(index, values, minlength=size) / (np.bincount(index, minlength=size) + shrinkage)


def calibrate_world(
    interactions: Interactions,
    dim: int = 16,
    *,
    iterations: int = 8,
    regularization: float = 10.0,
    shrinkage: float = 10.0,
    holdout: float = 0.1,
    seed: int = 0,
    **reward_parameters: float,
) -> tuple[World, CalibrationFit]:
    """Fits a `World` to a real ratings log (see the module docstring for the model).

    Args:
        interactions (`Interactions`): the ratings (a loader's output, e.g. `read_movielens`); users and items are
            renumbered 0.. in sorted raw-id order (`CalibrationFit.user_ids` / `item_ids` map them back).
        dim (`int`, defaults to 16): latent factors fitted (the world's dimension is `dim + 1`).
        iterations (`int`, defaults to 8): ALS sweeps.
        regularization (`float`, defaults to 10.0): ridge penalty of the ALS solves.
        shrinkage (`float`, defaults to 10.0): pseudo-count shrinking item and user means toward the global mean.
        holdout (`float`, defaults to 0.1): share of the ratings held out of the fit to measure it, in [0, 1).
        seed (`int`, defaults to 0): seed of the hold-out draw and of the factor initialisation.
        **reward_parameters: `World` reward fields to set (`satiation`, `novelty`, `drift`, ...); 0 otherwise.

    Returns:
        `(world, fit)`: the calibrated `World` and its `CalibrationFit`.
    """
    if dim < 1 or iterations < 1:
        raise ValueError(f"dim and iterations must be >= 1, got dim={dim}, iterations={iterations}; pass positive values.")
    if not 0.0 <= holdout < 1.0:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}; pass the share of ratings to hold out, e.g. 0.1.")
    user_ids, users = np.unique(interactions.user_ids, return_inverse=True)
    item_ids, items = np.unique(interactions.item_ids, return_inverse=True)
    ratings = interactions.ratings.astype(np.float64)
    num_users, num_items = len(user_ids), len(item_ids)
    rng = np.random.default_rng(seed)
    train = rng.random(len(ratings)) >= holdout
    mu = float(ratings[train].mean())
    quality = _shrunk_means(ratings[train] - mu, items[train], num_items, shrinkage)
    user_bias = _shrunk_means(ratings[train] - mu - quality[items[train]], users[train], num_users, shrinkage)

    # Dense residuals: 6,040 x 3,706 floats for ML-1M (90 MB), and every ALS step is two matrix products.
    residual = np.zeros((num_users, num_items), dtype=np.float32)
    mask = np.zeros((num_users, num_items), dtype=np.float32)
    residual[users[train], items[train]] = ratings[train] - mu - quality[items[train]] - user_bias[users[train]]
    mask[users[train], items[train]] = 1.0
    item_factors = rng.normal(0.0, 0.1, (num_items, dim)).astype(np.float32)
    for _ in range(iterations):
        user_factors = _ridge_solve(residual, mask, item_factors, regularization)
        item_factors = _ridge_solve(residual.T, mask.T, user_factors, regularization)
    del residual, mask

    affinity = np.einsum("nd,nd->n", user_factors[users], item_factors[items]) + user_bias[users]
    affinity_scale = float(max(np.quantile(np.abs(affinity[train]), 0.99) / _LINEAR_TANH, 1e-6))
    scale = float(max(np.linalg.norm(item_factors, axis=1).max(initial=0.0), 1.0))  # keeps |x_i| <= sqrt(2)
    features = np.concatenate([item_factors, np.ones((num_items, 1), np.float32)], axis=1) / scale
    taste = np.concatenate([user_factors, user_bias[:, None]], axis=1) * scale / affinity_scale
    counts = np.bincount(items[train], minlength=num_items)
    parameters = {"drift": 0.0, "satiation": 0.0, "novelty": 0.0, **reward_parameters}
    world = World(
        item_features=features.astype(np.float64), quality=quality,
        log_popularity=np.log(np.maximum(counts, 1) / max(counts.max(initial=1), 1)),
        genre=np.zeros(num_items, dtype=np.int64), user_taste=taste.astype(np.float64),
        drift_directions=np.zeros((num_users, 1, dim + 1)), drift_phases=np.zeros((num_users, 1)),
        drift_periods=np.ones(1), base=mu, affinity_scale=affinity_scale, **parameters,
    )
    predicted = mu + quality[items] + affinity_scale * np.tanh(
        np.einsum("nd,nd->n", taste[users], features[items]).astype(np.float64))
    baseline = mu + quality[items]
    residual_variance = float(np.var(ratings[train] - predicted[train]))
    fit = CalibrationFit(
        train_rmse=rmse(predicted[train], ratings[train]), heldout_rmse=rmse(predicted[~train], ratings[~train]),
        item_mean_train_rmse=rmse(baseline[train], ratings[train]),
        item_mean_heldout_rmse=rmse(baseline[~train], ratings[~train]),
        noise_std=float(np.sqrt(max(residual_variance - _ROUNDING_VARIANCE, 0.0))),
        num_users=num_users, num_items=num_items, num_train=int(train.sum()), num_heldout=int((~train).sum()),
        user_ids=user_ids, item_ids=item_ids,
    )
    return world, fit


def read_ratings(path: str | os.PathLike, format: str = "movielens", *, sep: str | None = None,
                 columns: str | tuple | dict | None = None, header: bool = False) -> Interactions:
    """The ratings log to calibrate on, read as `hf-genrec prepare --input PATH --format ...` reads it."""
    path = check_input_file(path, "--input", "ratings file")
    if format == "movielens":
        if sep is not None or columns is not None or header:
            raise ValueError("--sep, --columns and --header describe a --format csv file; drop them for "
                             "--format movielens (always UserID::MovieID::Rating::Timestamp) or pass --format csv.")
        return read_movielens(path)
    if format == "csv":
        columns = parse_columns(columns) if isinstance(columns, str) else columns
        return read_delimited(path, sep=sep or ",", columns=columns, header=header)
    raise ValueError(f"--format must be 'movielens' or 'csv', got {format!r}; pass the ratings file's format.")


@functools.lru_cache(maxsize=2)
def _calibrated(spec: str) -> tuple[World, CalibrationFit]:
    options = json.loads(spec)
    interactions = read_ratings(options.pop("input"), options.pop("format"), sep=options.pop("sep", None),
                                columns=options.pop("columns", None), header=options.pop("header", False))
    options.pop("file", None)  # only there to key the cache and the stages on the file's size and time
    return calibrate_world(interactions, **options)


def calibrated_world(spec: dict[str, Any]) -> tuple[World, CalibrationFit]:
    """`calibrate_world` on the file a JSON spec names (`input`, `format`, optionally `sep`, `columns`, `header`,
    and `calibrate_world` keywords), cached in the process: the study's stages rebuild the same world many times."""
    return _calibrated(json.dumps(spec, sort_keys=True))


def calibration_spec(path: str | os.PathLike, format: str = "movielens", **options: Any) -> dict[str, Any]:
    """The JSON spec of `calibrated_world` for a file: its absolute path, format, size and modification time
    (so a changed file is a new world) and the `options` given (`sep`, `columns`, `header`, `dim`, `seed`, ...)."""
    path = Path(check_input_file(path, "--input", "ratings file")).resolve()
    status = path.stat()
    return {"input": str(path), "format": format, "file": {"size": status.st_size, "mtime_ns": status.st_mtime_ns},
            **{name: value for name, value in options.items() if value is not None}}
