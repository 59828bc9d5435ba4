"""Full-catalogue ranks, HR/NDCG/MRR and test subsets against hand-computed values."""

import math

import pytest
import torch

from hf_genrec.evaluation import (
    DEFAULT_KS,
    MRR,
    NUM_USERS,
    SUBSET_ALL,
    SUBSET_HIGH_REWARD_TARGET,
    SUBSET_LONG_HISTORY,
    SUBSETS,
    hr_key,
    ndcg_key,
    per_user_ranking_metrics,
    ranking_metric_names,
    ranking_metrics,
    subset_mask,
    target_ranks,
)

INF = float("inf")


# --- metric names -------------------------------------------------------------------------------


def test_metric_names():
    assert DEFAULT_KS == (10, 50, 200)
    assert ranking_metric_names() == ["hr@10", "ndcg@10", "hr@50", "ndcg@50", "hr@200", "ndcg@200", "mrr"]
    assert SUBSETS == (
        "all",
        "high_reward_target",
        "long_history",
        "high_reward_trajectory",
        "trajectory_reward_q1",
        "trajectory_reward_q2",
        "trajectory_reward_q3",
        "trajectory_reward_q4",
    )
    with pytest.raises(ValueError):
        hr_key(0)
    with pytest.raises(ValueError):
        ranking_metric_names((10, 10))


# --- target_ranks ---------------------------------------------------------------------------------


def _ranks(scores, targets, exclude=None):
    exclude_t = None if exclude is None else torch.tensor(exclude)
    return target_ranks(torch.tensor(scores), torch.tensor(targets), exclude_t).tolist()


def test_single_user_explicit_scores():
    scores = [[0.0, 0.9, 0.1, 0.5, 0.7, 0.3]]  # items 1..5
    assert _ranks(scores, [4]) == [2]  # only item 1 (0.9) beats 0.7
    assert _ranks(scores, [1]) == [1]
    assert _ranks(scores, [2]) == [5]  # last of 5


def test_ties_are_pessimistic():
    assert _ranks([[0.0, 0.5, 0.5, 0.5, 0.1]], [2]) == [3]  # items 1 and 3 tie with the target
    # A constant-score model must rank every target last, never first.
    assert _ranks([[0.0] * 8], [3]) == [7]
    assert _ranks([[-INF] + [1.0] * 7], [7], [[1, 2, 0]]) == [5]  # 5 candidates left, all tied


def test_history_items_are_excluded():
    scores = [[0.0, 0.9, 0.8, 0.1, 0.5]]
    assert _ranks(scores, [4]) == [3]
    assert _ranks(scores, [4], [[1, 0, 0]]) == [2]  # seen item 1 no longer counts; 0 is padding
    assert _ranks(scores, [4], [[1, 2, 2]]) == [1]  # duplicates in the history are harmless


def test_target_in_history_is_still_ranked():
    scores = [[0.0, 0.9, 0.8, 0.1, 0.5]]
    # The target (4) was seen before: it is not removed, the other seen item (1) is.
    assert _ranks(scores, [4], [[4, 1]]) == [2]


def test_padding_column_is_never_a_candidate():
    assert _ranks([[INF, 0.1, 0.2]], [2]) == [1]
    assert _ranks([[1e9, 0.1, 0.2]], [1]) == [2]
    assert _ranks([[1e9, 0.1, 0.2]], [1], [[0, 0]]) == [2]


def test_minus_inf_target_is_last_among_candidates():
    # Items 1..3; item 3 excluded. A -inf target ties only with remaining candidates.
    assert _ranks([[-INF, 1.0, -INF, -INF]], [2], [[3]]) == [2]


def test_batch_matches_per_user_reference_loop():
    generator = torch.Generator().manual_seed(0)
    batch, num_items, history = 9, 25, 6
    # Rounded scores so that ties happen.
    scores = torch.round(torch.rand(batch, num_items + 1, generator=generator) * 5)
    targets = torch.randint(1, num_items + 1, (batch,), generator=generator)
    exclude = torch.randint(0, num_items + 1, (batch, history), generator=generator)
    exclude[0] = 0  # a user with an empty history
    exclude[1, 0] = targets[1]  # a target that was seen before
    expected = []
    for b in range(batch):
        seen = set(exclude[b].tolist()) - {0, targets[b].item()}
        target_score = scores[b, targets[b]].item()
        better = sum(
            1
            for item in range(1, num_items + 1)
            if item not in seen and item != targets[b].item() and scores[b, item].item() >= target_score
        )
        expected.append(1 + better)
    ranks = target_ranks(scores, targets, exclude)
    assert ranks.dtype == torch.long
    assert ranks.tolist() == expected
    assert not torch.equal(target_ranks(scores, targets), ranks)  # the exclusion changed something


