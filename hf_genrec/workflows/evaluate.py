"""`hf-genrec evaluate`: full-catalogue ranking metrics of a saved recommender on a prepared dataset."""

from __future__ import annotations

import os
from typing import Any

from ..data import SequenceCollator
from ..data.prepared import load_prepared
from ..evaluation import evaluate_ranking, flatten_metrics
from ..evaluation.metrics import SUBSET_ALL
from ..models import AutoModelForNextItemPrediction
from ..utils.io import write_json
from .common import check_model_vocabulary


def evaluate_model(
    model_dir: str | os.PathLike,
    data_dir: str | os.PathLike,
    *,
    split: str = "test",
    subset: str = SUBSET_ALL,
    split_method: str = "leave-one-out",
    batch_size: int = 256,
    output: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Rank each case's target over the full catalogue (seen items excluded); return flat metrics."""
    model = AutoModelForNextItemPrediction.from_pretrained(model_dir)
    splits, data_vocabulary = load_prepared(data_dir, split_method)
    if split not in splits:
        raise ValueError(f"--split must be one of {sorted(k for k in splits if k != 'train')}, got {split!r}.")
    # Without a saved vocabulary (e.g. a bare checkpoint), at least the catalogue sizes must agree.
    has_vocabulary = check_model_vocabulary(model_dir, data_vocabulary)
    if not has_vocabulary and model.config.num_items != data_vocabulary.num_items:
        raise ValueError(
            f"The model scores {model.config.num_items} items but the dataset has {data_vocabulary.num_items}."
        )
    metrics = evaluate_ranking(
        model,
        splits[split],
        SequenceCollator(max_seq_len=model.config.max_seq_len),
        subsets=(subset,),
        batch_size=batch_size,
    )
    flat = flatten_metrics(metrics)
    if output is not None:
        write_json(output, flat, allow_nan=True)  # a metric over no users is NaN
    return flat
