"""Scale benchmark: `prepare`, one training epoch and evaluation on synthetic logs of 1M, 5M and 20M events.

For each size it writes a MovieLens-format log with `generate_scale_log` (MovieLens-20M's shape: ~145 events per
user and 27k items at every size, so the number of users grows with the events; not timed), then

- runs `hf-genrec prepare` in a subprocess: wall seconds (start-up included, as a user sees it) and the child's
  peak RSS (`os.wait4`, the kernel's high-water mark for that one process);
- runs one HSTU training epoch (the recipe's model and training sections, fp32 as with `--no-bf16`) in a
  subprocess built from the same pieces as `hf-genrec pretrain` (`TrainingRun.training_config`, `load_data`,
  `PretrainTrainer`), with `--max-steps` optimiser steps: the epoch's time is the measured seconds per step times
  the steps of a full epoch (`ceil(train users / batch)`; the epoch itself when `--max-steps` covers it). Memory:
  the RSS once the splits are loaded (the first load of a freshly prepared folder: the split is computed and
  cached as memory-mapped Arrow files under `splits/`), then the peak RSS of training alone (the kernel's
  `VmHWM`, reset after loading), read when the steps end, before any evaluation, with the resident memory then
  split into anonymous (heap) and file-backed (memory-mapped data, which the kernel can drop) pages;
- evaluates (full-catalogue ranking, seen items excluded) the first `--eval-cases` users of the test split in the
  same subprocess, and extrapolates to the whole test split (the cost is linear in the cases);
- loads the splits again in a fresh subprocess (the cached splits are read, not computed): seconds and RSS.

Prints a markdown table and the slopes (least squares, seconds per million events), and writes JSON. The load
average is recorded beside each timing: on a shared machine the times are inflated, the memory is not.

    OMP_NUM_THREADS=2 python benchmarks/scale.py --sizes 1 5 20 --workdir /tmp/scale --output /tmp/scale/scale.json

`--skip-train` measures `prepare` only. `--streamed` trains from a stream of the split's Arrow files
(`hf_genrec.data.streaming.stream_split`, `--num-shards` shards, length-bucketed per chunk of the stream) instead of
the map-style split with its length-bucketed sampler; `--max-steps` then bounds the steps as well (a stream has no
length). The generated logs and prepared folders stay in `--workdir`; delete it after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

USERS_PER_MILLION = 6_900  # ~145 events per user, as MovieLens-20M (20.0M events, 138.5k users)
NUM_ITEMS = 27_000
DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "movielens-1m" / "hstu.yaml"


def _run_child(command: list[str], log_path: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GB, exit code) of one child process; its output goes to `log_path`."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1e6, child.returncode


def _write_log(size_m: int, workdir: Path, seed: int) -> Path:
    from hf_genrec.data.synthetic import generate_scale_log, write_movielens_file

    path = workdir / f"ratings-{size_m}M.dat"
    if not path.is_file():
        num_events = size_m * 1_000_000
        log = generate_scale_log(num_events, size_m * USERS_PER_MILLION, NUM_ITEMS, seed=seed)
        write_movielens_file(log, path)
    return path


def _prepare_startup(workdir: Path, seed: int) -> dict:
    """`hf-genrec prepare` of a tiny log: what every size pays before reading (imports, start-up)."""
    from hf_genrec.data.synthetic import generate_scale_log, write_movielens_file

    ratings = write_movielens_file(generate_scale_log(20_000, 1_000, NUM_ITEMS, seed=seed), workdir / "ratings-tiny.dat")
    seconds, peak_gb, _ = _run_child(["hf-genrec", "prepare", "--input", ratings, "--format", "movielens", "--output",
                                      str(workdir / "prepared-tiny"), "--overwrite"], workdir / "prepare-tiny.log")
    return {"prepare_s": round(seconds, 1), "prepare_peak_gb": round(peak_gb, 2), "load": os.getloadavg()[0]}


def _measure_size(size_m: int, args: argparse.Namespace) -> dict:
    workdir = Path(args.workdir)
    ratings = _write_log(size_m, workdir, args.seed)
    data_dir = workdir / f"prepared-{size_m}M"
    row = {"events_m": size_m, "load_before_prepare": os.getloadavg()[0]}
    seconds, peak_gb, code = _run_child(
        ["hf-genrec", "prepare", "--input", str(ratings), "--format", "movielens", "--output", str(data_dir),
         "--overwrite"], workdir / f"prepare-{size_m}M.log")
    if code != 0:
        raise RuntimeError(f"prepare of {ratings} failed; see {workdir / f'prepare-{size_m}M.log'}")
    manifest = json.loads((data_dir / "prepare.json").read_text())
    row.update(users=manifest["num_users"], items=manifest["num_items"], prepare_s=round(seconds, 1),
               prepare_peak_gb=round(peak_gb, 2), load_after_prepare=os.getloadavg()[0])
    if args.skip_train:
        return row
    result_path = workdir / f"train-{size_m}M.json"
    seconds, peak_gb, code = _run_child(
        [sys.executable, __file__, "--train-child", str(data_dir), str(result_path), "--recipe", args.recipe,
         "--max-steps", str(args.max_steps), "--eval-cases", str(args.eval_cases), "--num-shards", str(args.num_shards)]
        + (["--streamed"] if args.streamed else []),
        workdir / f"train-{size_m}M.log")
    if code != 0:
        raise RuntimeError(f"training on {data_dir} failed; see {workdir / f'train-{size_m}M.log'}")
    row.update(json.loads(result_path.read_text()), train_child_s=round(seconds, 1),
               train_child_peak_gb=round(peak_gb, 2), load_after_train=os.getloadavg()[0])
    reload_path = workdir / f"reload-{size_m}M.json"
    _, peak_gb, code = _run_child([sys.executable, __file__, "--load-child", str(data_dir), str(reload_path),
                                   "--recipe", args.recipe], workdir / f"reload-{size_m}M.log")
    if code != 0:
        raise RuntimeError(f"reloading {data_dir} failed; see {workdir / f'reload-{size_m}M.log'}")
    row.update(json.loads(reload_path.read_text()), reload_peak_gb=round(peak_gb, 2))
    return row


def _load_child(data_dir: str, result_path: str, recipe_path: str) -> None:
    """One process: load the prepared data's splits (from the cache the training child wrote), as a second run."""
    from hf_genrec.recipes import resolve_recipe
    from hf_genrec.utils.runtime import keep_cpu_heap_warm
    from hf_genrec.workflows.common import RunOptions, TrainingRun

    run = TrainingRun("pretrain", Path(result_path).with_suffix(""), RunOptions(overwrite=True))
    keep_cpu_heap_warm()
    start = time.perf_counter()
    run.load_data(data_dir, resolve_recipe(recipe_path)["data"].get("split", "leave-one-out"))
    Path(result_path).write_text(json.dumps({"reload_s": round(time.perf_counter() - start, 1),
                                             "reload_rss_gb": round(_proc_status_gb("VmRSS") or 0.0, 2)}))


