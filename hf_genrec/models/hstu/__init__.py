from .configuration_hstu import HSTUConfig
from .modeling_hstu import (
    HSTUForNextItemPrediction,
    HSTUModel,
    HSTUModelOutput,
    HSTUPreTrainedModel,
    NextItemPredictionOutput,
    RecommendationOutput,
)

__all__ = [
    "HSTUConfig",
    "HSTUForNextItemPrediction",
    "HSTUModel",
    "HSTUModelOutput",
    "HSTUPreTrainedModel",
    "NextItemPredictionOutput",
    "RecommendationOutput",
]
