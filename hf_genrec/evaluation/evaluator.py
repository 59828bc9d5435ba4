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

from ..data.columns import (
    HISTORY_ITEM_IDS,
    HISTORY_REWARD_SUMS,
    TARGET_ITEM_IDS,
    TARGET_RATINGS,
    WINDOW_POSITIONS,
    WINDOW_REWARD,
    WINDOW_REWARDS,
)
from ..data.history import History
from ..utils.runtime import warm_cpu_heap
from .metrics import DEFAULT_HIGH_REWARD_THRESHOLD, DEFAULT_KS, SUBSET_ALL, default_subsets, metric_key
from .ranking import per_user_ranking_metrics, ranking_metrics, subset_mask, target_ranks

__all__ = [
    "RankingPredictions",
    "dataset_subsets",
    "evaluate_ranking",
    "flatten_metrics",
    "predict_ranks",
    "rank_batch",
]

logger = logging.getLogger(__name__)


@dataclass
class RankingPredictions:
    """Per-case outcome of a ranking pass, kept so metrics, subsets and bootstrap intervals need no rerun.

    Attributes:
        ranks: (U,) int64, 1-based rank of each case's target (`target_ranks`, history excluded).
        target_ratings: (U,) float32, rating of each case's target.
        history_rewards: (U,) float32, the sum of the case's history ratings plus its target rating (the
            `long_history` score).
        window_rewards: (U,) float32, the case's user's accumulated reward over its test window (rows of the
            `future` split); NaN on rows without a window. Default: no windows.
        window_positions: (U,) int64, the case's position in its user's window (0..H-1); -1 without a window.

    Cases are in dataset order, so predictions of two models on the same dataset are aligned per case
    (what a paired bootstrap needs). Every field is a tensor, so `tensors()` can be gathered across processes.
    """

    ranks: torch.Tensor
    target_ratings: torch.Tensor
    history_rewards: torch.Tensor
    window_rewards: torch.Tensor | None = None
    window_positions: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.window_rewards is None:
            self.window_rewards = torch.full_like(self.target_ratings, float("nan"), dtype=torch.float32)
        if self.window_positions is None:
            self.window_positions = torch.full_like(self.ranks, -1, dtype=torch.long)
        shapes = [tuple(tensor.shape) for tensor in self.tensors()]
        if self.ranks.dim() != 1 or len(set(shapes)) != 1:
            raise ValueError(
                "ranks, target_ratings, history_rewards, window_rewards and window_positions must all be (U,), "
                f"got shapes {shapes}"
            )
        windowed = self.window_positions >= 0
        if windowed.any() and not windowed.all():
            raise ValueError(
                f"{int(windowed.sum())} of {windowed.numel()} cases have a test window: the predictions mix rows of "
                "the `future` split with rows of another split. Fix: evaluate each split's rows separately."
            )

    def __len__(self) -> int:
        return self.ranks.numel()

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The fields in order, so `RankingPredictions(*predictions.tensors())` rebuilds the predictions."""
        return self.ranks, self.target_ratings, self.history_rewards, self.window_rewards, self.window_positions

    @property
    def has_windows(self) -> bool:
        """Whether the cases come from test windows (the `future` split), so trajectory subsets are defined."""
        return bool(len(self)) and bool((self.window_positions >= 0).all())

    def default_subsets(self) -> tuple[str, ...]:
        """The subsets reported on these cases (`hf_genrec.evaluation.metrics.default_subsets`)."""
        return default_subsets(self.has_windows)

    def reorder(self, index: torch.Tensor) -> "RankingPredictions":
        """The cases in the order `index` (e.g. the inverse of a length sort)."""
        return RankingPredictions(*(tensor[index] for tensor in self.tensors()))

    def cpu(self) -> "RankingPredictions":
        """The same predictions with every tensor on the CPU."""
        return RankingPredictions(*(tensor.cpu() for tensor in self.tensors()))

    @classmethod
    def concat(cls, predictions: Sequence["RankingPredictions"]) -> "RankingPredictions":
        """Concatenate predictions along cases, in the given order (empty input gives zero cases)."""
        if not predictions:
            return cls(ranks=torch.zeros(0, dtype=torch.long), target_ratings=torch.zeros(0),
                       history_rewards=torch.zeros(0))
        return cls(*(torch.cat(parts) for parts in zip(*(p.tensors() for p in predictions))))

    def subset_mask(
        self, subset: str, high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD
    ) -> torch.Tensor:
        """(U,) bool mask of the cases in `subset` (see `hf_genrec.evaluation.ranking.subset_mask`); the
        trajectory subsets raise on cases without a test window."""
        # No cases: every subset is empty, whatever the split.
        windows = (self.window_rewards, self.window_positions) if self.has_windows or not len(self) else (None, None)
        return subset_mask(subset, self.target_ratings, self.history_rewards, high_reward_threshold, *windows)

    def metrics(
        self,
        subsets: Sequence[str] = (SUBSET_ALL,),
        ks: Sequence[int] = DEFAULT_KS,
        high_reward_threshold: float = DEFAULT_HIGH_REWARD_THRESHOLD,
    ) -> dict[str, dict[str, float]]:
        """`{subset: {metric: mean value, ..., "num_users": n}}` (see `ranking_metrics`).

        The `long_history` median is taken over all cases of these predictions, the `high_reward_trajectory`
        median and the quartiles over all their users, never over another subset.
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


