"""Run a next-item model over an evaluation dataset and compute the ranking metrics per test subset.

Shapes: B users in a batch, U users in the dataset, L history window, H full-history length, V items.

The model is any `torch.nn.Module` with `score_next_items(item_ids, attention_mask, timestamps=None,
query_timestamps=None) -> (B, V+1)` scores (column 0 is padding). Batches come from the collator
(`hf_genrec.data.SequenceCollator` for evaluation rows).
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .metrics import DEFAULT_HIGH_REWARD_THRESHOLD, DEFAULT_KS, SUBSET_ALL
from .ranking import per_user_ranking_metrics, ranking_metrics, subset_mask, target_ranks

__all__ = ["RankingPredictions", "evaluate_ranking", "flatten_metrics", "predict_ranks"]

logger = logging.getLogger(__name__)

# Keys of an evaluation batch, as produced by `hf_genrec.data.SequenceCollator`.
_ITEM_IDS = "item_ids"
_ATTENTION_MASK = "attention_mask"
_TIMESTAMPS = "timestamps"
_QUERY_TIMESTAMPS = "query_timestamps"
_TARGET_ITEM_IDS = "target_item_ids"
_TARGET_RATINGS = "target_ratings"
_HISTORY_ITEM_IDS = "history_item_ids"
_HISTORY_REWARD_SUMS = "history_reward_sums"


@dataclass
class RankingPredictions:
    """Per-user outcome of a ranking pass, kept so metrics, subsets and bootstrap intervals need no rerun.

    Attributes:
        ranks: (U,) int64, 1-based rank of each user's target (`target_ranks`, history excluded).
        target_ratings: (U,) float32, rating of each user's target.
        trajectory_rewards: (U,) float32, accumulated reward = sum of history ratings + target rating.

    Users are in dataset order, so predictions of two models on the same dataset are aligned per user
    (what a paired bootstrap needs).
    """

    ranks: torch.Tensor
    target_ratings: torch.Tensor
    trajectory_rewards: torch.Tensor

    def __post_init__(self) -> None:
        if self.ranks.dim() != 1 or not (
            self.ranks.shape == self.target_ratings.shape == self.trajectory_rewards.shape
        ):
            raise ValueError(
                "ranks, target_ratings and trajectory_rewards must all be (U,), got shapes "
                f"{tuple(self.ranks.shape)}, {tuple(self.target_ratings.shape)}, "
                f"{tuple(self.trajectory_rewards.shape)}"
            )

    def __len__(self) -> int:
        return self.ranks.numel()

    @classmethod
    def concat(cls, predictions: Sequence["RankingPredictions"]) -> "RankingPredictions":
        """Concatenate predictions along users, in the given order (empty input gives zero users)."""
        if not predictions:
            return cls(
                ranks=torch.zeros(0, dtype=torch.long),
                target_ratings=torch.zeros(0),
                trajectory_rewards=torch.zeros(0),
            )
        return cls(
            ranks=torch.cat([p.ranks for p in predictions]),
            target_ratings=torch.cat([p.target_ratings for p in predictions]),
            trajectory_rewards=torch.cat([p.trajectory_rewards for p in predictions]),
        )

    def subset_mask(
        self, subset: str, high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD
    ) -> torch.Tensor:
        """(U,) bool mask of the users in `subset` (see `hf_genrec.evaluation.ranking.subset_mask`)."""
        return subset_mask(subset, self.target_ratings, self.trajectory_rewards, high_reward_threshold)

    def metrics(
        self,
        subsets: Sequence[str] = (SUBSET_ALL,),
        ks: Sequence[int] = DEFAULT_KS,
        high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
    ) -> dict[str, dict[str, float]]:
        """`{subset: {metric: mean value, ..., "num_users": n}}` (see `ranking_metrics`).

        The `high_reward_trajectory` median is taken over all users of these predictions, not over
        another subset.
        """
        return {
            subset: ranking_metrics(self.ranks[self.subset_mask(subset, high_reward_threshold)], ks)
            for subset in subsets
        }

    def per_user_metrics(
        self,
        subset: str = SUBSET_ALL,
        ks: Sequence[int] = DEFAULT_KS,
        high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
    ) -> dict[str, torch.Tensor]:
        """`{metric: (U_subset,) float64}` per-user values of the users in `subset`, for bootstrap intervals.

        The subset depends only on the data, so two models evaluated on the same dataset give aligned
        arrays for `bootstrap_relative_change_ci`.
        """
        return per_user_ranking_metrics(self.ranks[self.subset_mask(subset, high_reward_threshold)], ks)


def _model_device(model: torch.nn.Module) -> torch.device:
    # Parameters first, then buffers (a popularity baseline only has a buffer); CPU for a stateless module.
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@torch.no_grad()
def predict_ranks(
    model: torch.nn.Module,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    show_progress: bool = False,
) -> RankingPredictions:
    """Rank every user's target with `model` over the full catalogue, the user's full history excluded.

    Iterates `dataset` in order with `DataLoader(dataset, batch_size, shuffle=False, collate_fn=collator)`,
    scores each batch with `model.score_next_items(item_ids, attention_mask, timestamps=...,
    query_timestamps=...)` -> (B, V+1), and ranks `target_item_ids` (B,) with `history_item_ids` (B, H)
    excluded (`target_ranks`). The model is put in eval mode for the pass and its previous mode restored.

    Args:
        model: module with `score_next_items`.
        dataset: map-style dataset of evaluation rows (a `datasets.Dataset`).
        collator: turns a list of rows into the evaluation batch (keys: item_ids, attention_mask,
            timestamps, query_timestamps, target_item_ids, target_ratings, history_item_ids,
            history_reward_sums).
        batch_size: users per forward pass; bounds the (B, V+1) score memory.
        device: where the model inputs go; default: the model's device.
        show_progress: show a tqdm progress bar.

    Returns:
        `RankingPredictions` with (U,) tensors on CPU, in dataset order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else _model_device(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    was_training = model.training
    model.eval()
    try:
        parts: list[RankingPredictions] = []
        for batch in tqdm(loader, desc="ranking", disable=not show_progress):
            timestamps = batch.get(_TIMESTAMPS)
            query_timestamps = batch.get(_QUERY_TIMESTAMPS)
            scores = model.score_next_items(
                batch[_ITEM_IDS].to(device),
                batch[_ATTENTION_MASK].to(device),
                timestamps=timestamps.to(device) if timestamps is not None else None,
                query_timestamps=query_timestamps.to(device) if query_timestamps is not None else None,
            )  # (B, V+1)
            ranks = target_ranks(scores, batch[_TARGET_ITEM_IDS], batch[_HISTORY_ITEM_IDS])  # (B,)
            target_ratings = batch[_TARGET_RATINGS].to(torch.float32).cpu()  # (B,)
            parts.append(
                RankingPredictions(
                    ranks=ranks.cpu(),
                    target_ratings=target_ratings,
                    trajectory_rewards=batch[_HISTORY_REWARD_SUMS].to(torch.float32).cpu() + target_ratings,
                )
            )
    finally:
        model.train(was_training)
    predictions = RankingPredictions.concat(parts)
    logger.debug("ranked %d users", len(predictions))
    return predictions


def evaluate_ranking(
    model: torch.nn.Module,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    *,
    subsets: Sequence[str] = (SUBSET_ALL,),
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 256,
    high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Full-catalogue HR@k, NDCG@k and MRR of `model` on `dataset`, per subset.

    `predict_ranks` followed by `RankingPredictions.metrics`; returns `{subset: {metric: value,
    "num_users": n}}`. Use `flatten_metrics` for a flat, loggable dict.
    """
    predictions = predict_ranks(model, dataset, collator, batch_size=batch_size, device=device)
    return predictions.metrics(subsets=subsets, ks=ks, high_reward_threshold=high_reward_threshold)


def flatten_metrics(metrics_by_subset: dict[str, dict[str, float]], *, prefix: str = "") -> dict[str, float]:
    """Flatten `{subset: {metric: value}}` into loggable keys.

    The `all` subset keeps the bare metric name (`hr@10`); other subsets are namespaced
    (`high_reward_target/hr@10`). A non-empty `prefix` is joined with `/` (`prefix="ranking"` gives
    `ranking/hr@10`, the style-guide scheme; `Trainer` adds `eval_` itself).
    """
    flat: dict[str, float] = {}
    for subset, metrics in metrics_by_subset.items():
        for name, value in metrics.items():
            key = name if subset == SUBSET_ALL else f"{subset}/{name}"
            flat[f"{prefix}/{key}" if prefix else key] = value
    return flat
