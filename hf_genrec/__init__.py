"""hf_genrec: post-training generative recommenders on Hugging Face Transformers.

`import hf_genrec` registers the HSTU classes with `AutoConfig` / `AutoModel`, so checkpoints load with
`from_pretrained` and no `trust_remote_code`, and the `next-item-recommendation` task of `transformers.pipeline`.
"""

from .models import (
    AutoModelForNextItemPrediction,
    AutoModelForRewardModeling,
    HSTUConfig,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
    HSTUModel,
)
from .pipeline_task import NextItemRecommendationPipeline  # registers pipeline("next-item-recommendation")
from .version import __version__

__all__ = [
    "AutoModelForNextItemPrediction",
    "AutoModelForRewardModeling",
    "HSTUConfig",
    "HSTUForNextItemPrediction",
    "HSTUForRewardModeling",
    "HSTUModel",
    "NextItemRecommendationPipeline",
    "__version__",
]
