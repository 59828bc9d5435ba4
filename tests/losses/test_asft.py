import math

import pytest
import torch

from hf_genrec.losses.asft import advantage_weights, user_mean_baseline
from hf_genrec.losses.weighted_nll import weighted_nll


def test_advantage_weights_match_hand_computation_and_clip():
    rewards = torch.tensor([5.0, 1.0, 3.0, 4.0])
    baselines = torch.tensor([3.0, 3.0, 3.0, 1.0])
    weights, clipped = advantage_weights(rewards, baselines, temperature=0.5, max_weight=20.0)
    # A = (2, -2, 0, 3); exp(A / 0.5) = (e^4, e^-4, 1, e^6) -> e^4 = 54.6 and e^6 = 403 are clipped to 20.
    expected = torch.tensor([20.0, math.exp(-4.0), 1.0, 20.0])
    torch.testing.assert_close(weights, expected)
    assert clipped.tolist() == [True, False, False, True]


def test_zero_baseline_is_exponential_reward_weighting():
    rewards = torch.tensor([1.0, 2.0])
    weights, clipped = advantage_weights(rewards, None, temperature=2.0, max_weight=None)
    torch.testing.assert_close(weights, torch.tensor([math.exp(0.5), math.exp(1.0)]))
    assert not clipped.any()


def test_large_temperature_gives_unit_weights():
    weights, _ = advantage_weights(torch.tensor([5.0, 1.0]), torch.tensor([1.0, 5.0]), 1e9, 20.0)
    torch.testing.assert_close(weights, torch.ones(2))


def test_temperature_must_be_positive():
    with pytest.raises(ValueError, match="temperature"):
        advantage_weights(torch.ones(1), None, temperature=0.0, max_weight=20.0)


def test_user_mean_baseline_is_running_mean_of_the_history():
    ratings = torch.tensor([[4.0, 2.0, 3.0, 0.0], [5.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    baseline = user_mean_baseline(ratings, mask, fallback=-1.0)
    # Position t sees events 0..t: row 0 -> 4, (4+2)/2, (4+2+3)/3; padding keeps the last mean (never used).
    torch.testing.assert_close(baseline[0, :3], torch.tensor([4.0, 3.0, 3.0]))
    assert baseline[1, 0] == 5.0
    # An empty history (all padding) gets the fallback.
    empty = user_mean_baseline(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long), fallback=-1.0)
    assert empty.tolist() == [[-1.0, -1.0]]


def test_weighted_nll():
    log_probs = torch.log(torch.tensor([0.5, 0.25]))
    losses = weighted_nll(log_probs, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(losses, torch.tensor([2 * math.log(2.0), math.log(4.0)]))
    torch.testing.assert_close(weighted_nll(log_probs), -log_probs)
