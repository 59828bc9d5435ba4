"""Fixtures for the evaluation tests: a tiny inline collator producing the evaluation batch keys."""

from collections.abc import Callable
from typing import Any

import pytest
import torch


def _pad(rows: list[list[float]], dtype: torch.dtype) -> torch.Tensor:
    width = max(1, max(len(row) for row in rows))
    out = torch.zeros(len(rows), width, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out  # right-padded with 0


def make_eval_collate(max_seq_len: int) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """A stand-in for `SequenceCollator` on evaluation rows (the keys and shapes of the brief)."""

    def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        windows = [row["item_ids"][-max_seq_len:] for row in rows]
        times = [row["timestamps"][-max_seq_len:] for row in rows]
        # Query timestamp of a position = the next event's time; the last one is the target's.
        queries = [t[1:] + [row["target_timestamp"]] for t, row in zip(times, rows)]
        item_ids = _pad(windows, torch.long)
        return {
            "item_ids": item_ids,
            "attention_mask": (item_ids != 0).long(),
            "timestamps": _pad(times, torch.long),
            "query_timestamps": _pad(queries, torch.long),
            "ratings": _pad([row["ratings"][-max_seq_len:] for row in rows], torch.float32),
            "target_item_ids": torch.tensor([row["target_item_id"] for row in rows], dtype=torch.long),
            "target_ratings": torch.tensor([row["target_rating"] for row in rows], dtype=torch.float32),
            "target_timestamps": torch.tensor([row["target_timestamp"] for row in rows], dtype=torch.long),
            "history_item_ids": _pad([row["item_ids"] for row in rows], torch.long),
            "history_reward_sums": torch.tensor([float(sum(row["ratings"])) for row in rows]),
        }

    return collate


@pytest.fixture
def eval_collate() -> Callable[[int], Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]]:
    return make_eval_collate
