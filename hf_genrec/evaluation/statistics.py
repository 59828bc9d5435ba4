"""Bootstrap confidence intervals over test users, and over training seeds and test users together.

Brief, section 5: 95% intervals over test users; issue 13: intervals that include the variance of training.

Shapes: S seeds, U users; R bootstrap resamples. Values are (U,) per-user values of one trained model, or
(S, U) per-user values of S models trained with different seeds on the same U test users. Every resample draws
U users with replacement and, with S > 1, S seeds with replacement; the resampled statistic is the mean over the
drawn seeds of the mean over the drawn users (a crossed two-way bootstrap: users and training runs are both
samples of what they stand for). With S = 1 no seed is drawn, so (1, U) values give exactly the user bootstrap of
the (U,) values. Intervals are percentile intervals of the resampled statistic. The random generator is local
(`numpy.random.default_rng(seed)`), so no global seed is touched and equal seeds give equal intervals.
"""

import math

import numpy as np
import torch

__all__ = ["bootstrap_difference_ci", "bootstrap_mean_ci", "bootstrap_relative_change_ci"]

# Bound on the elements of one (chunk, S, U) gathered block: 4M = 32 MiB of int64 indices or float64 values.
_MAX_INDEX_ELEMENTS = 1 << 22


def _as_values(values: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """`values` as a float64 (S, U) array; (U,) values are one seed, (1, U)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    array = np.asarray(values, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise ValueError(f"{name} must be (U,) per-user values or (S, U) per-seed per-user values, got shape "
                         f"{array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    return array.reshape(1, -1) if array.ndim == 1 else array


def _check_args(num_resamples: int, confidence: float) -> None:
    if num_resamples < 1:
        raise ValueError(f"num_resamples must be >= 1, got {num_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")


def _resampled_means(arrays: tuple[np.ndarray, ...], num_resamples: int, seed: int) -> tuple[np.ndarray, ...]:
    """Means of each (S, U) array over the same R resamples of users (and of seeds when S > 1): (R,) arrays.

    Resample r draws user indices u_1..u_U and, when S > 1, seed indices s_1..s_S, and its mean is
    (1 / (S U)) sum_i sum_j array[s_i, u_j]; the arrays share the draws (paired). The draws come in row chunks
    to bound memory; drawing row chunks from one generator gives the same indices as drawing all at once. With
    S = 1 no seed index is drawn, so the user draws, and the means, are those of the (U,) values.
    """
    num_seeds, num_users = arrays[0].shape
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_INDEX_ELEMENTS // (num_users * num_seeds))
    means = tuple(np.empty(num_resamples) for _ in arrays)
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        indices = rng.integers(0, num_users, size=(stop - start, num_users))  # (chunk, U)
        if num_seeds == 1:
            for array, out in zip(arrays, means):
                out[start:stop] = array[0][indices].mean(axis=1)
            continue
        seed_indices = rng.integers(0, num_seeds, size=(stop - start, num_seeds))  # (chunk, S)
        for array, out in zip(arrays, means):
            out[start:stop] = array[seed_indices[:, :, None], indices[:, None, :]].mean(axis=(1, 2))  # (chunk, S, U)
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
    """Mean of per-user values with a percentile bootstrap interval over users (and seeds, for (S, U) values).

    Args:
        values: (U,) per-user metric values (e.g. `per_user_ranking_metrics(...)["ndcg@10"]`), or (S, U) per-user
            values of S seeds on the same users (the interval then resamples seeds and users, module docstring).
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


def _paired_values(method_values, reference_values) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as (S, U) float64, checked to be aligned (the same seeds and users in the same order)."""
    method = _as_values(method_values, "method_values")
    reference = _as_values(reference_values, "reference_values")
    if method.shape != reference.shape:
        raise ValueError(
            f"method_values and reference_values must be aligned per seed and user, got shapes {method.shape} "
            f"and {reference.shape}. Fix: pass the same users (and seeds) in the same order for both"
        )
    return method, reference


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

    with the means over every seed and user. Paired: both arrays hold the same users in the same order (and the
    same seeds: row i of both was trained with seed i), and each resample draws the same users (and seeds) for
    both, so the per-user correlation between the two methods narrows the interval as it should. With (S, U)
    values the interval also resamples the seeds, so it includes the variance of training (module docstring).

    Args:
        method_values: (U,) per-user values of the method, or (S, U): seed i's per-user values in row i.
        reference_values: the reference's (e.g. reward-weighted BC's) values, aligned, of the same shape.
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
    method, reference = _paired_values(method_values, reference_values)
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


def bootstrap_difference_ci(
    method_values: torch.Tensor | np.ndarray,
    reference_values: torch.Tensor | np.ndarray,
    *,
    num_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """mean(method) − mean(reference) with the paired bootstrap interval of `bootstrap_relative_change_ci`.

    The same resamples (the same `seed` draws the same users and seeds), so its interval lies on the same side of 0
    as the relative change's whenever the reference mean is positive on every resample. It is defined also when it
    is not: a sparse subset (a few users, rare hits) where some resample of the reference scores 0, which leaves the
    relative change's interval undefined (`benchmark.report` then scales this one by the reference's mean).

    Returns:
        (difference, low, high); all `nan` when there are no users.
    """
    _check_args(num_resamples, confidence)
    method, reference = _paired_values(method_values, reference_values)
    if method.size == 0:
        return math.nan, math.nan, math.nan
    method_means, reference_means = _resampled_means((method, reference), num_resamples, seed)
    return (float(method.mean() - reference.mean()),
            *_percentile_interval(method_means - reference_means, confidence))
