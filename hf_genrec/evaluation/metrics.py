"""Names of the evaluation metrics and test subsets, defined once for the evaluator, trainers and CLI.

Metric keys are lowercase (`hr@10`, `ndcg@10`, `mrr`, `num_users`). When they are logged they are
namespaced as `ranking/<key>` (style guide 6.8; `Trainer` adds the `eval_` prefix itself), and keys of
a subset other than `all` get the subset as a further namespace (`ranking/high_reward_target/hr@10`),
see `hf_genrec.evaluation.evaluator.flatten_metrics`.
"""

from collections.abc import Iterable

__all__ = [
    "DEFAULT_HIGH_REWARD_THRESHOLD",
    "DEFAULT_KS",
    "MRR",
    "NUM_USERS",
    "RANKING_NAMESPACE",
    "SUBSETS",
    "SUBSET_ALL",
    "SUBSET_HIGH_REWARD_TARGET",
    "SUBSET_HIGH_REWARD_TRAJECTORY",
    "hr_key",
    "ndcg_key",
    "ranking_metric_names",
]

# The cut-offs the HSTU paper reports (HR@10/50/200, NDCG@10/200; the reference README adds NDCG@50).
DEFAULT_KS: tuple[int, ...] = (10, 50, 200)

MRR = "mrr"
NUM_USERS = "num_users"

# Namespace of the ranking metrics in logs (`ranking/ndcg@10`).
RANKING_NAMESPACE = "ranking"

# Test subsets (brief, section 5).
SUBSET_ALL = "all"
# Users whose held-out target has a high rating (the A-SFT paper's 1,530 ML-1M cases come from such a filter).
SUBSET_HIGH_REWARD_TARGET = "high_reward_target"
# Users whose accumulated reward is strictly above the population median (the Netflix blog's test set).
SUBSET_HIGH_REWARD_TRAJECTORY = "high_reward_trajectory"
SUBSETS: tuple[str, ...] = (SUBSET_ALL, SUBSET_HIGH_REWARD_TARGET, SUBSET_HIGH_REWARD_TRAJECTORY)

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
