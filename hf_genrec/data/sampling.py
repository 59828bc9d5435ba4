"""Length-bucketed batch order: batches of similar-length sequences, so cropping each batch to its
longest sequence removes most padding (the B x N x N attention work grows with N squared)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow.compute as pc
from torch.utils.data import Sampler


def sequence_lengths(dataset, column: str = "item_ids") -> np.ndarray:
    """(num_rows,) lengths of a list column of a `datasets.Dataset`, read from Arrow without decoding rows."""
    table = dataset.with_format(None).data
    lengths = pc.list_value_length(table.column(column)).to_numpy(zero_copy_only=False)
    if dataset._indices is not None:  # a selected/shuffled view: map through its indices
        lengths = lengths[dataset._indices.column(0).to_numpy()]
    return np.asarray(lengths, dtype=np.int64)


class LengthBucketSampler(Sampler[int]):
    """Shuffles rows, then sorts them by length inside chunks of `batch_size * bucket_batches` rows and
    shuffles the resulting batches.

    The order depends only on `seed` and the epoch (`set_epoch`), so an interrupted run resumes with the
    same batches.

    Args:
        lengths: (num_rows,) sequence lengths.
        batch_size: rows per batch (the global batch: per-device size x accumulation x processes).
        bucket_batches: how many batches share one sorted chunk; larger = less padding, less randomness.
        seed: base seed of the shuffles.
    """

    def __init__(
        self, lengths: Sequence[int] | np.ndarray, batch_size: int, bucket_batches: int = 16, seed: int = 0
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.bucket_batches = max(1, bucket_batches)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths))
        chunk = self.batch_size * self.bucket_batches
        batches = []
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            part = part[np.argsort(-self.lengths[part], kind="stable")]
            batches.extend(part[i : i + self.batch_size] for i in range(0, len(part), self.batch_size))
        # Only the last chunk can end in a short batch; it goes last so that every other group of
        # `batch_size` consecutive indices is exactly one bucketed batch.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        for b in rng.permutation(len(full)):
            yield from (int(i) for i in full[b])
        for batch in short:
            yield from (int(i) for i in batch)


__all__ = ["LengthBucketSampler", "sequence_lengths"]
