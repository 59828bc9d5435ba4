"""What a sequence model reads about a batch of histories, and the one rule for the time of each query.

`History` bundles the model inputs of right-padded histories (`item_ids`, `attention_mask`, `timestamps`,
`query_timestamps`). Every stage that hands histories to a model (collator, trainers, reward ensembles,
evaluation, the judge rollout, the serving pipeline) passes a `History` (or `**history.model_inputs()`),
so a new per-event feature column is added here, in the collator and in the model's `forward`, and
nowhere else.

`query_timestamps` is the one implementation of the query-time rule: position i asks about the time of
event i + 1; the last real position asks about the request time (the time of the event being predicted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .columns import ATTENTION_MASK, ITEM_IDS, QUERY_TIMESTAMPS, TIMESTAMPS

__all__ = ["HISTORY_FIELDS", "History", "query_timestamps"]

# The batch keys a `History` is made of, in the order model methods take them positionally.
HISTORY_FIELDS: tuple[str, ...] = (ITEM_IDS, ATTENTION_MASK, TIMESTAMPS, QUERY_TIMESTAMPS)


def query_timestamps(
    timestamps: torch.Tensor, attention_mask: torch.Tensor, request_timestamps: torch.Tensor | None = None
) -> torch.Tensor:
    """The time each position of right-padded histories asks about.

    Position i is asked about the time of event i + 1 (known when the request is served: it is the request's
    time). The last real position has no next event in the input: it asks about `request_timestamps` (the
    time of the request being served, or of the held-out target), or, without them, about its own time.
    Padding positions get 0.

    Args:
        timestamps: (B, N) event times in seconds, 0 on padding.
        attention_mask: (B, N) 1 on real positions (right-padded).
        request_timestamps: (B,) time of the request served after each history, optional.

    Returns:
        (B, N) query times, same dtype as `timestamps`.
    """
    real = attention_mask.bool()  # (B, N)
    following = torch.cat([timestamps[:, 1:], timestamps[:, -1:]], dim=1)  # (B, N): event i + 1
    next_is_real = torch.cat([real[:, 1:], torch.zeros_like(real[:, :1])], dim=1)  # (B, N)
    queries = torch.where(next_is_real, following, timestamps)  # last real position: its own time
    if request_timestamps is not None:
        last = real & ~next_is_real  # (B, N) the last real position of each row
        queries = torch.where(last, request_timestamps.to(timestamps.dtype)[:, None], queries)
    return queries * real.to(timestamps.dtype)


@dataclass
class History:
    """Right-padded histories as a model reads them. Shapes: B rows, N positions.

    Attributes:
        item_ids: (B, N) int64 item indices, oldest first, 0 on padding.
        attention_mask: (B, N) int64, 1 on real events; default `item_ids != 0`.
        timestamps: (B, N) int64 event times in seconds, or None (the model then skips its time features).
        query_timestamps: (B, N) int64 time each position asks about (see `query_timestamps`), or None
            (the model then derives it from `timestamps`).
    """

    item_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None
    timestamps: torch.Tensor | None = None
    query_timestamps: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.item_ids.dim() != 2:
            raise ValueError(f"item_ids must be (batch, length), got shape {tuple(self.item_ids.shape)}.")
        if self.attention_mask is None:
            self.attention_mask = (self.item_ids != 0).long()
        for name in HISTORY_FIELDS[1:]:
            value = getattr(self, name)
            if value is not None and value.shape != self.item_ids.shape:
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)} but item_ids has {tuple(self.item_ids.shape)}; "
                    "every history column must hold one entry per position."
                )

    @classmethod
    def from_arguments(
        cls,
        item_ids: torch.Tensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        query_timestamps: torch.Tensor | None = None,
    ) -> History:
        """The histories a method taking either a `History` or its four columns was given, as a `History`."""
        if isinstance(item_ids, History):
            if attention_mask is not None or timestamps is not None or query_timestamps is not None:
                raise ValueError(
                    "got a History and separate history columns; pass one or the other (with a History, pass "
                    "candidate_item_ids / labels by name)."
                )
            return item_ids
        return cls(item_ids, attention_mask, timestamps, query_timestamps)

    @classmethod
    def from_batch(cls, batch: Mapping[str, Any]) -> History:
        """The history columns of a collated batch (`SequenceCollator` output); other keys are ignored."""
        if isinstance(batch, History):
            return batch
        return cls(**{name: batch.get(name) for name in HISTORY_FIELDS})

    @classmethod
    def from_events(
        cls,
        item_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        timestamps: torch.Tensor | None = None,
        request_timestamps: torch.Tensor | None = None,
    ) -> History:
        """Histories whose query times follow the rule of `query_timestamps` (none without `timestamps`)."""
        queries = None if timestamps is None else query_timestamps(timestamps, attention_mask, request_timestamps)
        return cls(item_ids, attention_mask, timestamps, queries)

    @property
    def batch_size(self) -> int:
        return self.item_ids.shape[0]

    def __len__(self) -> int:
        return self.batch_size

    def model_inputs(self) -> dict[str, torch.Tensor | None]:
        """Keyword arguments of the model's forward and scoring methods."""
        return {name: getattr(self, name) for name in HISTORY_FIELDS}

    def _map(self, function) -> History:
        values = {name: getattr(self, name) for name in HISTORY_FIELDS}
        return History(**{name: None if value is None else function(value) for name, value in values.items()})

    def to(self, device: torch.device | str) -> History:
        """The same histories on `device`."""
        return self._map(lambda tensor: tensor.to(device))

    def select(self, rows: torch.Tensor) -> History:
        """The rows `rows` (an index or bool tensor over B)."""
        return self._map(lambda tensor: tensor[rows])

    def crop(self, width: int) -> History:
        """The first `width` positions (dropping trailing padding changes nothing under a causal mask)."""
        return self._map(lambda tensor: tensor[:, :width])

    def prefixes(self, rows: torch.Tensor, positions: torch.Tensor) -> History:
        """The prefixes of histories `rows` that end at `positions` ((C,) each): C right-padded histories of
        width max(positions) + 1 whose last real position is the given one.

        Each position keeps its query time, so the last one asks about the time of the logged next event
        (the rule of `query_timestamps`, applied to the full histories when they carry none).
        """
        width = int(positions.max().item()) + 1 if positions.numel() else 1
        keep = torch.arange(width, device=positions.device)[None, :] <= positions[:, None]  # (C, width)
        full = self
        if self.timestamps is not None and self.query_timestamps is None:
            full = self.replace(query_timestamps=query_timestamps(self.timestamps, self.attention_mask))
        cropped = full.select(rows).crop(width)._map(lambda tensor: tensor * keep)
        return cropped.replace(attention_mask=keep.long())

    def replace(self, **changes: torch.Tensor | None) -> History:
        """A copy with some columns replaced."""
        return dataclasses.replace(self, **changes)
