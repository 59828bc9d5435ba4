"""Bootstrap confidence intervals over test users (brief, section 5: 95% intervals over test users).

Shapes: U users; R bootstrap resamples. Every resample draws U users with replacement; intervals are
percentile intervals of the resampled statistic. The random generator is local (`numpy.random.default_rng
(seed)`), so no global seed is touched and equal seeds give equal intervals.
"""

import math

import numpy as np
import torch

__all__ = ["bootstrap_mean_ci", "bootstrap_relative_change_ci"]

# Bound on the elements of one (chunk, U) index matrix: 4M int64 = 32 MiB.
_MAX_INDEX_ELEMENTS = 1 << 22


def _as_values(values: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be (U,), got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array


def _check_args(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _resampled_means(arrays: tuple[np.ndarray, ...], num_resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """Means of each array over the same R resamples of users: a tuple of (R,) arrays.

    The (R, U) index matrix is drawn in row chunks to bound memory; drawing row chunks from one
    generator gives the same indices as drawing the whole matrix at once.
    """
    num_users = arrays[0].shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_INDEX_ELEMENTS // num_users)
    means = tuple(np.empty(num_resamples) for _ in arrays)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        indices = rng.integers(0, num_users, size=(stop - start, num_users))  # (chunk, U)
        for array, out in zip(arrays, means):
            out[start:stop] = array[indices].mean(axis=1)
    return means


def _percentile_interval(statistics: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(statistics, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


def bootstrap_mean_ci(
    values: torch.Tensor | np.ndarray,
    *,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of per-user values with a percentile bootstrap interval over users.

    Args:
        values: (U,) per-user metric values (e.g. `per_user_ranking_metrics(...)["ndcg@10"]`).
        num_resamples: R.
        confidence: coverage of the interval (0.95: the 2.5% and 97.5% percentiles).
        seed: seed of the local generator.

    Returns:
        (mean, low, high); all `nan` when there are no users.
    """
    _check_args(num_resamples, confidence)
    array = _as_values(values, "values")
    if array.size == 0:
        return math.nan, math.nan, math.nan
    (means,) = _resampled_means((array,), num_resamples, seed)
    return (float(array.mean()), *_percentile_interval(means, confidence))


def bootstrap_relative_change_ci(
    method_values: torch.Tensor | np.ndarray,
    reference_values: torch.Tensor | np.ndarray,
    *,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """% change of a method's mean metric over a reference's, with a paired bootstrap interval.

        change = 100 * (mean(method) - mean(reference)) / mean(reference)

    Paired: both arrays hold the same users in the same order, and each resample draws the same users
    for both, so the per-user correlation between the two methods narrows the interval as it should.

    Args:
        method_values: (U,) per-user values of the method.
        reference_values: (U,) per-user values of the reference (e.g. reward-weighted BC), aligned.
        num_resamples: R.
        confidence: coverage of the interval.
        seed: seed of the local generator.

    Returns:
        (change, low, high) in percent. `change` is `nan` when the reference mean is 0 (a relative
        change of a zero baseline is undefined), and (low, high) are `nan` when the reference mean is 0
        on any resample: dropping those resamples would bias the interval towards resamples where the
        reference happened to score. All `nan` when there are no users.
    """
    _check_args(num_resamples, confidence)
    method = _as_values(method_values, "method_values")
    reference = _as_values(reference_values, "reference_values")
    if method.shape != reference.shape:
        raise ValueError(
            f"method_values and reference_values must be aligned per user, got shapes {method.shape} "
            f"and {reference.shape}"
        )
    if method.size == 0:
        return math.nan, math.nan, math.nan
    reference_mean = reference.mean()
    change = (
        math.nan if reference_mean == 0 else float(100.0 * (method.mean() - reference_mean) / reference_mean)
    )
    method_means, reference_means = _resampled_means((method, reference), num_resamples, seed)
    if (reference_means == 0).any():
        return change, math.nan, math.nan
    changes = 100.0 * (method_means - reference_means) / reference_means  # (R,)
    return (change, *_percentile_interval(changes, confidence))
