"""The benchmark report: statistics over seeds, % vs reward-weighted BC, the results.json schema, figures."""

import json
import math

import pytest
import torch

from hf_genrec.benchmark.evaluation import PolicyEvaluation, load_evaluation
from hf_genrec.benchmark.report import (
    JUDGE,
    METRICS,
    BenchmarkRow,
    plot_improvements,
    plot_lambda_sweep,
    results_markdown,
    summarize,
    write_json_strict,
)
from hf_genrec.evaluation import RankingPredictions
from hf_genrec.evaluation.judge import JudgeScores

# 4 test users: targets rated 5, 3, 5, 1; history rewards 10, 20, 30, 40 (median 25: users 2 and 3 are high).
TARGETS = torch.tensor([5.0, 3.0, 5.0, 1.0])
TRAJECTORIES = torch.tensor([10.0, 20.0, 30.0, 40.0])


def evaluation(ranks, judge) -> PolicyEvaluation:
    judge = torch.tensor(judge, dtype=torch.float64)
    members = torch.stack([judge - 0.5, judge + 0.5])  # spread of the member means: 0.5
    return PolicyEvaluation(
        ranking=RankingPredictions(ranks=torch.tensor(ranks), target_ratings=TARGETS, history_rewards=TRAJECTORIES),
        judge=JudgeScores(scores=judge, member_scores=members, items=torch.ones(4, 3, dtype=torch.long),
                          rewards=torch.ones(4, 3, dtype=torch.float64), steps=torch.full((4,), 3)),
    )


def rows():
    rwbc = BenchmarkRow("rwbc", "rwbc", "method", [evaluation([1, 2, 4, 100], [4.0] * 4),
                                                   evaluation([1, 2, 4, 100], [4.0] * 4)], seeds=[42, 43])
    # A-SFT: rank 1 for everyone with seed 42, the reference's ranks with seed 43.
    asft = BenchmarkRow("asft", "asft", "method", [evaluation([1, 1, 1, 1], [5.0] * 4),
                                                   evaluation([1, 2, 4, 100], [3.0] * 4)], seeds=[42, 43],
                        temperature=1.0)
    pretrained = BenchmarkRow("pretrained", "pretrained", "pretrained", [evaluation([2, 2, 2, 2], [2.0] * 4)])
    return [pretrained, rwbc, asft]


def tuning_section():
    """A `tuning` section as the pipeline writes it: two trials per method on one tuning seed."""
    def trial(hyperparameters, score, chosen):
        run = {"seed": 42, "validation": score, "best_step": 4, "best_epoch": 1.0, "global_steps": 8,
               "epochs_trained": 2.0, "history": [{"step": 4, "epoch": 1.0, "metric": score},
                                                  {"step": 8, "epoch": 2.0, "metric": score / 2}]}
        return {"hyperparameters": hyperparameters, "validation_mean": score, "runs": [run], "chosen": chosen}

    return {"split": "validation", "metric": "high_reward_target/ndcg@10", "trials_per_method": 2, "seeds": [42],
            "max_epochs": 2, "eval_strategy": "epoch", "eval_steps": None, "patience": 1, "methods": {
                "rwbc": {"grid": {"learning_rate": [1e-4, 3e-4]}, "chosen": 1,
                         "chosen_hyperparameters": {"learning_rate": 3e-4},
                         "trials": [trial({"learning_rate": 1e-4}, 0.2, False), trial({"learning_rate": 3e-4}, 0.3, True)]},
                "asft": {"grid": {"temperature": [1.0, 2.0]}, "chosen": 0, "chosen_hyperparameters": {"temperature": 1.0},
                         "trials": [trial({"temperature": 1.0}, 0.4, True), trial({"temperature": 2.0}, 0.1, False)]}}}


