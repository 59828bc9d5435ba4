"""Reward models as used by post-training: ensembles with uncertainty, naive baselines and the reward table.

```python
>>> from hf_genrec.data import History
>>> from hf_genrec.rewards import RewardEnsemble, reward_table
>>> ensemble = RewardEnsemble.from_pretrained("runs/ml1m-reward")
>>> prediction = ensemble.predict_candidates(History.from_batch(batch), candidate_item_ids=candidates)
>>> prediction.mean, prediction.std, prediction.members  # (B, C), (B, C), (K, B, C)
```
"""

from .baselines import GlobalMeanReward, ItemMeanReward, UserMeanReward, fit_reward_baselines
from .ensemble import ENSEMBLE_FILE, RewardEnsemble, RewardPrediction, member_directory
from .metrics import (
    PREDICTORS,
    binary_auc,
    format_reward_table,
    format_uncertainty,
    mae,
    pairwise_accuracy,
    popularity_bins,
    predict_targets,
    reward_table,
    rmse,
    uncertainty_by_popularity,
)

__all__ = [
    "ENSEMBLE_FILE",
    "GlobalMeanReward",
    "ItemMeanReward",
    "PREDICTORS",
    "RewardEnsemble",
    "RewardPrediction",
    "UserMeanReward",
    "binary_auc",
    "fit_reward_baselines",
    "format_reward_table",
    "format_uncertainty",
    "mae",
    "member_directory",
    "pairwise_accuracy",
    "popularity_bins",
    "predict_targets",
    "reward_table",
    "rmse",
    "uncertainty_by_popularity",
]
