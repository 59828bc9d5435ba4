"""Heap trace of a pretraining run, epoch by epoch: what the process keeps live, and what it keeps resident.

Runs `hf_genrec.workflows.pretrain` in this process with a callback that, at every optimizer step's end, reads the
C heap's live bytes (glibc `mallinfo2`: blocks handed out and not freed), the resident set, and the kernel's peak
resident set since the previous step (`VmHWM`, reset after each step). Live bytes that grow from epoch to epoch are
caches or leaks (in bf16 on CPU: oneDNN's and ideep's per-shape matmul caches, see `bound_onednn_caches`); a
resident set that grows while the live bytes stay flat is heap fragmentation. Steps whose resident set fell by more
than `--trim-mib` since the previous step of the same epoch are counted as the heap guard's trims (`CpuHeapGuard`;
an estimate: a smaller trim is not counted). Prints one row per epoch. Linux with glibc >= 2.33.

    OMP_NUM_THREADS=2 python benchmarks/heap_trace.py --data runs/ml1m-data \
        --recipe recipes/movielens-1m/hstu-large.yaml --epochs 12
    LRU_CACHE_CAPACITY=1024 python benchmarks/heap_trace.py ...   # ideep's default cache, for comparison

Variables the library would set (`ONEDNN_PRIMITIVE_CACHE_CAPACITY`, `LRU_CACHE_CAPACITY`) can be given in the
environment to compare settings; the trained weights do not depend on them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import _reset_peak, _status_kib  # noqa: E402  (the /proc readers of benchmarks/memory.py)

from hf_genrec.utils.runtime import cpu_heap_in_use_bytes, resident_memory_bytes  # noqa: E402
from hf_genrec.workflows import pretrain  # noqa: E402

MIB = 1 << 20


class HeapTrace(TrainerCallback):
    """Per step: live heap bytes, resident bytes and peak resident bytes since the previous step."""

    def __init__(self, trim_bytes: int):
        self.trim_bytes = trim_bytes
        self.rows: list[dict] = []
        self._step_start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        resident = resident_memory_bytes()
        epoch = int(state.epoch - 1e-9) if state.epoch else 0  # the epoch this step belongs to, from 0
        # A drop since the previous step of the same epoch (epoch ends and evaluations trim the heap themselves).
        same_epoch = bool(self.rows) and self.rows[-1]["epoch"] == epoch
        self.rows.append({
            "epoch": epoch,
            "seconds": time.perf_counter() - self._step_start,
            "live": cpu_heap_in_use_bytes(),
            "resident": resident,
            "peak": _status_kib(os.getpid())["VmHWM"] * 1024,
            "trimmed": same_epoch and self.rows[-1]["resident"] - resident > self.trim_bytes,
        })
        _reset_peak(os.getpid())


def epoch_table(rows: list[dict]) -> str:
    """One markdown row per epoch: live heap at its last step, steps that trimmed, peak RSS, slowest step."""
    lines = ["| epoch | steps | live heap at end (MiB) | trims (RSS drops) | peak RSS (GiB) | slowest step (s) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for epoch in sorted({row["epoch"] for row in rows}):
        steps = [row for row in rows if row["epoch"] == epoch]
        lines.append(f"| {epoch + 1} | {len(steps)} | {steps[-1]['live'] / MIB:.0f} | "
                     f"{sum(row['trimmed'] for row in steps)} | {max(row['peak'] for row in steps) / 1024 / MIB:.2f} | "
                     f"{max(row['seconds'] for row in steps):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="Directory written by `hf-genrec prepare`.")
    parser.add_argument("--recipe", required=True, help="Recipe YAML (e.g. recipes/movielens-1m/hstu-large.yaml).")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--no-bf16", action="store_true", help="fp32 even where the recipe asks for bf16.")
    parser.add_argument("--trim-mib", type=int, default=256, help="An RSS drop larger than this counts as a trim.")
    args = parser.parse_args(argv)
    if cpu_heap_in_use_bytes() is None or resident_memory_bytes() is None:
        parser.error("this benchmark reads glibc's mallinfo2 and /proc: it needs Linux with glibc >= 2.33.")
    trace = HeapTrace(args.trim_mib * MIB)
    overrides = {"bf16": False} if args.no_bf16 else {}
    with tempfile.TemporaryDirectory() as output_dir:
        pretrain(args.data, output_dir, recipe=args.recipe, epochs=args.epochs, overwrite=True,
                 training_overrides=overrides, callbacks=[trace])
    print(epoch_table(trace.rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
