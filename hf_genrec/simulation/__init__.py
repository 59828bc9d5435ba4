"""A ground-truth simulator: a world whose true reward r*(history, item) is known for every item, and logs drawn
from it with knobs (logging policy strength and coverage, rating noise, popularity bias, missingness, traps).

```python
>>> from hf_genrec.simulation import World, LoggingPolicy, simulate_logs
>>> from hf_genrec.simulation import EvaluationContexts, evaluate_policy, oracle_probabilities
>>> world = World.synthetic(num_users=200, num_items=100, seed=0)
>>> interactions, truth = simulate_logs(world, events_per_user=20, policy=LoggingPolicy(strength=2.0), seed=0)
>>> contexts = EvaluationContexts.from_truth(truth, length=10)  # each user's state before the held-out part
>>> evaluate_policy(world, contexts, oracle_probabilities(world, contexts)).true_value
```
"""

from .evaluation import (
    EvaluationContexts,
    PolicyEvaluation,
    ProxyAccuracy,
    ensemble_proxy,
    evaluate_policy,
    exposure_gini,
    kl_divergence,
    logging_policy_probabilities,
    oracle_probabilities,
    proxy_accuracy,
    recommender_policy,
    rollout_value,
    uniform_probabilities,
)
from .logging_policy import LoggingPolicy, ObservationModel, SimulationTruth, simulate_logs
from .true_reward import WorldRewardModel
from .world import World

__all__ = [
    "World",
    "WorldRewardModel",
    "LoggingPolicy",
    "ObservationModel",
    "SimulationTruth",
    "simulate_logs",
    "EvaluationContexts",
    "PolicyEvaluation",
    "ProxyAccuracy",
    "ensemble_proxy",
    "evaluate_policy",
    "exposure_gini",
    "kl_divergence",
    "logging_policy_probabilities",
    "oracle_probabilities",
    "proxy_accuracy",
    "recommender_policy",
    "rollout_value",
    "uniform_probabilities",
]
