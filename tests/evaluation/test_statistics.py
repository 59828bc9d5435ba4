"""Bootstrap intervals: degenerate cases, a slow reference loop and the paired relative change."""

import math

import numpy as np
import pytest
import torch

from hf_genrec.evaluation import bootstrap_mean_ci, bootstrap_relative_change_ci
from hf_genrec.evaluation import statistics as statistics_module


def _reference_mean_ci(values, num_resamples, confidence, seed):
    """One resample at a time, with the same generator stream as the vectorised code."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(num_resamples):
        indices = rng.integers(0, len(values), size=len(values))
        means.append(sum(values[i] for i in indices) / len(values))
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(np.mean(values)), float(low), float(high)


def test_constant_values_collapse_the_interval():
    mean, low, high = bootstrap_mean_ci(torch.full((50,), 0.3, dtype=torch.float64), num_resamples=200)
    assert mean == pytest.approx(0.3, abs=1e-12)
    assert low == pytest.approx(0.3, abs=1e-12)
    assert high == pytest.approx(0.3, abs=1e-12)


def test_binary_values_match_a_reference_loop_and_the_expected_width():
    values = np.array([0.0, 1.0] * 200)  # 400 users, mean 0.5
    mean, low, high = bootstrap_mean_ci(values, num_resamples=300, seed=7)
    ref_mean, ref_low, ref_high = _reference_mean_ci(values, 300, 0.95, seed=7)
    assert (mean, low, high) == pytest.approx((ref_mean, ref_low, ref_high), abs=1e-12)
    assert low < 0.5 < high
    # Normal approximation: 2 * 1.96 * sqrt(0.25 / 400) = 0.098.
    assert 0.07 < high - low < 0.13


def test_chunked_draws_equal_one_shot_draws(monkeypatch):
    values = np.random.default_rng(1).random(37)
    expected = bootstrap_mean_ci(values, num_resamples=50, seed=3)
    monkeypatch.setattr(statistics_module, "_MAX_INDEX_ELEMENTS", 37 * 4)  # chunks of 4 resamples
    assert bootstrap_mean_ci(values, num_resamples=50, seed=3) == expected
    assert bootstrap_mean_ci(values, num_resamples=50, seed=4) != expected  # the seed matters


def test_relative_change_of_identical_arrays_is_zero():
    values = torch.tensor([0.0, 1.0, 0.5, 0.25] * 10)
    assert bootstrap_relative_change_ci(values, values.clone(), num_resamples=200) == (0.0, 0.0, 0.0)


def test_relative_change_is_paired():
    reference = np.random.default_rng(0).random(100) + 0.1
    # Doubling every user is +100% on every resample only if both arrays are resampled together.
    change, low, high = bootstrap_relative_change_ci(2 * reference, reference, num_resamples=200)
    assert (change, low, high) == pytest.approx((100.0, 100.0, 100.0))
    method = reference + np.random.default_rng(1).normal(0, 0.05, 100)
    change, low, high = bootstrap_relative_change_ci(method, reference, num_resamples=200)
    point = 100 * (method.mean() - reference.mean()) / reference.mean()
    assert change == pytest.approx(point)
    assert low < change < high


def test_relative_change_with_zero_reference_is_nan():
    change, low, high = bootstrap_relative_change_ci(np.ones(5), np.zeros(5), num_resamples=10)
    assert math.isnan(change) and math.isnan(low) and math.isnan(high)
    # Reference mean > 0 overall, but some resamples draw only zeros: the interval is undefined.
    change, low, high = bootstrap_relative_change_ci(np.ones(3), np.array([0.0, 0.0, 1.0]), num_resamples=100)
    assert change == pytest.approx(200.0)
    assert math.isnan(low) and math.isnan(high)


def test_bad_inputs():
    with pytest.raises(ValueError):
        bootstrap_relative_change_ci(np.ones(3), np.ones(4))
    with pytest.raises(ValueError):
        bootstrap_mean_ci(np.ones(3), confidence=1.5)
    assert all(math.isnan(x) for x in bootstrap_mean_ci(np.zeros(0)))


def test_relative_change_interval_by_hand():
    # Two users, the method scores [1, 3], the reference [1, 1]. A resample draws (u0, u0), (u0, u1), (u1, u0) or
    # (u1, u1) with probability 1/4 each, giving method means 1, 2, 2, 3 against 1: changes 0%, 100%, 100%, 200%.
    # The point change is +100%; with many resamples the 2.5% and 97.5% percentiles are exactly 0% and 200%.
    change, low, high = bootstrap_relative_change_ci([1.0, 3.0], [1.0, 1.0], num_resamples=4000, seed=0)
    assert change == pytest.approx(100.0)
    assert (low, high) == pytest.approx((0.0, 200.0))
    # A method equal to the reference up to a constant factor is that factor on every resample.
    assert bootstrap_relative_change_ci([0.9, 0.45, 0.18], [1.0, 0.5, 0.2], num_resamples=100)[1:] == pytest.approx(
        (-10.0, -10.0)
    )
