import math

import numpy as np
import pytest

from hf_genrec.rewards import binary_auc, mae, pairwise_accuracy, popularity_bins, reward_table, rmse
from hf_genrec.rewards.metrics import (
    REWARD_AUC,
    REWARD_MAE,
    REWARD_PAIRWISE_ACCURACY,
    REWARD_RMSE,
    format_reward_table,
    predict_targets,
)


def test_rmse_and_mae_on_a_hand_example():
    # errors -1, 0, 3
    assert rmse([3, 4, 5], [4, 4, 2]) == pytest.approx(math.sqrt(10 / 3))
    assert mae([3, 4, 5], [4, 4, 2]) == pytest.approx(4 / 3)


def test_auc_on_a_hand_example():
    scores = [0.9, 0.3, 0.5, 0.5, 0.1, 0.0]
    ratings = [5, 4, 1, 4, 2, 3]  # high: 0.9, 0.3, 0.5; low: 0.5, 0.1; the 3 is left out
    # pairs (high, low): 0.9>0.5, 0.9>0.1, 0.3<0.5, 0.3>0.1, 0.5=0.5 (1/2), 0.5>0.1 -> 4.5 / 6
    assert binary_auc(scores, ratings) == pytest.approx(0.75)
    assert binary_auc([1, 1, 1], [5, 4, 1]) == pytest.approx(0.5)
    assert math.isnan(binary_auc([1, 2], [5, 4]))


def test_pairwise_accuracy_on_a_hand_example():
    # Groups interleaved on purpose. u1: preds 1, 2, 3 / ratings 1, 2, 2 -> 2 informative pairs, both right
    # (the equal-rating pair is skipped); u2: equal predictions for ratings 4 vs 1 -> 1/2; u3: wrong order.
    groups = ["u1", "u2", "u1", "u3", "u2", "u1", "u3"]
    preds = [1.0, 5.0, 2.0, 1.0, 5.0, 3.0, 2.0]
    ratings = [1.0, 4.0, 2.0, 5.0, 1.0, 2.0, 3.0]
    accuracy, pairs = pairwise_accuracy(preds, ratings, groups)
    assert pairs == 4 and accuracy == pytest.approx(2.5 / 4)
    assert math.isnan(pairwise_accuracy([1.0, 2.0], [3.0, 3.0], ["a", "a"])[0])


def test_popularity_bins():
    counts = np.array([0, 5, 0, 9, 1, 7])  # index 0 is padding
    # ranking items 1..5 by count: 2 (0), 4 (1), 1 (5), 5 (7), 3 (9) -> bins with 5 items and 5 bins
    assert popularity_bins(counts, 5).tolist() == [-1, 2, 0, 4, 1, 3]


def test_reward_table_rows(tiny_ensemble, tiny_data):
    splits, _ = tiny_data
    table = reward_table(tiny_ensemble, splits, batch_size=32)
    assert list(table["predictors"]) == ["reward_head", "ensemble_mean", "user_mean", "item_mean", "global_mean"]
    test_ratings = np.asarray(splits["test"]["target_rating"], dtype=np.float64)
    assert table["num_test_cases"] == len(test_ratings) == 60
    rows = table["predictors"]
    global_mean = np.concatenate([np.asarray(r, dtype=np.float64) for r in splits["train"]["ratings"]]).mean()
    assert rows["global_mean"][REWARD_RMSE] == pytest.approx(rmse(np.full(60, global_mean), test_ratings))
    # Item-blind predictors give equal scores to both items of a pair, and the global mean to every case.
    assert rows["global_mean"][REWARD_AUC] == 0.5
    assert rows["user_mean"][REWARD_PAIRWISE_ACCURACY] == 0.5 and rows["global_mean"][REWARD_PAIRWISE_ACCURACY] == 0.5
    prediction = predict_targets(tiny_ensemble, splits["test"])
    assert rows["reward_head"][REWARD_MAE] == pytest.approx(mae(prediction.members[0], test_ratings))
    assert rows["ensemble_mean"][REWARD_RMSE] == pytest.approx(rmse(prediction.mean, test_ratings))
    assert 0 < table["num_pairs"] <= 60
    markdown = format_reward_table(table)
    assert "| ensemble mean (K=2) |" in markdown and "| item mean |" in markdown
