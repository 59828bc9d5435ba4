"""The report counts users, not rows: on `future` rows a user's H targets become one per-user value, and the
intervals resample users (and seeds), never rows."""

import numpy as np
import pytest
import torch

from hf_genrec.benchmark.evaluation import PolicyEvaluation
from hf_genrec.benchmark.report import (
    JUDGE,
    BenchmarkRow,
    per_user_values,
    results_markdown,
    summarize,
)
from hf_genrec.evaluation import RankingPredictions, bootstrap_relative_change_ci
from hf_genrec.evaluation.diagnostics import case_users
from hf_genrec.evaluation.judge import JudgeScores

# 4 test users x H = 2 targets, users' rows consecutive from window_position 0. Window rewards 8, 4, 10, 6:
# median over users 7, so high_reward_trajectory = users 0 and 2 (4 targets).
H = 2
POSITIONS = torch.tensor([0, 1] * 4)
WINDOW_REWARDS = torch.tensor([8.0, 8.0, 4.0, 4.0, 10.0, 10.0, 6.0, 6.0])
TARGETS = torch.tensor([5.0, 3.0, 1.0, 3.0, 5.0, 5.0, 3.0, 3.0])


def evaluation(ranks, judge) -> PolicyEvaluation:
    judge = torch.tensor(judge, dtype=torch.float64)
    n = judge.numel()
    return PolicyEvaluation(
        ranking=RankingPredictions(ranks=torch.tensor(ranks), target_ratings=TARGETS,
                                   history_rewards=torch.arange(n, dtype=torch.float32),
                                   window_rewards=WINDOW_REWARDS, window_positions=POSITIONS),
        judge=JudgeScores(scores=judge, member_scores=torch.stack([judge - 1, judge + 1]),
                          items=torch.ones(n, 3, dtype=torch.long), rewards=torch.ones(n, 3, dtype=torch.float64),
                          steps=torch.full((n,), 3)),
    )


RWBC = [evaluation([1, 3, 2, 100, 1, 1, 7, 50], [4.0, 2.0, 1.0, 3.0, 5.0, 5.0, 2.0, 2.0]),
        evaluation([2, 3, 2, 60, 1, 4, 9, 50], [3.0, 2.0, 1.0, 1.0, 5.0, 4.0, 2.0, 3.0])]
ASFT = [evaluation([1, 1, 5, 100, 1, 2, 3, 20], [5.0, 2.0, 2.0, 3.0, 5.0, 4.0, 3.0, 2.0]),
        evaluation([1, 2, 3, 40, 2, 2, 5, 30], [4.0, 3.0, 1.0, 2.0, 4.0, 5.0, 2.0, 2.0])]


def test_rows_group_into_users():
    assert case_users(RWBC[0].ranking).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    values, num_targets = per_user_values(RWBC[0], "all")
    assert num_targets == 8
    # MRR per user: the mean of the user's two targets' 1/rank.
    np.testing.assert_allclose(values["mrr"], [(1 + 1 / 3) / 2, (1 / 2 + 1 / 100) / 2, 1.0, (1 / 7 + 1 / 50) / 2])
    np.testing.assert_allclose(values[JUDGE], [3.0, 2.0, 5.0, 2.0])
    values, num_targets = per_user_values(RWBC[0], "high_reward_trajectory")
    assert num_targets == 4 and values["mrr"].tolist() == pytest.approx([(1 + 1 / 3) / 2, 1.0])
    # A row-level subset: a user's targets rated 5 only (users 0 and 2; user 2 has two).
    values, num_targets = per_user_values(RWBC[0], "high_reward_target")
    assert num_targets == 3 and values["mrr"].tolist() == pytest.approx([1.0, 1.0])


def test_users_not_rows_are_counted_and_resampled():
    rows = [BenchmarkRow("rwbc", "rwbc", "method", RWBC[:1], seeds=[42]),
            BenchmarkRow("asft", "asft", "method", ASFT[:1], seeds=[42])]
    summary = summarize(rows, "rwbc", resamples=300)
    assert summary["num_users"]["all"] == 4 and summary["num_targets"]["all"] == 8
    assert summary["num_users"]["high_reward_trajectory"] == 2 and summary["num_targets"]["high_reward_trajectory"] == 4
    assert sum(summary["num_users"][f"trajectory_reward_q{q}"] for q in range(1, 5)) == 4
    entry = summary["rows"]["asft"]["subsets"]["all"]["metrics"]["ndcg@10"]
    method, reference = per_user_values(ASFT[0], "all")[0], per_user_values(RWBC[0], "all")[0]
    expected = bootstrap_relative_change_ci(method["ndcg@10"], reference["ndcg@10"], num_resamples=300)
    assert (entry["pct_vs_rwbc"], *entry["ci95"]) == pytest.approx(expected)
    assert entry["ci95_over"] == "users"
    results = {"config": {"dataset": "toy", "command": "c", "preset": "tiny", "seeds": [42], "split": "future",
                          "protocol": "future", "reference": "rwbc", "judge": "j", "horizon": 3, "gamma": 0.9,
                          "split_options": {"horizon": H},
                          "split_counts": {"train": {"users": 9, "events": 90}, "test": {"users": 4, "events": 8}}},
               "subsets": list(summary["num_users"]), "num_users": summary["num_users"],
               "num_targets": summary["num_targets"], "methods": summary["rows"],
               "wall_time_s": 1.0, "stages": []}
    markdown = results_markdown(results)
    assert "## `high_reward_trajectory` (2 test users, 4 targets)" in markdown
    assert "`all` 4 (8)" in markdown and "test 4 users, 8 targets" in markdown


def test_intervals_resample_seeds_and_users():
    rows = [BenchmarkRow("rwbc", "rwbc", "method", RWBC, seeds=[42, 43]),
            BenchmarkRow("asft", "asft", "method", ASFT, seeds=[42, 43]),
            BenchmarkRow("asft-one-seed", "asft", "method", ASFT[1:], seeds=[42], temperature=2.0)]
    summary = summarize(rows, "rwbc", resamples=300)
    entry = summary["rows"]["asft"]["subsets"]["all"]["metrics"]["mrr"]
    method = np.stack([per_user_values(e, "all")[0]["mrr"] for e in ASFT])  # (2 seeds, 4 users)
    reference = np.stack([per_user_values(e, "all")[0]["mrr"] for e in RWBC])
    expected = bootstrap_relative_change_ci(method, reference, num_resamples=300)
    assert (entry["pct_vs_rwbc"], *entry["ci95"]) == pytest.approx(expected)
    assert entry["ci95_over"] == "seeds x users" and len(entry["per_seed"]) == 2
    # A row with one seed is paired with the reference's first seed (the same post-training seed).
    one_seed = summary["rows"]["asft-one-seed"]["subsets"]["all"]["metrics"]["mrr"]
    expected = bootstrap_relative_change_ci(method[1], reference[0], num_resamples=300)
    assert (one_seed["pct_vs_rwbc"], *one_seed["ci95"]) == pytest.approx(expected)


def test_rows_out_of_window_order_are_refused():
    bad = evaluation([1] * 8, [1.0] * 8)
    bad.ranking.window_positions = torch.tensor([0, 1, 1, 0, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="window_positions"):
        case_users(bad.ranking)