def test_target_ranks_rejects_bad_inputs():
    with pytest.raises(ValueError, match="NaN"):
        _ranks([[0.0, float("nan"), 0.2]], [2])
    with pytest.raises(ValueError, match="target_item_ids"):
        _ranks([[0.0, 0.1, 0.2]], [0])
    with pytest.raises(ValueError, match="target_item_ids"):
        _ranks([[0.0, 0.1, 0.2]], [3])
    with pytest.raises(ValueError, match="exclude_item_ids"):
        _ranks([[0.0, 0.1, 0.2]], [1], [[5]])


def test_scores_are_not_modified():
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.1]])
    before = scores.clone()
    target_ranks(scores, torch.tensor([3]), torch.tensor([[1, 2]]))
    assert torch.equal(scores, before)


# --- ranking_metrics ------------------------------------------------------------------------------


def test_ranking_metrics_hand_computed():
    metrics = ranking_metrics(torch.tensor([1, 2, 11, 300]), ks=(1, 10, 50))
    expected = {
        "hr@1": 1 / 4,
        "ndcg@1": 1 / 4,
        "hr@10": 2 / 4,
        "ndcg@10": (1 + 1 / math.log2(3)) / 4,
        "hr@50": 3 / 4,
        "ndcg@50": (1 + 1 / math.log2(3) + 1 / math.log2(12)) / 4,
        "mrr": (1 + 1 / 2 + 1 / 11 + 1 / 300) / 4,
    }
    assert set(metrics) == set(expected) | {NUM_USERS}
    assert metrics[NUM_USERS] == 4
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-12), name


def test_k_larger_than_catalogue():
    # Catalogue of 3 items: every rank is <= 3.
    ranks = target_ranks(torch.tensor([[0.0, 0.3, 0.2, 0.1]] * 3), torch.tensor([1, 2, 3]))
    assert ranks.tolist() == [1, 2, 3]
    metrics = ranking_metrics(ranks, ks=(1000,))
    assert metrics[hr_key(1000)] == 1.0
    assert metrics[ndcg_key(1000)] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(4)) / 3)


def test_per_user_metrics_average_to_metrics():
    ranks = torch.tensor([3, 1, 7, 60, 2])
    per_user = per_user_ranking_metrics(ranks, ks=(5, 50))
    metrics = ranking_metrics(ranks, ks=(5, 50))
    assert list(per_user) == ranking_metric_names((5, 50))
    assert per_user["hr@5"].tolist() == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert per_user[MRR][2].item() == pytest.approx(1 / 7)
    for name, values in per_user.items():
        assert values.shape == (5,)
        assert values.mean().item() == pytest.approx(metrics[name])


def test_empty_ranks_give_nan():
    metrics = ranking_metrics(torch.zeros(0, dtype=torch.long))
    assert metrics[NUM_USERS] == 0
    assert all(math.isnan(metrics[name]) for name in ranking_metric_names())


def test_ranking_metrics_rejects_bad_ranks():
    with pytest.raises(ValueError):
        ranking_metrics(torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        ranking_metrics(torch.tensor([1.0, 2.0]))


# --- subsets --------------------------------------------------------------------------------------


def _mask(subset, ratings, rewards, **kwargs):
    return subset_mask(subset, torch.tensor(ratings), torch.tensor(rewards), **kwargs).tolist()


def test_subset_all():
    assert _mask(SUBSET_ALL, [1.0, 5.0], [3.0, 4.0]) == [True, True]


def test_high_reward_target_threshold():
    ratings = [5.0, 4.5, 4.0, 1.0]
    rewards = [0.0] * 4
    assert _mask(SUBSET_HIGH_REWARD_TARGET, ratings, rewards) == [True, True, False, False]
    lower = _mask(SUBSET_HIGH_REWARD_TARGET, ratings, rewards, high_reward_threshold=4.0)
    assert lower == [True, True, True, False]


def test_long_history_strictly_above_median():
    ratings = [0.0] * 4
    assert _mask(SUBSET_LONG_HISTORY, ratings, [1.0, 2.0, 3.0, 4.0]) == [False, False, True, True]
    # Users at the median are excluded.
    assert _mask(SUBSET_LONG_HISTORY, ratings, [2.0, 1.0, 2.0, 3.0]) == [False, False, False, True]
    assert _mask(SUBSET_LONG_HISTORY, ratings[:3], [5.0, 1.0, 3.0]) == [True, False, False]
    assert _mask(SUBSET_LONG_HISTORY, ratings[:3], [2.0, 2.0, 2.0]) == [False, False, False]
    assert _mask(SUBSET_LONG_HISTORY, [], []) == []


def test_unknown_subset_lists_valid_ones():
    with pytest.raises(ValueError, match="high_reward_trajectory"):
        _mask("high_reward", [1.0], [1.0])
