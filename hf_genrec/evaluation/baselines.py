"""Non-learned reference recommenders, evaluated with the same code path as the models.

Shapes: B users in a batch, L history window, V items (1..V; index 0 is padding).
"""

from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from ..data.columns import ITEM_IDS

__all__ = ["MostPopularRecommender", "popularity_scores"]


def _count_items(item_ids: torch.Tensor, num_items: int) -> torch.Tensor:
    if item_ids.numel() and (item_ids.min() < 0 or item_ids.max() > num_items):
        raise ValueError(
            f"item ids must lie in 0..{num_items} (0 is padding), got {item_ids.min()}..{item_ids.max()}"
        )
    return torch.bincount(item_ids, minlength=num_items + 1).to(torch.float64)  # (V+1,)


def popularity_scores(train_dataset: Any, num_items: int) -> torch.Tensor:
    """Interaction count of every item over the train split, as a score vector.

        scores[i] = #{(user, position) : train_dataset[user]["item_ids"][position] == i},  i in 1..V
        scores[0] = -inf  (padding is never recommended)

    Args:
        train_dataset: a `datasets.Dataset` (read through Arrow, respecting `select`/`filter`), or any
            iterable of rows with an `item_ids` list.
        num_items: V.

    Returns:
        (V+1,) float32 scores.
    """
    if num_items < 1:
        raise ValueError(f"num_items must be >= 1, got {num_items}")
    counts = torch.zeros(num_items + 1, dtype=torch.float64)
    if hasattr(train_dataset, "with_format"):
        # Arrow batches avoid building a Python list per row (ML-20M has 20M events).
        for table in train_dataset.with_format("arrow").iter(batch_size=4096):
            # `astype` copies: Arrow buffers are read-only and torch wants writable memory.
            flat = pc.list_flatten(table[ITEM_IDS]).to_numpy().astype(np.int64)
            counts += _count_items(torch.from_numpy(flat), num_items)
    else:
        for row in train_dataset:
            counts += _count_items(torch.as_tensor(row[ITEM_IDS], dtype=torch.long), num_items)
    scores = counts.to(torch.float32)
    scores[0] = float("-inf")
    return scores


class MostPopularRecommender(torch.nn.Module):
    """Recommends the same items to everyone, ranked by train-split popularity.

    It has the model interface the evaluator uses (`config.num_items`, `score_next_items`), so
    `evaluate_ranking(MostPopularRecommender.from_dataset(train, V), test, collator)` works like for HSTU.

    Args:
        item_scores: (V+1,) float scores (e.g. `popularity_scores`); column 0 is set to -inf.
    """

    def __init__(self, item_scores: torch.Tensor) -> None:
        super().__init__()
        if item_scores.dim() != 1 or item_scores.numel() < 2:
            raise ValueError(f"item_scores must be (V+1,) with V >= 1, got shape {tuple(item_scores.shape)}")
        scores = item_scores.detach().to(torch.float32).clone()
        scores[0] = float("-inf")
        self.register_buffer("item_scores", scores)  # (V+1,); a buffer so `.to(device)` moves it
        self.config = SimpleNamespace(num_items=scores.numel() - 1)

    @classmethod
    def from_dataset(cls, train_dataset: Any, num_items: int) -> "MostPopularRecommender":
        """Build from the interaction counts of `train_dataset` (see `popularity_scores`)."""
        return cls(popularity_scores(train_dataset, num_items))

    def score_next_items(self, item_ids: torch.Tensor, *columns: Any, **named_columns: Any) -> torch.Tensor:
        """(B, V+1) scores: the popularity vector for every user, whatever the history.

        Takes the model inputs of a `History` (`score_next_items(**history.model_inputs())`, or the columns
        positionally); only the batch size of `item_ids` (B, N) is read, so any history column is accepted.
        Returned as a broadcast (expanded) view, so no (B, V+1) copy is made; do not write into it.
        """
        return self.item_scores.unsqueeze(0).expand(item_ids.shape[0], -1)  # (B, V+1)
