"""The `next-item-recommendation` task of `transformers.pipeline`, registered on `import hf_genrec`.

```python
>>> import hf_genrec  # registers the task
>>> from transformers import pipeline
>>> recommend = pipeline("next-item-recommendation", model="runs/quickstart/hstu")  # a directory or a Hub repo id
>>> recommend([1193, 661, 914], k=3)  # one history of raw item ids -> its top-k raw ids
[2355, 1197, 1287]
>>> recommend([[1193, 661, 914], [3408]], k=3)  # a list of histories -> one list each
[[2355, 1197, 1287], [2858, 1196, 260]]
```

The pipeline is a thin `transformers.Pipeline` around [`Recommender`]: the model comes from `pipeline()`
(`AutoModelForNextItemPrediction`, device placement), its vocabulary from the `item_vocabulary.json` saved beside
it (`model.item_vocabulary`), and encoding, batching, scoring and decoding are the `Recommender`'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .data import ItemVocabulary
from .models import AutoModelForNextItemPrediction
from .pipelines import Recommender

TASK = "next-item-recommendation"


def _is_one_history(inputs: Any) -> bool:
    """True when `inputs` is one history (a flat sequence of raw ids) rather than a list of histories."""
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence | np.ndarray | torch.Tensor):
        return False
    return len(inputs) > 0 and isinstance(inputs[0], int | str | np.integer)


class NextItemRecommendationPipeline(Pipeline):
    """Top-k next items (raw ids) for raw-id histories: `pipeline("next-item-recommendation", model=...)`.

    Call it with one history (a list of raw item ids, oldest first), which returns one list of raw ids, or with a
    list of histories, which returns one list per history. Keyword arguments, at construction or per call: `k`
    (items per history, default 10), `timestamps` and `request_timestamps` (as in [`Recommender.recommend`];
    for one history, its list of times and one request time). `batch_size` bounds the histories scored per
    forward pass. `vocabulary=` overrides the model's own `item_vocabulary`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, model, *args, vocabulary: ItemVocabulary | None = None, **kwargs):
        super().__init__(model, *args, **kwargs)
        self.recommender = Recommender(self.model, vocabulary, batch_size=self._batch_size or 256)

    def _sanitize_parameters(self, k=None, timestamps=None, request_timestamps=None, **unknown):
        if unknown:
            raise TypeError(
                f"{TASK} pipeline got unexpected keyword argument(s) {sorted(unknown)}; it takes k, timestamps, "
                "request_timestamps (and batch_size when built)."
            )
        preprocess = {"timestamps": timestamps, "request_timestamps": request_timestamps}
        preprocess = {name: value for name, value in preprocess.items() if value is not None}
        return preprocess, ({"k": k} if k is not None else {}), {}

    def __call__(self, histories, **kwargs) -> list:
        """Top-k raw ids for one history, or one list per history for a list of histories.

        All histories go through one `Recommender.recommend` call (which batches them by `batch_size`) instead of
        transformers' per-input loop, which would also take a flat history for a list of single items.
        """
        preprocess, forward, postprocess = self._sanitize_parameters(**kwargs)
        return self.run_single(
            histories,
            {**self._preprocess_params, **preprocess},
            {**self._forward_params, **forward},
            {**self._postprocess_params, **postprocess},
        )

    def preprocess(self, histories, timestamps=None, request_timestamps=None) -> dict[str, Any]:
        single = _is_one_history(histories)
        if single:  # one history, its times and its request time: the Recommender takes lists of each
            histories = [histories]
            timestamps = None if timestamps is None else [timestamps]
            request_timestamps = None if request_timestamps is None else [request_timestamps]
        return {"histories": histories, "timestamps": timestamps, "request_timestamps": request_timestamps,
                "single": single}

    def _forward(self, inputs: dict[str, Any], k: int = 10) -> dict[str, Any]:
        items = self.recommender.recommend(
            inputs["histories"], k=k, timestamps=inputs["timestamps"], request_timestamps=inputs["request_timestamps"]
        )
        return {"items": items, "single": inputs["single"]}

    def postprocess(self, outputs: dict[str, Any]) -> list:
        return outputs["items"][0] if outputs["single"] else outputs["items"]


def register_pipeline_task() -> None:
    """Register `next-item-recommendation` with `transformers.pipelines.PIPELINE_REGISTRY` (once)."""
    if TASK not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            TASK, pipeline_class=NextItemRecommendationPipeline, pt_model=AutoModelForNextItemPrediction
        )


register_pipeline_task()

__all__ = ["TASK", "NextItemRecommendationPipeline", "register_pipeline_task"]
