from .configuration_hstu import HSTUConfig
from .modeling_hstu import (
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
    HSTUModel,
    HSTUModelOutput,
    HSTUPreTrainedModel,
    NextItemPredictionOutput,
    RecommendationOutput,
    RewardModelOutput,
)

__all__ = [
    "HSTUConfig",
    "HSTUForNextItemPrediction",
    "HSTUForRewardModeling",
    "HSTUModel",
    "HSTUModelOutput",
    "HSTUPreTrainedModel",
    "NextItemPredictionOutput",
    "RecommendationOutput",
    "RewardModelOutput",
]
