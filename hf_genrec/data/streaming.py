"""Streamed training data: a prepared folder's split as a `datasets.IterableDataset`, and length bucketing over a
stream.

A map-style split (`load_prepared`) lets the length-bucketed sampler see every row's length up front. A stream
yields rows one at a time from the Arrow files, so a trainer never holds more than a bounded buffer of them:
`stream_split` opens the split, `LengthBucketedStream` buckets it chunk by chunk with the sampler's own rule.

```python
>>> from hf_genrec.data.streaming import stream_split
>>> train = stream_split("runs/ml1m-data", "leave-one-out", num_shards=8)   # datasets.IterableDataset
>>> trainer = PretrainTrainer(model, args=PretrainConfig("out", max_steps=1000), train_dataset=train)
```

`GenRecTrainer` trains from such a stream (`max_steps` is then required: a stream has no length). Under several
processes every rank reads the stream and keeps its own per-device slice of each global batch (accelerate's
`IterableDatasetShard`), so the ranks see disjoint rows and train exactly as one process with the whole batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import IterableDataset

from .columns import ITEM_IDS
from .prepared import cached_split, check_prepared_dir, prepared_split_options
from .sampling import LengthBucketSampler

__all__ = ["LengthBucketedStream", "stream_split"]

# `LengthBucketedStream` seeds chunk k of an epoch with the epoch number plus k * this, so that chunk 0 takes the
# map-style sampler's exact order and no two (epoch, chunk) pairs share a shuffle (epochs stay below 2**32).
_CHUNK_SEED_STRIDE = 2**32


def stream_split(
    data_dir: str | os.PathLike,
    split: str = "leave-one-out",
    *,
    part: str = "train",
    num_shards: int = 1,
) -> IterableDataset:
    """One part of a prepared folder's split as a `datasets.IterableDataset` read from its Arrow files.

    The split is the one `load_prepared(data_dir, split)` returns (computed once, cached under `splits/` as
    memory-mapped Arrow files, `cached_split`); the stream reads its record batches lazily, one row at a time, so
    no Python list of the rows is ever built. Rows come in file order: call `.shuffle(seed, buffer_size)` on the
    result for a shuffled order (it shuffles the shards and a buffer of rows, and reshuffles every epoch).

    Args:
        data_dir: a folder written by `hf-genrec prepare` (a local one: a Hub dataset is split in memory).
        split: the split method, as `load_prepared` takes it (`leave-one-out`, `temporal`, `future`).
        part: which of the split's datasets to stream (`train`, `validation`, `test`).
        num_shards: contiguous pieces the rows are cut into; DataLoader workers each read whole shards, so keep it
            a multiple of `dataloader_num_workers`.

    Returns:
        A `datasets.IterableDataset` of rows with the split's columns (`item_ids`, `ratings`, `timestamps`, ...).
    """
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be a positive integer, got {num_shards!r}. Fix: pass 1 or more.")
    data_dir = check_prepared_dir(data_dir)
    splits = cached_split(data_dir, split, prepared_split_options(data_dir, split))
    if part not in splits:
        raise ValueError(f"part {part!r} is not in the {split!r} split, which has {sorted(splits)}. Fix: pass one "
                         "of those.")
    dataset = splits[part]
    # `to_iterable_dataset` cannot cut fewer rows into more shards than rows.
    return dataset.to_iterable_dataset(num_shards=max(1, min(num_shards, len(dataset))))


class LengthBucketedStream(torch.utils.data.IterableDataset):
    """Length bucketing over a stream: reads `batch_size * bucket_batches` rows at a time, in stream order, and
    yields each such chunk in the order `LengthBucketSampler` gives it (sorted by length into batches of similar
    length, the full batches shuffled, a short one last), so that memory holds one chunk, not the dataset.

    Chunk 0 of epoch e is ordered exactly as `LengthBucketSampler(lengths, batch_size, bucket_batches, seed)` at
    epoch e orders the same rows: a stream that fits in one chunk is batched as the map-style path batches it.

    Args:
        dataset: any iterable of rows (dicts with a list column `column`), e.g. `stream_split`'s result.
        batch_size: rows per bucketed batch: the global batch (per-device size x accumulation x processes), so
            that each rank's per-device slice of it holds rows of similar length.
        bucket_batches: batches sorted together per chunk (more = less padding, less randomness).
        seed: base seed of the shuffles.
        column: the list column whose length orders the rows.
    """

    def __init__(self, dataset: Any, batch_size: int, bucket_batches: int = 16, seed: int = 0,
                 column: str = ITEM_IDS):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        self.dataset = dataset
        self.batch_size = batch_size
        self.bucket_batches = max(1, bucket_batches)
        self.seed = seed
        self.column = column
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (Trainer calls this through the DataLoader), the wrapped stream included."""
        self.epoch = epoch
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        arrow = isinstance(self.dataset, IterableDataset)
        rows = self.dataset
        if arrow:
            # A `datasets` stream's chunk is kept as one Arrow table (a few buffers, outside the Python heap) and
            # decoded a batch at a time: a chunk of Python rows (thousands of list buffers malloc'ed between the
            # training step's temporaries, alive for `bucket_batches` steps) fragments the heap.
            rows = self.dataset.with_format("arrow")
            rows.set_epoch(self.epoch)  # `with_format` returns a copy at epoch 0
        chunk_size = self.batch_size * self.bucket_batches
        chunk: list[Any] = []
        index = 0
        for row in rows:
            chunk.append(row)
            if len(chunk) == chunk_size:
                yield from self._bucketed(chunk, index, arrow)
                chunk, index = [], index + 1
        if chunk:
            yield from self._bucketed(chunk, index, arrow)

    def _bucketed(self, chunk: list[Any], index: int, arrow: bool) -> Iterator[dict[str, Any]]:
        """The chunk's rows (dicts, or one-row Arrow tables when `arrow`) in bucketed order, as dicts."""
        if arrow:
            table = pa.concat_tables(chunk)
            lengths = pc.list_value_length(table.column(self.column)).to_numpy(zero_copy_only=False)
        else:
            lengths = np.fromiter((len(row[self.column]) for row in chunk), dtype=np.int64, count=len(chunk))
        sampler = LengthBucketSampler(lengths, self.batch_size, self.bucket_batches, seed=self.seed)
        sampler.set_epoch(self.epoch + index * _CHUNK_SEED_STRIDE)
        order = np.fromiter(sampler, dtype=np.int64, count=len(chunk))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            yield from table.take(batch).to_pylist() if arrow else (chunk[i] for i in batch)
