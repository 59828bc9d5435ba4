"""Whole-process time and memory of `hf-genrec pretrain` against the plain PyTorch yardstick, in one run.

Runs, alternately and `--repeats` times each, the same work as two separate processes:

- ours: `hf-genrec pretrain --data DIR --recipe recipes/movielens-1m/hstu.yaml --epochs E` (per-epoch validation,
  the selected epoch's test pass, the model and reports written);
- the yardstick: `hstu_yardstick.py --epochs E` (per-epoch validation and test passes), with the heap settings
  its docstring gives,

and prints a table of wall seconds, CPU seconds, peak RSS and seconds per training epoch, with the ratio of the
medians. Both use the same thread count and precision (fp32 unless `--bf16`; on a CPU without bf16
instructions hf_genrec trains in fp32 whatever the recipe says, so compare fp32 there). Other load on the
machine changes every number: compare ratios measured in the same run, on an idle machine.

    python benchmarks/whole_process.py --data runs/ml1m-data --ratings-dir ../shared/data/ml-1m \
        --yardstick ../shared/tools/hstu_yardstick.py --epochs 2 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YARDSTICK_HEAP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}


def run_timed(command: list[str], env: dict[str, str]) -> dict[str, float | str]:
    """Run `command`; its wall and CPU seconds (user + system), peak RSS (MB) and output (`os.wait4` gives the
    resource use of this one child)."""
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}):\n{output[-3000:]}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024,
            "output": output}


def ours(args: argparse.Namespace, env: dict[str, str], output: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "hf_genrec.cli", "pretrain", "--data", args.data, "--recipe",
               str(ROOT / args.recipe), "--epochs", str(args.epochs), "--output", str(output), "--overwrite"]
    if not args.bf16:
        command.append("--no-bf16")
    result = run_timed(command, env)
    metrics = json.loads((output / "metrics.json").read_text())
    return {**result, "epoch_s": metrics["seconds_per_epoch"], "test_hr@10": metrics["test"]["hr@10"]}


def yardstick(args: argparse.Namespace, env: dict[str, str]) -> dict[str, float]:
    command = [sys.executable, args.yardstick, "--epochs", str(args.epochs), "--bf16", "2" if args.bf16 else "0",
               "--threads", str(args.threads), "--data", args.ratings_dir]
    if args.recipe.endswith("hstu-large.yaml"):
        command += ["--cfg", "hstu-large"]
    result = run_timed(command, {**env, **YARDSTICK_HEAP})
    epochs = [float(s) for s in re.findall(r"^ep \d+ train ([\d.]+)s", result["output"], flags=re.M)]
    tests = re.findall(r"test hr10 ([\d.]+)", result["output"])
    return {**result, "epoch_s": statistics.median(epochs), "test_hr@10": float(tests[-1]) if tests else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Folder written by `hf-genrec prepare` (MovieLens-1M).")
    parser.add_argument("--ratings-dir", required=True, help="Folder with ratings.dat.gz and movies.dat, for the "
                        "yardstick (e.g. ../shared/data/ml-1m).")
    parser.add_argument("--yardstick", required=True, help="Path of hstu_yardstick.py.")
    parser.add_argument("--recipe", default="recipes/movielens-1m/hstu.yaml", help="hstu.yaml or hstu-large.yaml.")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in both (CPUs with bf16 instructions).")
    parser.add_argument("--output", default=None, help="JSON file for every measurement.")
    args = parser.parse_args()

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    runs: dict[str, list[dict]] = {"hf_genrec": [], "yardstick": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            runs["yardstick"].append(yardstick(args, env))
            runs["hf_genrec"].append(ours(args, env, Path(scratch) / f"run{repeat}"))
            print(f"repeat {repeat}: " + ", ".join(f"{name} {rows[-1]['wall_s']:.1f} s" for name, rows in runs.items()),
                  flush=True)
    columns = ("wall_s", "cpu_s", "peak_rss_mb", "epoch_s", "test_hr@10")
    medians = {name: {c: statistics.median(r[c] for r in rows) for c in columns} for name, rows in runs.items()}
    load = os.getloadavg()[0]
    print(f"\n{args.recipe}, {args.epochs} epochs, {args.threads} threads, {'bf16' if args.bf16 else 'fp32'}, "
          f"median of {args.repeats}; load average at the end {load:.2f}\n")
    print("| process | wall s | CPU s | peak RSS MB | s/epoch (train) | test HR@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in medians.items():
        print(f"| {name} | {row['wall_s']:.1f} | {row['cpu_s']:.1f} | {row['peak_rss_mb']:.0f} | {row['epoch_s']:.1f} | "
              f"{row['test_hr@10']:.4f} |")
    ratio = {c: medians["hf_genrec"][c] / medians["yardstick"][c] for c in ("wall_s", "cpu_s", "peak_rss_mb", "epoch_s")}
    print(f"| ratio hf_genrec / yardstick | {ratio['wall_s']:.2f} | {ratio['cpu_s']:.2f} | {ratio['peak_rss_mb']:.2f} | "
          f"{ratio['epoch_s']:.2f} | |")
    if args.output:
        for rows in runs.values():
            for row in rows:
                row.pop("output", None)
        Path(args.output).write_text(json.dumps({"args": vars(args), "runs": runs, "medians": medians,
                                                 "ratio": ratio, "load_average": load}, indent=2))


if __name__ == "__main__":
    main()