def rank_batch(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], history: History | None = None
) -> tuple[RankingPredictions, torch.Tensor]:
    """Rank each evaluation case's target over the full catalogue, the case's full history excluded.

    The one place where targets are ranked: `predict_ranks`, `GenRecTrainer.predict_ranks` and the
    benchmark's policy evaluation all call it per batch.

    Args:
        model: any module with `score_next_items(item_ids, attention_mask, timestamps=, query_timestamps=)`
            returning (B, V + 1) scores (column 0 is padding).
        batch: an evaluation batch of `SequenceCollator` (`target_item_ids`, `target_ratings`,
            `history_item_ids`, `history_reward_sums`, the history columns, and `window_rewards`,
            `window_positions` for rows of the `future` split), on the model's device.
        history: what the model reads, when it differs from the batch's history columns (e.g. a shorter
            window of them); default `History.from_batch(batch)`.

    Returns:
        The batch's `RankingPredictions` (on the device of the batch) and the (B, V + 1) fp32 scores.
    """
    history = History.from_batch(batch) if history is None else history
    scores = model.score_next_items(**history.model_inputs()).float()  # (B, V + 1)
    target_ratings = batch[TARGET_RATINGS].float()  # (B,)
    predictions = RankingPredictions(
        ranks=target_ranks(scores, batch[TARGET_ITEM_IDS], batch[HISTORY_ITEM_IDS]),
        target_ratings=target_ratings,
        history_rewards=batch[HISTORY_REWARD_SUMS].float() + target_ratings,
        # Only rows of the `future` split carry a test window (see `SequenceCollator`).
        window_rewards=batch[WINDOW_REWARDS].float() if WINDOW_REWARDS in batch else None,
        window_positions=batch[WINDOW_POSITIONS].long() if WINDOW_POSITIONS in batch else None,
    )
    return predictions, scores


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
        with warm_cpu_heap():  # the same large temporaries every batch: no mmap / page faults for each
            for batch in tqdm(loader, desc="ranking", disable=not show_progress):
                batch = {key: value.to(device) for key, value in batch.items()}
                predictions, _ = rank_batch(model, batch)
                parts.append(predictions.cpu())
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


def dataset_subsets(dataset: Any) -> tuple[str, ...]:
    """The subsets reported on an evaluation dataset: with the `future` split's window columns, the trajectory
    subsets; without (leave-one-out, temporal), `long_history` instead (see `default_subsets`)."""
    return default_subsets(WINDOW_REWARD in getattr(dataset, "column_names", ()))


def flatten_metrics(metrics_by_subset: dict[str, dict[str, float]], *, prefix: str = "") -> dict[str, float]:
    """Flatten `{subset: {metric: value}}` into loggable keys, each built by `metric_key`.

    The `all` subset keeps the bare metric name (`hr@10`); other subsets are namespaced
    (`high_reward_target/hr@10`). A non-empty `prefix` is a `Trainer.evaluate` `metric_key_prefix`, joined
    with `_` (`prefix="eval"` gives `eval_hr@10` and `eval_high_reward_target/hr@10`).
    """
    return {
        metric_key(name, subset, prefix): value
        for subset, metrics in metrics_by_subset.items()
        for name, value in metrics.items()
    }
