"""hf_genrec: post-training generative recommenders on Hugging Face Transformers.

`import hf_genrec` registers the HSTU classes with `AutoConfig` / `AutoModel`, so checkpoints load with
`from_pretrained` and no `trust_remote_code`.
"""

from .models import (
    AutoModelForNextItemPrediction,
    AutoModelForRewardModeling,
    HSTUConfig,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
    HSTUModel,
)

__version__ = "0.1.0"

__all__ = [
    "AutoModelForNextItemPrediction",
    "AutoModelForRewardModeling",
    "HSTUConfig",
    "HSTUForNextItemPrediction",
    "HSTUForRewardModeling",
    "HSTUModel",
    "__version__",
]
