"""Memory benchmark: peak resident memory of full `hf-genrec pretrain` runs, epoch by epoch.

For each recipe it runs `hf-genrec pretrain` for `--epochs` epochs in a subprocess (exactly what a user runs,
so the library's own heap settings apply), samples the child's resident set from `/proc/PID/status`, and
cuts the run into epochs at the moments a new `checkpoint-*` folder appears (the trainer saves one after
each epoch's evaluation). The per-epoch peak is read from the kernel's high-water mark `VmHWM`, which is
reset at every epoch boundary (`/proc/PID/clear_refs`), so short spikes between two samples still count.
Prints one table (recipe, epochs, peak RSS, peak RSS of each epoch, s/epoch) and optionally writes JSON.
It is a script, not a test; Linux only.

    hf-genrec prepare --input ../shared/data/ml-1m/ratings.dat.gz --format movielens \
        --catalog ../shared/data/ml-1m/movies.dat --output runs/ml1m-data
    OMP_NUM_THREADS=1 python benchmarks/memory.py --data runs/ml1m-data --epochs 10 --no-bf16 \
        recipes/movielens-1m/hstu.yaml recipes/movielens-1m/hstu-large.yaml

`--env KEY=VALUE` adds variables to the child's environment (e.g. `LD_PRELOAD=/path/libmimalloc.so` to
compare allocators). s/epoch includes the epoch's evaluation and checkpoint; the machine's other load
changes it, so compare timings measured back to back on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB ({} once it has exited)."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        return {}
    return values


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of `pid`; False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _checkpoints(output_dir: Path) -> set[str]:
    folder = output_dir / "checkpoints"
    return {path.name for path in folder.glob("checkpoint-*")} if folder.is_dir() else set()


def measure_run(
    recipe: str, data: str, epochs: int, output_dir: Path, extra_args: list[str], env: dict[str, str],
    interval: float = 0.2,
) -> dict:
    """Run one recipe in a subprocess and return its peak RSS, per-epoch peak RSS (MiB) and seconds."""
    command = [sys.executable, "-m", "hf_genrec.cli", "pretrain", "--data", data, "--recipe", recipe,
               "--epochs", str(epochs), "--output", str(output_dir), "--overwrite", *extra_args]
    log_path = output_dir.with_name(output_dir.name + ".log")
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        start = time.perf_counter()
        boundaries, epoch_peaks, seen = [start], [], set()
        exact = _reset_peak(child.pid)
        window_peak = run_peak = 0
        while child.poll() is None:
            status = _status_kib(child.pid)
            rss = status.get("VmRSS", 0)
            hwm = status.get("VmHWM", 0) if exact else rss
            window_peak = max(window_peak, rss, hwm)
            run_peak = max(run_peak, window_peak)
            new = _checkpoints(output_dir) - seen
            if new:  # an epoch (training, evaluation, checkpoint) just ended
                seen |= new
                boundaries.append(time.perf_counter())
                epoch_peaks.append(window_peak)
                print(f"{recipe}: epoch {len(epoch_peaks)} peak RSS {window_peak / 2**20:.2f} GiB, "
                      f"{boundaries[-1] - boundaries[-2]:.1f} s", file=sys.stderr, flush=True)
                exact = _reset_peak(child.pid)
                window_peak = 0
            time.sleep(interval)
    if child.returncode != 0:
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"`{' '.join(command)}` exited with {child.returncode}; its log ends with:\n{tail}")
    seconds = [b - a for a, b in zip(boundaries, boundaries[1:])]
    return {
        "recipe": recipe,
        "epochs": len(epoch_peaks),
        "peak_rss_mib": run_peak / 1024,
        "epoch_peak_rss_mib": [round(kib / 1024) for kib in epoch_peaks],
        # The first window also holds start-up (imports, data loading); report the later epochs' median.
        "seconds_per_epoch": sorted(seconds[1:] or seconds)[len(seconds[1:] or seconds) // 2] if seconds else None,
        "epoch_seconds": [round(s, 1) for s in seconds],
        "env": env,
    }


def _table(results: list[dict]) -> str:
    rows = ["| recipe | epochs | peak RSS (GiB) | peak RSS per epoch (GiB) | s/epoch |", "|---|---|---|---|---|"]
    for result in results:
        per_epoch = " ".join(f"{mib / 1024:.1f}" for mib in result["epoch_peak_rss_mib"])
        seconds = result["seconds_per_epoch"]
        rows.append(f"| {Path(result['recipe']).stem} | {result['epochs']} | {result['peak_rss_mib'] / 1024:.2f} "
                    f"| {per_epoch} | {'-' if seconds is None else f'{seconds:.1f}'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipes", nargs="+", help="Recipe YAML files (e.g. recipes/movielens-1m/hstu.yaml).")
    parser.add_argument("--data", required=True, help="Directory written by `hf-genrec prepare`.")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-bf16", action="store_true", help="Passed on to `hf-genrec pretrain`.")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="Extra environment variable of the runs (repeatable).")
    parser.add_argument("--interval", type=float, default=0.2, help="Seconds between RSS samples.")
    parser.add_argument("--workdir", default=None, help="Where the runs write (default: a temporary folder).")
    parser.add_argument("--output", default=None, help="Also write the results as JSON here.")
    args = parser.parse_args(argv)
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r} is not KEY=VALUE. Fix: write e.g. --env OMP_NUM_THREADS=1.")
    env = dict(item.split("=", 1) for item in args.env)
    extra = ["--no-bf16"] if args.no_bf16 else []
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        results = []
        for index, recipe in enumerate(args.recipes):
            output_dir = Path(workdir) / f"run-{index}-{Path(recipe).stem}"
            results.append(measure_run(recipe, args.data, args.epochs, output_dir, extra, env, args.interval))
            print(_table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(_table(results))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