class _StepClock(TrainerCallback):
    """When each optimiser step ends, and the peak RSS when the steps end (before any evaluation)."""

    def __init__(self):
        self.step_ends: list[float] = []
        self.peak_gb_after_steps = None
        self.training_hwm_gb = None
        self.rss_anon_gb = self.rss_file_gb = None

    def on_step_end(self, args, state, control, **kwargs):
        self.step_ends.append(time.perf_counter())

    def on_epoch_end(self, args, state, control, **kwargs):
        self.peak_gb_after_steps = _peak_gb()
        self.training_hwm_gb = _proc_status_gb("VmHWM")
        self.rss_anon_gb, self.rss_file_gb = _proc_status_gb("RssAnon"), _proc_status_gb("RssFile")


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def _proc_status_gb(key: str) -> float | None:
    """`VmRSS` (resident now) or `VmHWM` (peak since the last `_reset_peak`) of this process, in GB (Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1e6
    except OSError:
        pass
    return None


def _reset_peak() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so that training's peak is seen apart from loading's."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        pass


def _train_child(data_dir: str, result_path: str, recipe_path: str, max_steps: int, eval_cases: int,
                 streamed: bool = False, num_shards: int = 8) -> None:
    """One process: load the prepared data, train `max_steps` steps of the recipe's HSTU (from the map-style train
    split, or from a stream of its Arrow files), rank test cases."""
    from transformers import set_seed

    from hf_genrec.data import SequenceCollator
    from hf_genrec.data.streaming import stream_split
    from hf_genrec.models import HSTUConfig, HSTUForNextItemPrediction
    from hf_genrec.recipes import resolve_recipe
    from hf_genrec.trainers import PretrainConfig, PretrainTrainer
    from hf_genrec.utils.runtime import keep_cpu_heap_warm
    from hf_genrec.workflows.common import EpochTimer, RunOptions, TrainingRun

    output_dir = Path(result_path).with_suffix("")
    run = TrainingRun("pretrain", output_dir, RunOptions(
        epochs=1, max_steps=max_steps, overwrite=True,
        training_overrides={"bf16": False, "eval_strategy": "no", "save_strategy": "no",
                            "load_best_model_at_end": False, "early_stopping_patience": None}))
    keep_cpu_heap_warm()
    recipe = resolve_recipe(recipe_path)
    args, _ = run.training_config(PretrainConfig, recipe)
    start = time.perf_counter()
    split = recipe["data"].get("split", "leave-one-out")
    splits, vocabulary = run.load_data(data_dir, split)
    # The stream reads the same cached split files `load_data` just opened (memory-mapped, nothing read yet).
    train_dataset = stream_split(data_dir, split, num_shards=num_shards) if streamed else splits["train"]
    load_s, peak_gb_loaded, rss_gb_loaded = time.perf_counter() - start, _peak_gb(), _proc_status_gb("VmRSS")
    _reset_peak()
    epoch_steps = math.ceil(len(splits["train"]) / args.per_device_train_batch_size)
    args.max_steps = min(max_steps, epoch_steps)  # max_steps would otherwise run past the one epoch
    set_seed(args.seed)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **recipe["model"]))
    clock, timer = _StepClock(), EpochTimer()
    trainer = PretrainTrainer(model=model, args=args, data_collator=SequenceCollator(model.config.max_seq_len),
                              train_dataset=train_dataset, processing_class=vocabulary, callbacks=[timer, clock])
    trainer.train()
    steps = len(clock.step_ends)
    step_s = (clock.step_ends[-1] - clock.step_ends[0]) / max(steps - 1, 1)
    epoch_s = timer.seconds[0] if steps >= epoch_steps else step_s * epoch_steps
    test = splits["test"]
    cases = min(eval_cases, len(test))
    start = time.perf_counter()
    trainer.evaluate(test.select(range(cases)), metric_key_prefix="test")
    eval_subset_s = time.perf_counter() - start
    result = {
        "load_s": round(load_s, 1), "peak_gb_loaded": round(peak_gb_loaded, 2), "rss_gb_loaded": round(rss_gb_loaded or 0.0, 2),
        "train_users": len(splits["train"]), "train_data": "streamed" if streamed else "map-style",
        "steps_measured": steps, "epoch_steps": epoch_steps, "step_s": round(step_s, 3),
        "epoch_s": round(epoch_s, 1), "epoch_extrapolated": steps < epoch_steps,
        "train_peak_gb": round(clock.peak_gb_after_steps, 2), "training_only_peak_gb": round(clock.training_hwm_gb or 0.0, 2),
        "rss_anon_gb_after_steps": round(clock.rss_anon_gb or 0.0, 2),
        "rss_file_gb_after_steps": round(clock.rss_file_gb or 0.0, 2),
        "eval_cases": cases, "test_cases": len(test),
        "eval_s": round(eval_subset_s * len(test) / cases, 1), "eval_extrapolated": cases < len(test),
        "peak_gb_after_eval": round(_peak_gb(), 2),
    }
    Path(result_path).write_text(json.dumps(result, indent=2))


def _slope(rows: list[dict], key: str) -> float | None:
    """Least-squares seconds per million events of `key` over the sizes that have it."""
    points = [(row["events_m"], row[key]) for row in rows if row.get(key) is not None]
    if len(points) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def _print_table(rows: list[dict], startup: dict) -> None:
    print(f"`hf-genrec prepare` of a 20k-event log (start-up and fixed cost): {startup['prepare_s']} s, "
          f"{startup['prepare_peak_gb']} GB")
    print("| events | users | prepare s (load avg) | prepare peak GB | first load: s / RSS GB | second load: s / RSS GB "
          "| epoch s (load avg) | training-only peak GB | RSS anon / file GB after steps | eval s | steps timed / epoch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        split = reload = train = rss = "—"
        if "epoch_s" in row:
            split = f"{row['load_s']} / {row['rss_gb_loaded']:.2f}"
            reload = f"{row['reload_s']} / {row['reload_rss_gb']:.2f}"
            train = f"{row['epoch_s']} ({row['load_after_train']:.1f})"
            rss = f"{row['rss_anon_gb_after_steps']:.2f} / {row['rss_file_gb_after_steps']:.2f}"
        data = " streamed" if row.get("train_data") == "streamed" else ""
        print(f"| {row['events_m']}M{data} | {row['users']} | {row['prepare_s']} ({row['load_after_prepare']:.1f}) | "
              f"{row['prepare_peak_gb']} | {split} | {reload} | {train} | {row.get('training_only_peak_gb', '—')} | "
              f"{rss} | {row.get('eval_s', '—')} | {row.get('steps_measured', '—')} / {row.get('epoch_steps', '—')} |")
    for key in ("prepare_s", "prepare_peak_gb", "epoch_s", "eval_s", "training_only_peak_gb"):
        slope = _slope(rows, key)
        if slope is not None:
            unit = "GB" if key.endswith("_gb") else "s"
            print(f"slope of {key}: {slope:.2f} {unit} per million events")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 5, 20], help="Millions of events.")
    parser.add_argument("--workdir", default="/tmp/scale")
    parser.add_argument("--output", help="JSON file for the rows.")
    parser.add_argument("--recipe", default=str(DEFAULT_RECIPE))
    parser.add_argument("--max-steps", type=int, default=30, help="Optimiser steps timed (an epoch is extrapolated).")
    parser.add_argument("--eval-cases", type=int, default=2048, help="Test users ranked (the rest extrapolated).")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--streamed", action="store_true", help="Train from a stream of the split's Arrow files.")
    parser.add_argument("--num-shards", type=int, default=8, help="Shards of the stream (with --streamed).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-child", nargs=2, metavar=("DATA", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--load-child", nargs=2, metavar=("DATA", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_child:
        _train_child(*args.train_child, args.recipe, args.max_steps, args.eval_cases, args.streamed, args.num_shards)
        return
    if args.load_child:
        _load_child(*args.load_child, args.recipe)
        return
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    startup = _prepare_startup(Path(args.workdir), args.seed)
    rows = []
    for size_m in args.sizes:
        rows.append(_measure_size(size_m, args))
        print(json.dumps(rows[-1]), flush=True)
    _print_table(rows, startup)
    if args.output:
        Path(args.output).write_text(json.dumps(
            {"rows": rows, "prepare_startup": startup, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}, indent=2))


if __name__ == "__main__":
    main()
