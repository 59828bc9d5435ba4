"""The difference-of-means interval, and the report's fallback to it where the relative change's is undefined."""

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_genrec.benchmark.report import BenchmarkRow, _pct_cell, per_user_values, summarize
from hf_genrec.evaluation import bootstrap_difference_ci, bootstrap_relative_change_ci

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmark"))
from test_report import evaluation  # noqa: E402  (the benchmark tests' 4-user evaluations)


def _slow_difference_ci(method, reference, num_resamples, seed):
    """One resample at a time, with the same generator stream as the vectorised code (one seed: users only)."""
    rng = np.random.default_rng(seed)
    differences = []
    for _ in range(num_resamples):
        users = rng.integers(0, len(method), size=len(method))
        differences.append(method[users].mean() - reference[users].mean())
    return np.quantile(differences, [0.025, 0.975])


def test_difference_interval_matches_a_slow_loop():
    rng = np.random.default_rng(3)
    reference = rng.random(40)
    method = reference + rng.normal(0.1, 0.2, 40)
    difference, low, high = bootstrap_difference_ci(method, reference, num_resamples=300, seed=5)
    assert difference == pytest.approx(method.mean() - reference.mean())
    assert [low, high] == pytest.approx(list(_slow_difference_ci(method, reference, 300, 5)))


def test_difference_interval_is_defined_where_the_relative_one_is_not():
    method, reference = np.ones(3), np.array([0.0, 0.0, 1.0])
    assert math.isnan(bootstrap_relative_change_ci(method, reference, num_resamples=100)[1])
    difference, low, high = bootstrap_difference_ci(method, reference, num_resamples=100)
    assert difference == pytest.approx(2 / 3) and 0.0 <= low <= difference <= high <= 1.0


def test_report_falls_back_to_the_difference_on_a_sparse_subset():
    # HR@10 of the reference: one hit among four users, so some resamples of the users hold no hit.
    reference = BenchmarkRow("rwbc", "rwbc", "method", [evaluation([1, 100, 100, 100], [4.0] * 4)], seeds=[42])
    method = BenchmarkRow("asft", "asft", "method", [evaluation([1, 2, 100, 100], [4.5] * 4)], seeds=[42])
    entry = summarize([reference, method], "rwbc", resamples=200)["rows"]["asft"]["subsets"]["all"]["metrics"]
    hits = entry["hr@10"]
    assert hits["ci95_kind"] == "difference / reference mean"
    method_values = per_user_values(method.evaluations[0], "all")[0]["hr@10"]
    reference_values = per_user_values(reference.evaluations[0], "all")[0]["hr@10"]
    _, low, high = bootstrap_difference_ci(method_values, reference_values, num_resamples=200)
    scale = 100 / reference_values.mean()
    assert hits["ci95"] == pytest.approx([scale * low, scale * high])
    assert hits["pct_vs_rwbc"] == pytest.approx(100.0)  # 2 hits against 1
    assert _pct_cell(hits).endswith("†")
    # The judge never scores 0 on a resample: the relative change's own interval, no mark.
    assert entry["judge"]["ci95_kind"] == "ratio" and not _pct_cell(entry["judge"]).endswith("†")
