"""Names of the evaluation metrics and test subsets, and the one rule that builds a logged metric key.

Metric names are lowercase (`hr@10`, `ndcg@10`, `mrr`, `num_users`; the reward trainer's are namespaced,
`reward/rmse`, see `hf_genrec.rewards.metrics`). `metric_key` builds the key a metric is logged under:

- subset `all`: the bare name, `hr@10`;
- any other subset: the subset as a namespace, `high_reward_target/hr@10`;
- under a `Trainer` `metric_key_prefix` (`eval`, `validation`, `test`): the prefix joined with `_`, as
  `transformers.Trainer` does, `eval_hr@10`, `validation_high_reward_target/hr@10`, `eval_reward/rmse`.

`flatten_metrics` and the trainers' `evaluate` and `log` build their keys with `metric_key`; code that reads
logged keys back (e.g. the split metrics written to `metrics.json`) uses `strip_metric_prefix`.
"""

from collections.abc import Iterable, Mapping
from typing import TypeVar

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
    "default_subsets",
    "hr_key",
    "metric_key",
    "ndcg_key",
    "ranking_metric_names",
    "strip_metric_prefix",
]

# The cut-offs the HSTU paper reports (HR@10/50/200, NDCG@10/200; the reference README adds NDCG@50).
DEFAULT_KS: tuple[int, ...] = (10, 50, 200)

MRR = "mrr"
NUM_USERS = "num_users"
# Seconds an evaluation took (`Trainer.evaluate` reports `{prefix}_runtime`).
RUNTIME = "runtime"

# Test subsets (brief, section 5); `hf_genrec.evaluation.ranking.subset_mask` defines each.
SUBSET_ALL = "all"
# Cases whose held-out target has a high rating (the A-SFT paper's 1,530 ML-1M cases come from such a filter).
SUBSET_HIGH_REWARD_TARGET = "high_reward_target"
# Cases whose history ratings plus target rating sum above the median: on ML-1M this sum correlates 0.987 with
# the number of ratings, so it selects long histories, not high rewards (it is named for what it measures).
SUBSET_LONG_HISTORY = "long_history"
# Test users whose accumulated reward over their test window of H events is strictly above the median of the
# test users (the Netflix post's high-reward trajectories); only on rows with a window (the `future` split).
SUBSET_HIGH_REWARD_TRAJECTORY = "high_reward_trajectory"
# Test users by quartile of accumulated window reward over the users (q1 lowest); also windowed rows only.
SUBSET_TRAJECTORY_REWARD_QUARTILES: tuple[str, ...] = tuple(f"trajectory_reward_q{q}" for q in range(1, 5))
# The subsets that need the accumulated reward of a test window.
TRAJECTORY_SUBSETS: tuple[str, ...] = (SUBSET_HIGH_REWARD_TRAJECTORY, *SUBSET_TRAJECTORY_REWARD_QUARTILES)
# Every subset name.
SUBSETS: tuple[str, ...] = (SUBSET_ALL, SUBSET_HIGH_REWARD_TARGET, SUBSET_LONG_HISTORY, *TRAJECTORY_SUBSETS)


def default_subsets(has_windows: bool) -> tuple[str, ...]:
    """The subsets reported on evaluation rows: with test windows (the `future` split) `all`, `high_reward_target`,
    `high_reward_trajectory` and the accumulated-reward quartiles; without (leave-one-out, temporal) `all`,
    `high_reward_target` and `long_history`."""
    if has_windows:
        return (SUBSET_ALL, SUBSET_HIGH_REWARD_TARGET, *TRAJECTORY_SUBSETS)
    return (SUBSET_ALL, SUBSET_HIGH_REWARD_TARGET, SUBSET_LONG_HISTORY)


# Ratings >= 4.5 select a 5 on integer 1-5 scales and still work on half-star scales (4.5 and 5.0).
DEFAULT_HIGH_REWARD_THRESHOLD = 4.5


def _check_k(k: int) -> None:
    # bool is an int subclass; `hr@True` would be a silent typo.
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"a ranking cut-off k must be a positive int, got {k!r}")


def hr_key(k: int) -> str:
    """The key of hit rate at cut-off `k`, e.g. `hr@10`."""
    _check_k(k)
    return f"hr@{k}"


def ndcg_key(k: int) -> str:
    """The key of NDCG at cut-off `k`, e.g. `ndcg@10`."""
    _check_k(k)
    return f"ndcg@{k}"


def ranking_metric_names(ks: Iterable[int] = DEFAULT_KS) -> list[str]:
    """The ranking metric keys for cut-offs `ks`, in report order: `hr@k, ndcg@k` per k, then `mrr`.

    `num_users` is not a metric and is not listed.
    """
    ks = tuple(ks)
    names: list[str] = []
    for k in ks:
        names += [hr_key(k), ndcg_key(k)]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate cut-offs in ks={ks!r}")
    return names + [MRR]


def metric_key(name: str, subset: str = SUBSET_ALL, prefix: str = "") -> str:
    """The key metric `name` of test subset `subset` is logged under, below `prefix` (see the module docstring).

    Args:
        name: the metric, e.g. `hr@10`, `num_users`, `reward/rmse`.
        subset: the test subset; `all` adds nothing, another subset is a namespace (`high_reward_target/hr@10`).
        prefix: a `Trainer.evaluate` `metric_key_prefix` (`eval`, `validation`, `test`), joined with `_`;
            empty for none.

    Example: `metric_key("hr@10", "high_reward_target", "validation") == "validation_high_reward_target/hr@10"`.
    """
    key = name if subset == SUBSET_ALL else f"{subset}/{name}"
    return f"{prefix}_{key}" if prefix else key


_Value = TypeVar("_Value")


def strip_metric_prefix(metrics: Mapping[str, _Value], prefix: str) -> dict[str, _Value]:
    """The entries of `metrics` logged under `prefix`, keyed without it: the inverse of `metric_key(..., prefix=)`.

    `strip_metric_prefix({"test_hr@10": 0.5, "test_runtime": 1.2, "eval_mrr": 0.1}, "test")` is
    `{"hr@10": 0.5, "runtime": 1.2}`.
    """
    head = metric_key("", prefix=prefix)  # "test_"
    return {key[len(head) :]: value for key, value in metrics.items() if key.startswith(head) and len(key) > len(head)}
