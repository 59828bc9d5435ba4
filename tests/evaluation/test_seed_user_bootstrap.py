"""The bootstrap over seeds and users together (issue 13, item 5), against cases checked by hand and by enumeration.

With (S, U) values, resample r draws S seeds and U users with replacement and its statistic is the mean of the
drawn cells; the interval is a percentile interval of those statistics. When a percentile falls inside an atom of
the exact resampling distribution (not near one of its jumps), the Monte-Carlo percentile equals that atom.
"""

import itertools

import numpy as np
import pytest

from hf_genrec.evaluation import bootstrap_mean_ci, bootstrap_relative_change_ci
from hf_genrec.evaluation.statistics import _resampled_means


def exact_distribution(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(atoms, probabilities) of the resampled mean of (S, U) values, by enumerating every draw of S seeds and U
    users (S^S * U^U equally likely draws)."""
    num_seeds, num_users = values.shape
    means = [values[np.ix_(seeds, users)].mean()
             for seeds in itertools.product(range(num_seeds), repeat=num_seeds)
             for users in itertools.product(range(num_users), repeat=num_users)]
    atoms, counts = np.unique(np.round(means, 12), return_counts=True)
    return atoms, counts / counts.sum()


def exact_quantile(atoms: np.ndarray, probabilities: np.ndarray, q: float, margin: float = 0.01) -> float:
    """The atom where the exact CDF crosses q; q must stay `margin` (4 Monte-Carlo standard errors at 5,000
    resamples) away from every jump of the CDF."""
    cdf = np.cumsum(probabilities)
    assert np.min(np.abs(cdf - q)) > margin, "q too close to a jump of the CDF: the Monte-Carlo quantile may move"
    return float(atoms[np.searchsorted(cdf, q)])


def test_one_seed_is_exactly_the_user_bootstrap():
    rng = np.random.default_rng(3)
    method, reference = rng.uniform(0.1, 1.0, 50), rng.uniform(0.1, 1.0, 50)
    assert bootstrap_relative_change_ci(method[None], reference[None], num_resamples=300, seed=7) == \
        bootstrap_relative_change_ci(method, reference, num_resamples=300, seed=7)
    assert bootstrap_mean_ci(method[None], num_resamples=300) == bootstrap_mean_ci(method, num_resamples=300)


def test_hand_checked_two_seeds_two_users():
    # x[s, u] = 1 + 4 s + 2 u, so a resample's mean is 1 + 4 a + 2 b, with a, b the mean of two draws from {0, 1}:
    # 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4 each. The mean's distribution: 1 (1/16), 2 (2/16), 3 (1/16 + 2/16),
    # 4 (4/16), 5 (3/16), 6 (2/16), 7 (1/16): 2.5% -> 1, 25% -> 3, 50% -> 4, 75% -> 5, 97.5% -> 7.
    method = np.array([[1.0, 3.0], [5.0, 7.0]])
    reference = np.full((2, 2), 2.0)  # constant: the % change is 100 (mean - 2) / 2 = 50 (mean - 2)
    change, low, high = bootstrap_relative_change_ci(method, reference, num_resamples=4000, seed=0)
    assert change == pytest.approx(100.0)  # mean 4 over every seed and user
    assert (low, high) == pytest.approx((-50.0, 250.0))  # atoms 1 and 7
    _, low, high = bootstrap_relative_change_ci(method, reference, num_resamples=4000, confidence=0.5, seed=0)
    assert (low, high) == pytest.approx((50.0, 150.0))  # atoms 3 and 5
    mean, low, high = bootstrap_mean_ci(method, num_resamples=4000, confidence=0.5, seed=1)
    assert (mean, low, high) == pytest.approx((4.0, 3.0, 5.0))


def test_resampling_distribution_matches_enumeration():
    values = np.array([[0.0, 1.0, 3.0], [2.0, 2.5, 6.0]])  # 2 seeds x 3 users: 4 * 27 = 108 equally likely draws
    atoms, probabilities = exact_distribution(values)
    (means,) = _resampled_means((values,), 20000, seed=5)
    observed = np.array([np.mean(np.isclose(means, atom)) for atom in atoms])
    assert observed.sum() == pytest.approx(1.0)  # every resampled mean is an atom of the enumeration
    np.testing.assert_allclose(observed, probabilities, atol=0.012)


def test_zero_user_variance_reduces_to_the_seed_bootstrap():
    # Every user of seed s scores a[s]: drawing users changes nothing, the interval is the seed bootstrap's.
    a = np.array([1.0, 2.0, 6.0])
    method = np.repeat(a[:, None], 5, axis=1)  # (3 seeds, 5 users)
    reference = np.ones((3, 5))
    atoms, probabilities = exact_distribution(a[:, None])  # the seed bootstrap alone: 27 draws of 3 seeds
    for confidence, (q_low, q_high) in ((0.95, (0.025, 0.975)), (0.6, (0.2, 0.8))):
        _, low, high = bootstrap_relative_change_ci(method, reference, num_resamples=5000, confidence=confidence)
        expected = [100.0 * (exact_quantile(atoms, probabilities, q) - 1.0) for q in (q_low, q_high)]
        assert [low, high] == pytest.approx(expected)


def test_seed_variance_widens_the_interval():
    # The same users and the same mean, but seeds that disagree: the interval over seeds and users is wider than
    # the one over users of the seed-averaged values (what the report computed before).
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.2, 0.4, (4, 200))
    method = reference * np.array([0.8, 1.0, 1.2, 1.4])[:, None]
    _, low, high = bootstrap_relative_change_ci(method, reference, num_resamples=1000)
    _, low_users, high_users = bootstrap_relative_change_ci(method.mean(0), reference.mean(0), num_resamples=1000)
    assert high - low > 5 * (high_users - low_users)
    assert low < 10.0 < high


def test_shapes_must_match():
    with pytest.raises(ValueError, match="aligned per seed and user"):
        bootstrap_relative_change_ci(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"\(S, U\)"):
        bootstrap_mean_ci(np.ones((2, 2, 2)))