def test_summary_values_by_hand():
    summary = summarize(rows(), "rwbc", resamples=200)
    assert summary["num_users"] == {"all": 4, "high_reward_target": 2, "long_history": 2}
    mrr = summary["rows"]["asft"]["subsets"]["all"]["metrics"]["mrr"]
    reference_mrr = (1 + 1 / 2 + 1 / 4 + 1 / 100) / 4
    assert mrr["per_seed"] == pytest.approx([1.0, reference_mrr])
    assert mrr["value"] == pytest.approx((1.0 + reference_mrr) / 2)
    assert mrr["std"] == pytest.approx(abs(1.0 - reference_mrr) / math.sqrt(2))
    assert mrr["pct_vs_rwbc"] == pytest.approx(100 * ((1.0 + reference_mrr) / 2 - reference_mrr) / reference_mrr)
    assert mrr["pct_vs_rwbc_per_seed"] == pytest.approx([100 * (1 - reference_mrr) / reference_mrr, 0.0])
    low, high = mrr["ci95"]
    assert low <= mrr["pct_vs_rwbc"] <= high
    # long_history = users 2 and 3 (ranks 4 and 100 for rwbc): HR@10 is 0.5, MRR (1/4 + 1/100) / 2.
    subset = summary["rows"]["rwbc"]["subsets"]["long_history"]["metrics"]
    assert subset["hr@10"]["value"] == 0.5 and subset["mrr"]["value"] == pytest.approx(0.13)
    assert subset["mrr"]["pct_vs_rwbc"] == 0.0 and subset["mrr"]["ci95"] == [0.0, 0.0]
    # A resample of two users who both missed the top 10 has a zero reference: no ratio interval (dropping those
    # resamples would bias it), but the same resamples' difference in % of the reference mean, marked as such.
    hits = summary["rows"]["asft"]["subsets"]["long_history"]["metrics"]["hr@10"]
    assert hits["ci95_kind"] == "difference / reference mean" and not any(math.isnan(x) for x in hits["ci95"])
    assert hits["ci95"][0] <= hits["pct_vs_rwbc"] <= hits["ci95"][1]
    assert mrr["ci95_kind"] == "ratio"
    judge = summary["rows"]["asft"]["subsets"]["all"]["metrics"][JUDGE]
    assert judge["value"] == pytest.approx(4.0) and judge["pct_vs_rwbc"] == pytest.approx(0.0)
    assert judge["spread"] == pytest.approx(0.5)
    assert judge["pct_vs_rwbc_per_seed"] == pytest.approx([25.0, -25.0])


def test_results_schema_markdown_and_figures(tmp_path):
    summary = summarize(rows(), "rwbc", resamples=100)
    results = {"schema_version": 2, "subsets": ["all", "high_reward_target", "long_history"],
               "metrics": list(METRICS), "num_users": summary["num_users"], "methods": summary["rows"],
               "tuning": tuning_section(),
               "reward_table": None, "judge_reward_table": None, "wall_time_s": 1.0,
               "stages": [{"label": "prepare", "key": "abc", "cached": True, "seconds": 0.1}],
               "config": {"dataset": "toy", "command": "hf-genrec benchmark", "preset": "tiny", "seeds": [42, 43],
                          "split": "leave-one-out", "reference": "rwbc", "judge": "toy judge", "horizon": 3,
                          "gamma": 0.9}}
    write_json_strict(tmp_path / "results.json", results)
    loaded = json.loads((tmp_path / "results.json").read_text())  # strict JSON: no NaN
    entry = loaded["methods"]["asft"]["subsets"]["high_reward_target"]["metrics"]["ndcg@10"]
    assert set(entry) >= {"value", "std", "per_seed", "pct_vs_rwbc", "ci95", "pct_vs_rwbc_per_seed"}
    assert loaded["methods"]["pretrained"]["subsets"]["all"]["metrics"]["hr@10"]["std"] is None
    markdown = results_markdown(results)
    assert "`long_history` (2 test users)" in markdown and "## Hyperparameter selection (validation only)" in markdown
    # One line per trial: its hyperparameters, validation score, best epoch (step), epochs run and the choice.
    assert "| A-SFT | temperature=1 | 0.4000 | 1.00 (4) | 2.00 | ✓ |" in markdown
    assert "| reward-weighted BC | learning_rate=0.0001 | 0.2000 | 1.00 (4) | 2.00 |  |" in markdown
    assert "reward-weighted BC" in markdown
    plot_improvements(results, tmp_path / "improvement.png")
    plot_lambda_sweep(results, tmp_path / "sweep.png")
    assert (tmp_path / "improvement.png").stat().st_size > 1000 and (tmp_path / "sweep.png").stat().st_size > 1000


def test_evaluation_round_trip(tmp_path):
    original = evaluation([3, 1, 2, 9], [1.0, 2.0, 3.0, 4.0])
    original.save(tmp_path)
    loaded = load_evaluation(tmp_path)
    assert torch.equal(loaded.ranking.ranks, original.ranking.ranks)
    assert torch.equal(loaded.judge.member_scores, original.judge.member_scores)


def test_reference_must_be_present():
    with pytest.raises(ValueError, match="reference"):
        summarize(rows()[:1], "rwbc", resamples=10)
