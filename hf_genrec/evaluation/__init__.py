"""Evaluation: full-catalogue ranking metrics, test subsets, baselines and bootstrap intervals.

Pure functions over tensors with no trainer and no global state; `Trainer.evaluate` and the CLI both
call them.
"""

from .baselines import MostPopularRecommender, popularity_scores
from .evaluator import RankingPredictions, dataset_subsets, evaluate_ranking, flatten_metrics, predict_ranks
from .judge import JudgeScores, judge_score, rollout_batch
from .metrics import (
    DEFAULT_HIGH_REWARD_THRESHOLD,
    DEFAULT_KS,
    MRR,
    NUM_USERS,
    RUNTIME,
    SUBSET_ALL,
    SUBSET_HIGH_REWARD_TARGET,
    SUBSET_HIGH_REWARD_TRAJECTORY,
    SUBSET_LONG_HISTORY,
    SUBSET_TRAJECTORY_REWARD_QUARTILES,
    SUBSETS,
    TRAJECTORY_SUBSETS,
    default_subsets,
    hr_key,
    metric_key,
    ndcg_key,
    ranking_metric_names,
    strip_metric_prefix,
)
from .ranking import per_user_ranking_metrics, ranking_metrics, subset_mask, target_ranks
from .statistics import bootstrap_difference_ci, bootstrap_mean_ci, bootstrap_relative_change_ci

__all__ = [
    "DEFAULT_HIGH_REWARD_THRESHOLD",
    "DEFAULT_KS",
    "MRR",
    "NUM_USERS",
    "RUNTIME",
    "SUBSETS",
    "SUBSET_ALL",
    "SUBSET_HIGH_REWARD_TARGET",
    "SUBSET_HIGH_REWARD_TRAJECTORY",
    "SUBSET_LONG_HISTORY",
    "SUBSET_TRAJECTORY_REWARD_QUARTILES",
    "TRAJECTORY_SUBSETS",
    "JudgeScores",
    "MostPopularRecommender",
    "RankingPredictions",
    "bootstrap_mean_ci",
    "bootstrap_difference_ci",
    "bootstrap_relative_change_ci",
    "dataset_subsets",
    "default_subsets",
    "evaluate_ranking",
    "flatten_metrics",
    "hr_key",
    "judge_score",
    "metric_key",
    "ndcg_key",
    "per_user_ranking_metrics",
    "popularity_scores",
    "predict_ranks",
    "ranking_metric_names",
    "ranking_metrics",
    "rollout_batch",
    "strip_metric_prefix",
    "subset_mask",
    "target_ranks",
]
