"""Training workflows: a prepared dataset and a recipe in, a run folder out (model, vocabulary, model card,
`recipe.yaml`, `metrics.json`, checkpoints).

One function per kind of run; the `hf-genrec` commands and the benchmark call them:

```python
>>> from hf_genrec.workflows import pretrain, reward, posttrain
>>> pretrain("runs/ml1m-data", "runs/ml1m-hstu", recipe="recipes/movielens-1m/hstu.yaml", epochs=2)
```

The flags every run shares (`epochs`, `seed`, `max_steps`, `resume`, `push_to_hub`, ...) are the fields of
`RunOptions`; pass them as keywords or as one `options=RunOptions(...)`. The steps every run shares live in
`common.TrainingRun`.
"""

from .common import RunOptions
from .evaluate import evaluate_model
from .posttrain import METHODS, posttrain
from .pretrain import pretrain
from .reward import reward, train_reward_ensemble

__all__ = ["METHODS", "RunOptions", "evaluate_model", "posttrain", "pretrain", "reward", "train_reward_ensemble"]
