"""Models: HSTU and the auto classes of its task heads. Importing this registers them with transformers."""

from transformers import AutoConfig, AutoModel

from .auto import AutoModelForNextItemPrediction, AutoModelForRewardModeling
from .hstu import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling, HSTUModel

AutoConfig.register(HSTUConfig.model_type, HSTUConfig, exist_ok=True)
AutoModel.register(HSTUConfig, HSTUModel, exist_ok=True)
AutoModelForNextItemPrediction.register(HSTUConfig, HSTUForNextItemPrediction)
AutoModelForRewardModeling.register(HSTUConfig, HSTUForRewardModeling)

__all__ = [
    "AutoModelForNextItemPrediction",
    "AutoModelForRewardModeling",
    "HSTUConfig",
    "HSTUForNextItemPrediction",
    "HSTUForRewardModeling",
    "HSTUModel",
]
