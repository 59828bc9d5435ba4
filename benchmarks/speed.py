"""Speed benchmark: HSTU training and serving on MovieLens-1M shapes, side by side with a SASRec peer.

For each model (HSTU, HSTU-large, SASRec of the same size) it trains `--epochs` epochs on the same
length-bucketed batches of the prepared MovieLens-1M training split (history 200), and reports the median
over epochs of: seconds per epoch, events/s and sequences/s, the forward/backward split, and the achieved
GFLOP/s of the model's matrix work (counted with `torch.utils.flop_counter` on one full epoch) against this
machine's fp32 matmul rate, measured in the same run. Serving: latency and throughput of
`recommend(k=10)` over the full catalogue for batches of 1, 128 and 6,040 histories. Prints one table and
writes JSON. It is a script, not a test.

    hf-genrec prepare --input ../shared/data/ml-1m/ratings.dat.gz --output runs/ml1m-data
    python benchmarks/speed.py --data runs/ml1m-data --output runs/speed.json

Threads: `--threads` (default: all cores). The machine's other load changes every number here; run it
on an idle machine and compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sasrec import SASRec  # noqa: E402

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction  # noqa: E402
from hf_genrec.data import SequenceCollator  # noqa: E402
from hf_genrec.data.prepared import load_prepared  # noqa: E402
from hf_genrec.data.sampling import LengthBucketSampler, sequence_lengths  # noqa: E402
from hf_genrec.utils.io import peak_memory_mb  # noqa: E402
from hf_genrec.utils.runtime import keep_cpu_heap_warm  # noqa: E402

HSTU_SIZES = {
    "HSTU": dict(num_hidden_layers=2, num_attention_heads=1, attention_dim=50, linear_dim=50),
    "HSTU-large": dict(num_hidden_layers=8, num_attention_heads=2, attention_dim=25, linear_dim=25),
}
BATCH_SIZE = 128


def matmul_gflops(dtype: torch.dtype, size: int = 1024, repeats: int = 20) -> float:
    """Measured dense matmul rate of this machine, in GFLOP/s (best of `repeats`)."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def build_model(name: str, num_items: int, seed: int = 0):
    torch.manual_seed(seed)
    if name == "SASRec":
        return SASRec(num_items)
    return HSTUForNextItemPrediction(HSTUConfig(num_items=num_items, **HSTU_SIZES[name]))


def batches(train, epoch: int, seed: int = 0):
    sampler = LengthBucketSampler(sequence_lengths(train), BATCH_SIZE, seed=seed)
    sampler.set_epoch(epoch)
    return DataLoader(train, batch_size=BATCH_SIZE, sampler=sampler, collate_fn=SequenceCollator(max_seq_len=200))


def loss_of(model, batch) -> torch.Tensor:
    if isinstance(getattr(model, "_orig_mod", model), SASRec):  # torch.compile wraps the module
        return model(batch["item_ids"], batch["attention_mask"], batch["labels"])
    return model(batch["item_ids"], batch["attention_mask"], batch["timestamps"], batch["query_timestamps"],
                 labels=batch["labels"]).loss


def train_epoch(model, optimizer, loader, bf16: bool) -> dict[str, float]:
    model.train()
    forward_s = backward_s = 0.0
    events = sequences = 0
    start = time.perf_counter()
    for batch in loader:
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = loss_of(model, batch)
        t1 = time.perf_counter()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        forward_s += t1 - t0
        backward_s += t2 - t1
        events += int(batch["attention_mask"].sum())
        sequences += batch["item_ids"].shape[0]
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "forward_s": forward_s, "backward_s": backward_s,
            "events_per_s": events / seconds, "sequences_per_s": sequences / seconds}


