"""Test subsets by accumulated test-window reward (`future` rows) and `long_history` (leave-one-out rows)."""

import numpy as np
import pytest
import torch

from hf_genrec.data import SequenceCollator, build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.data.columns import WINDOW_POSITION, WINDOW_REWARD
from hf_genrec.evaluation import (
    SUBSET_HIGH_REWARD_TRAJECTORY,
    SUBSET_LONG_HISTORY,
    SUBSET_TRAJECTORY_REWARD_QUARTILES,
    MostPopularRecommender,
    RankingPredictions,
    dataset_subsets,
    predict_ranks,
    subset_mask,
)


def _windowed(user_rewards, rows_per_user):
    """Predictions whose user u has `rows_per_user[u]` rows, all with window reward `user_rewards[u]`."""
    rewards = torch.tensor([r for r, n in zip(user_rewards, rows_per_user) for _ in range(n)])
    positions = torch.tensor([j for n in rows_per_user for j in range(n)])
    n = rewards.numel()
    return RankingPredictions(
        ranks=torch.arange(1, n + 1),
        target_ratings=torch.full((n,), 3.0),
        history_rewards=torch.zeros(n),
        window_rewards=rewards,
        window_positions=positions,
    )


def test_high_reward_trajectory_is_above_the_median_of_users_ties_excluded():
    # 4 users, 3 rows each, window rewards 2, 5, 5, 9: median over users 5; the tied users are not above it.
    predictions = _windowed([2.0, 5.0, 5.0, 9.0], [3, 3, 3, 3])
    mask = predictions.subset_mask(SUBSET_HIGH_REWARD_TRAJECTORY)
    assert mask.tolist() == [False] * 9 + [True] * 3


def test_each_user_counts_once_whatever_its_number_of_rows():
    # Users 10, 1, 2, 3 with 3, 1, 1, 1 rows: the median over users is 2.5 (users 10 and 3 are above it);
    # a median over rows (10, 10, 10, 1, 2, 3) would be 6.5 and keep user 10 only.
    predictions = _windowed([10.0, 1.0, 2.0, 3.0], [3, 1, 1, 1])
    assert predictions.subset_mask(SUBSET_HIGH_REWARD_TRAJECTORY).tolist() == [
        True,
        True,
        True,
        False,
        False,
        True,
    ]


def test_quartiles_over_users_partition_the_cases():
    # 8 users, 2 rows each, rewards 1..8: quartiles 2.75, 4.5, 6.25 (linear) -> {1,2}, {3,4}, {5,6}, {7,8}.
    predictions = _windowed([float(r) for r in range(1, 9)], [2] * 8)
    masks = [predictions.subset_mask(name) for name in SUBSET_TRAJECTORY_REWARD_QUARTILES]
    rewards = predictions.window_rewards
    assert [sorted(set(rewards[m].tolist())) for m in masks] == [
        [1.0, 2.0],
        [3.0, 4.0],
        [5.0, 6.0],
        [7.0, 8.0],
    ]
    assert torch.equal(
        torch.stack(masks).sum(0), torch.ones(16, dtype=torch.long)
    )  # each case in one quartile
    assert torch.equal(masks[2] | masks[3], predictions.subset_mask(SUBSET_HIGH_REWARD_TRAJECTORY))


def test_predictions_round_trip_through_tensors_and_refuse_mixed_rows():
    predictions = _windowed([1.0, 4.0], [2, 2])
    rebuilt = RankingPredictions(*predictions.tensors())
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.tensors(), predictions.tensors()))
    assert predictions.has_windows and SUBSET_HIGH_REWARD_TRAJECTORY in predictions.default_subsets()
    plain = RankingPredictions(torch.tensor([1]), torch.tensor([5.0]), torch.tensor([9.0]))
    assert not plain.has_windows and SUBSET_LONG_HISTORY in plain.default_subsets()
    with pytest.raises(ValueError, match="mix rows of the `future` split"):
        RankingPredictions.concat([predictions, plain])


@pytest.fixture(scope="module")
def sequences():
    sequences, vocabulary = build_sequences(
        generate_synthetic_interactions(num_users=60, num_items=40, seed=5)
    )
    return sequences, vocabulary.num_items


def _ranks(sequences, method, **kwargs):
    sequences, num_items = sequences
    splits = split_sequences(sequences, method, **kwargs)
    model = MostPopularRecommender.from_dataset(splits["train"], num_items)
    return splits["test"], predict_ranks(
        model, splits["test"], SequenceCollator(max_seq_len=20), batch_size=7
    )


def test_future_rows_select_users_by_their_window_reward(sequences):
    test, predictions = _ranks(sequences, "future", cutoff_quantile=0.7, horizon=3, min_history=4)
    assert predictions.has_windows and set(dataset_subsets(test)) >= {SUBSET_HIGH_REWARD_TRAJECTORY}
    assert predictions.window_rewards.tolist() == pytest.approx(test[WINDOW_REWARD])
    assert predictions.window_positions.tolist() == test[WINDOW_POSITION]
    # The users above the median of users by accumulated window reward, computed here from the dataset.
    by_user = dict(zip(test["user_id"], test[WINDOW_REWARD]))
    median = np.median(list(by_user.values()))
    expected = [by_user[user] > median for user in test["user_id"]]
    assert predictions.subset_mask(SUBSET_HIGH_REWARD_TRAJECTORY).tolist() == expected
    metrics = predictions.metrics(subsets=predictions.default_subsets())
    assert metrics[SUBSET_HIGH_REWARD_TRAJECTORY]["num_users"] == sum(expected)
    assert sum(metrics[q]["num_users"] for q in SUBSET_TRAJECTORY_REWARD_QUARTILES) == len(test)


def test_long_history_on_leave_one_out_rows_is_the_history_sum_rule(sequences):
    test, predictions = _ranks(sequences, "leave-one-out")
    # The rule `high_reward_trajectory` had before it got its name: history ratings + target rating > median.
    sums = np.array([sum(r) + t for r, t in zip(test["ratings"], test["target_rating"])])
    expected = (sums > np.median(sums)).tolist()
    assert 0 < sum(expected) < len(test)
    assert predictions.subset_mask(SUBSET_LONG_HISTORY).tolist() == expected
    assert (
        subset_mask(SUBSET_LONG_HISTORY, predictions.target_ratings, predictions.history_rewards).tolist()
        == expected
    )


def test_high_reward_trajectory_on_leave_one_out_rows_fails_clearly(sequences):
    test, predictions = _ranks(sequences, "leave-one-out")
    assert SUBSET_HIGH_REWARD_TRAJECTORY not in dataset_subsets(test)
    for subset in (SUBSET_HIGH_REWARD_TRAJECTORY, SUBSET_TRAJECTORY_REWARD_QUARTILES[0]):
        with pytest.raises(
            ValueError, match=f"subset '{subset}' needs .* Fix: split with the `future` protocol"
        ):
            predictions.metrics(subsets=(subset,))
