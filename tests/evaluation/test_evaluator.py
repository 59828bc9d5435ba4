"""predict_ranks / evaluate_ranking on a fake model and a tiny `datasets.Dataset`."""

import math
from types import SimpleNamespace

import datasets
import pytest
import torch

from hf_genrec.evaluation import (
    NUM_USERS,
    SUBSET_HIGH_REWARD_TRAJECTORY,
    SUBSETS,
    RankingPredictions,
    default_subsets,
    evaluate_ranking,
    flatten_metrics,
    metric_key,
    predict_ranks,
    strip_metric_prefix,
)

NUM_ITEMS = 6


class LastItemScorer(torch.nn.Module):
    """Scores = a fixed table row chosen by the last real item of the history: (B, V+1)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table)
        self.config = SimpleNamespace(num_items=table.shape[1] - 1)
        self.seen_training_flags: list[bool] = []
        self.seen_query_timestamps: list[torch.Tensor] = []

    def score_next_items(self, item_ids, attention_mask, timestamps=None, query_timestamps=None):
        self.seen_training_flags.append(self.training)
        self.seen_query_timestamps.append(query_timestamps)
        last = attention_mask.sum(dim=1) - 1  # (B,)
        last_items = item_ids.gather(1, last[:, None]).squeeze(1)  # (B,)
        return self.table[last_items]  # (B, V+1)


def _table() -> torch.Tensor:
    table = torch.zeros(NUM_ITEMS + 1, NUM_ITEMS + 1)
    table[1] = torch.tensor([0.0, 6, 5, 4, 3, 2, 1])  # after item 1, item i scores 7 - i
    table[4] = 0.0  # after item 4 every item ties
    return table


def _dataset() -> datasets.Dataset:
    rows = {
        "user_id": [10, 11, 12],
        "item_ids": [[2, 1], [3, 1], [5, 4]],
        "ratings": [[4, 5], [5, 5], [1, 2]],
        "timestamps": [[100, 101], [200, 201], [300, 301]],
        "target_item_id": [3, 6, 1],
        "target_rating": [5.0, 3.0, 5.0],
        "target_timestamp": [102, 202, 302],
    }
    return datasets.Dataset.from_dict(rows)


# Hand computation, full history excluded (the model sees only the last item: max_seq_len = 1):
#   user 10: candidates 3,4,5,6 with scores 4,3,2,1, target 3 -> rank 1 (item 2 would beat it if seen
#            items were not excluded).
#   user 11: candidates 2,4,5,6 with scores 5,3,2,1, target 6 -> rank 4.
#   user 12: constant scores, candidates 1,2,3,6, target 1 -> rank 4 (ties are pessimistic).
#   trajectory rewards: 9 + 5 = 14, 10 + 3 = 13, 3 + 5 = 8; median 13.
EXPECTED_RANKS = [1, 4, 4]


def test_predict_ranks_hand_computed(eval_collate):
    model = LastItemScorer(_table())
    predictions = predict_ranks(model, _dataset(), eval_collate(1), batch_size=2)
    assert predictions.ranks.tolist() == EXPECTED_RANKS
    assert predictions.ranks.dtype == torch.long
    assert predictions.target_ratings.tolist() == [5.0, 3.0, 5.0]
    assert predictions.history_rewards.tolist() == [14.0, 13.0, 8.0]
    assert len(predictions) == 3
    # Timestamps reach the model (the query of the last position is the target's time).
    assert model.seen_query_timestamps[0][:, 0].tolist() == [102, 202]


def test_evaluate_ranking_metrics_per_subset(eval_collate):
    model = LastItemScorer(_table())
    metrics = evaluate_ranking(
        model, _dataset(), eval_collate(1), subsets=default_subsets(has_windows=False), ks=(1, 3, 10), batch_size=2
    )
    assert set(metrics) == {"all", "high_reward_target", "long_history"}
    everyone = metrics["all"]
    assert everyone[NUM_USERS] == 3
    assert everyone["hr@1"] == pytest.approx(1 / 3)
    assert everyone["hr@3"] == pytest.approx(1 / 3)
    assert everyone["hr@10"] == pytest.approx(1.0)
    assert everyone["ndcg@10"] == pytest.approx((1 + 2 / math.log2(5)) / 3)
    assert everyone["mrr"] == pytest.approx(0.5)
    # Targets rated >= 4.5: users 10 and 12 (ranks 1 and 4).
    target_subset = metrics["high_reward_target"]
    assert target_subset[NUM_USERS] == 2
    assert target_subset["mrr"] == pytest.approx((1 + 1 / 4) / 2)
    assert target_subset["ndcg@3"] == pytest.approx(0.5)
    # Rewards strictly above the median 13: user 10 only.
    trajectory_subset = metrics["long_history"]
    assert trajectory_subset[NUM_USERS] == 1
    assert trajectory_subset["hr@1"] == 1.0


def test_full_history_window_changes_nothing_but_longer_window_does(eval_collate):
    # With the full history in the window the last item is the same, so the ranks are the same.
    model = LastItemScorer(_table())
    ranks = predict_ranks(model, _dataset(), eval_collate(50), batch_size=3).ranks
    assert ranks.tolist() == EXPECTED_RANKS


def test_model_mode_is_restored(eval_collate):
    model = LastItemScorer(_table())
    model.train()
    predict_ranks(model, _dataset(), eval_collate(1), batch_size=2)
    assert model.training
    assert model.seen_training_flags == [False, False]  # scored in eval mode
    model.eval()
    predict_ranks(model, _dataset(), eval_collate(1), batch_size=2)
    assert not model.training


def test_model_mode_is_restored_after_an_error(eval_collate):
    model = LastItemScorer(_table())
    model.train()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    model.score_next_items = broken
    with pytest.raises(RuntimeError, match="boom"):
        predict_ranks(model, _dataset(), eval_collate(1))
    assert model.training


def test_predictions_concat_and_empty():
    a = RankingPredictions(torch.tensor([1, 2]), torch.tensor([5.0, 4.0]), torch.tensor([9.0, 8.0]))
    b = RankingPredictions(torch.tensor([3]), torch.tensor([1.0]), torch.tensor([2.0]))
    both = RankingPredictions.concat([a, b])
    assert both.ranks.tolist() == [1, 2, 3]
    assert both.history_rewards.tolist() == [9.0, 8.0, 2.0]
    empty = RankingPredictions.concat([])
    assert len(empty) == 0
    assert empty.metrics(subsets=SUBSETS)["high_reward_trajectory"][NUM_USERS] == 0
    with pytest.raises(ValueError):
        RankingPredictions(torch.tensor([1, 2]), torch.tensor([5.0]), torch.tensor([9.0, 8.0]))


def test_per_user_metrics_follow_the_subset():
    predictions = RankingPredictions(
        torch.tensor([1, 4, 2]), torch.tensor([5.0, 3.0, 5.0]), torch.tensor([10.0, 1.0, 2.0])
    )
    per_user = predictions.per_user_metrics("high_reward_target", ks=(1,))
    assert per_user["hr@1"].tolist() == [1.0, 0.0]


def test_flatten_metrics():
    nested = {"all": {"hr@10": 0.5, NUM_USERS: 4}, "high_reward_target": {"hr@10": 0.25, NUM_USERS: 2}}
    assert flatten_metrics(nested) == {
        "hr@10": 0.5,
        "num_users": 4,
        "high_reward_target/hr@10": 0.25,
        "high_reward_target/num_users": 2,
    }
    # A prefix is a `Trainer.evaluate` metric_key_prefix: joined with "_", as in the logs and metrics.json.
    assert flatten_metrics(nested, prefix="validation") == {
        "validation_hr@10": 0.5,
        "validation_num_users": 4,
        "validation_high_reward_target/hr@10": 0.25,
        "validation_high_reward_target/num_users": 2,
    }


def test_metric_keys_and_reading_them_back():
    assert metric_key("hr@10") == "hr@10"
    assert metric_key("ndcg@10", SUBSET_HIGH_REWARD_TRAJECTORY) == "high_reward_trajectory/ndcg@10"
    assert metric_key("hr@10", "high_reward_target", "validation") == "validation_high_reward_target/hr@10"
    assert metric_key("reward/rmse", prefix="eval") == "eval_reward/rmse"
    logged = {
        metric_key("hr@10", prefix="test"): 0.5,
        metric_key("mrr", SUBSET_HIGH_REWARD_TRAJECTORY, "test"): 0.25,
        metric_key("runtime", prefix="test"): 1.5,
        metric_key("hr@10", prefix="validation"): 0.75,
        "testing_hr@10": 0.0,  # another prefix that merely starts like this one
        "epoch": 2.0,
    }
    assert strip_metric_prefix(logged, "test") == {"hr@10": 0.5, "high_reward_trajectory/mrr": 0.25, "runtime": 1.5}
    assert strip_metric_prefix(logged, "validation") == {"hr@10": 0.75}