def count_epoch_flops(model, loader, bf16: bool) -> float:
    """Matmul FLOPs of one training epoch (forward + backward), counted by torch."""
    counter = FlopCounterMode(display=False)
    with counter:
        for batch in loader:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = loss_of(model, batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


@torch.no_grad()
def serving(model: HSTUForNextItemPrediction, test, sizes=(1, 128, 6040), repeats: int = 3) -> dict[str, dict]:
    model.eval()
    collator = SequenceCollator(max_seq_len=200)
    results = {}
    for size in sizes:
        batch = collator([test[i] for i in range(min(size, len(test)))])
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model.recommend(batch["item_ids"], batch["attention_mask"], batch["timestamps"],
                            batch["query_timestamps"], k=10, exclude_item_ids=batch["history_item_ids"])
            times.append(time.perf_counter() - start)
        median = statistics.median(times[1:])  # the first call warms up
        results[str(size)] = {"latency_s": median, "histories_per_s": size / median}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="MovieLens-1M directory written by `hf-genrec prepare`.")
    parser.add_argument("--output", default="runs/speed.json", help="JSON output.")
    parser.add_argument("--epochs", type=int, default=3, help="Timed epochs per model (median reported).")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores).")
    parser.add_argument("--models", nargs="+", default=["SASRec", "HSTU", "HSTU-large"])
    parser.add_argument("--fp32", action="store_true", help="Train in fp32 instead of bf16 autocast.")
    parser.add_argument("--compile", action="store_true",
                        help="Train the models wrapped in torch.compile(dynamic=True) (what `torch_compile: true` in a "
                             "recipe does); the first, compiling epoch is reported separately as warm-up.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_cpu_heap_warm()
    bf16 = not args.fp32
    splits, vocabulary = load_prepared(args.data)
    train, test = splits["train"], splits["test"]

    machine = {"threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
               "matmul_fp32_gflops": matmul_gflops(torch.float32), "matmul_bf16_gflops": matmul_gflops(torch.bfloat16)}
    print(json.dumps(machine), flush=True)
    results = {"machine": machine, "bf16": bf16, "compile": args.compile, "models": {}}
    for name in args.models:
        model = build_model(name, vocabulary.num_items)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.0)
        flops = count_epoch_flops(model, batches(train, epoch=0), bf16)
        trained = torch.compile(model, dynamic=True) if args.compile else model
        warmup = train_epoch(trained, optimizer, batches(train, epoch=args.epochs + 1), bf16) if args.compile else None
        epochs = [train_epoch(trained, optimizer, batches(train, epoch=e + 1), bf16) for e in range(args.epochs)]
        median = {key: statistics.median(e[key] for e in epochs) for key in epochs[0]}
        row = {**median, "epoch_seconds_all": [e["seconds"] for e in epochs], "gflop_per_epoch": flops / 1e9,
               "achieved_gflops": flops / 1e9 / median["seconds"],
               "fraction_of_fp32_matmul": flops / 1e9 / median["seconds"] / machine["matmul_fp32_gflops"],
               "peak_memory_mb_so_far": peak_memory_mb()}
        if warmup is not None:
            row["compile_warmup_epoch_seconds"] = warmup["seconds"]
        if name != "SASRec":
            row["serving"] = serving(model, test)
        results["models"][name] = row
        print(name, json.dumps(row), flush=True)

    sasrec = results["models"].get("SASRec", {}).get("seconds")
    lines = ["| model | s/epoch (median) | vs SASRec | events/s | seq/s | fwd s | bwd s | GFLOP/epoch | GFLOP/s | "
             "% fp32 matmul | recommend@10 1 / 128 / 6040 (s) |", "|---|" + "---|" * 10]
    for name, row in results["models"].items():
        serve = row.get("serving")
        serve_cell = " / ".join(f"{serve[s]['latency_s']:.3f}" for s in ("1", "128", "6040")) if serve else "–"
        ratio = f"{row['seconds'] / sasrec:.2f}x" if sasrec else "–"
        lines.append(f"| {name} | {row['seconds']:.1f} | {ratio} | {row['events_per_s']:.0f} | {row['sequences_per_s']:.0f} "
                     f"| {row['forward_s']:.1f} | {row['backward_s']:.1f} | {row['gflop_per_epoch']:.0f} | "
                     f"{row['achieved_gflops']:.1f} | {100 * row['fraction_of_fp32_matmul']:.0f}% | {serve_cell} |")
    table = "\n".join(lines)
    print(f"\nmatmul 1024^2: fp32 {machine['matmul_fp32_gflops']:.0f} GFLOP/s, bf16 {machine['matmul_bf16_gflops']:.0f} "
          f"GFLOP/s on {machine['threads']} threads; training {'bf16 autocast' if bf16 else 'fp32'}\n")
    print(table)
    results["table"] = table
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"\nJSON written to {args.output}")


if __name__ == "__main__":
    main()
