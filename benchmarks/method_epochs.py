"""Seconds per training epoch of every method on a prepared dataset, beside pretraining's.

Each method trains for `--steps` optimizer steps with its MovieLens-1M recipe (`recipes/movielens-1m/*.yaml`: the
same batch size, precision and method settings as a real run; sampling included for DPO/IPO/PPO), and its epoch time
is extrapolated: the mean seconds of a training step after the first (timed by a callback from step begin to step
end, so evaluation and checkpoints are left out) × steps per epoch (training rows / batch size). Post-training starts from `--pretrained` (or from the short pretraining run itself: timings do not depend
on quality) with the reward ensemble `--reward-model` (or a one-member ensemble trained here for `--steps` steps).
Prints one table; compare rows measured in the same run, on an idle machine.

    python benchmarks/method_epochs.py --data runs/ml1m-data --steps 10 --output runs/method-epochs.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

from hf_genrec.data.prepared import load_prepared
from hf_genrec.recipes import load_recipe
from hf_genrec.workflows import posttrain, pretrain, reward
from hf_genrec.workflows.posttrain import METHODS

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "movielens-1m"


class StepTimer(TrainerCallback):
    """Wall and process CPU seconds of each optimizer step (data loading, forward, backward, optimizer; no
    evaluation or saving). CPU seconds (all threads of this process) move less than wall seconds when other jobs
    share the cores; run with one thread (`OMP_NUM_THREADS=1`) for a CPU-time ratio free of spin-waiting."""

    def __init__(self):
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)


def epoch_row(name: str, timer: StepTimer, batch_size: int, train_rows: int) -> dict[str, float]:
    """Seconds per epoch from the mean of the steps after the first (which pays one-off warm-up costs)."""
    steps, cpu_steps = timer.seconds[1:] or timer.seconds, timer.cpu_seconds[1:] or timer.cpu_seconds
    steps_per_epoch = math.ceil(train_rows / batch_size)
    per_step, cpu_per_step = sum(steps) / len(steps), sum(cpu_steps) / len(cpu_steps)
    timer.seconds, timer.cpu_seconds = [], []
    return {"method": name, "steps_timed": len(steps), "s_per_step": per_step, "steps_per_epoch": steps_per_epoch,
            "s_per_epoch": per_step * steps_per_epoch, "cpu_s_per_epoch": cpu_per_step * steps_per_epoch}


def batch_size(recipe: str) -> int:
    return int(load_recipe(RECIPES / recipe)["training"].get("per_device_train_batch_size", 128))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="Folder written by `hf-genrec prepare`.")
    parser.add_argument("--steps", type=int, default=10, help="Optimizer steps timed per method.")
    parser.add_argument("--pretrained", default=None, help="Pretrained model to post-train (default: the short run).")
    parser.add_argument("--reward-model", default=None, help="Reward ensemble (default: one member trained here).")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-bf16", action="store_true", help="fp32 even where the recipes ask for bf16.")
    parser.add_argument("--output", default=None, help="JSON file for the table.")
    args = parser.parse_args()

    splits, _ = load_prepared(args.data)
    train_rows = len(splits["train"])
    overrides = {"bf16": False} if args.no_bf16 else None
    rows, timer = [], StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        pretrain(args.data, root / "pretrain", recipe=RECIPES / "hstu.yaml", max_steps=args.steps,
                 training_overrides=overrides, callbacks=[timer])
        rows.append(epoch_row("pretrain (hstu.yaml)", timer, batch_size("hstu.yaml"), train_rows))
        pretrained = args.pretrained or str(root / "pretrain")
        reward_model = args.reward_model
        if reward_model is None:
            reward(args.data, pretrained, root / "reward", ensemble_size=1, recipe=RECIPES / "reward.yaml",
                   max_steps=args.steps, training_overrides=overrides, callbacks=[timer])
            rows.append(epoch_row("reward model (1 member)", timer, batch_size("reward.yaml"), train_rows))
            reward_model = str(root / "reward")
        for method in args.methods:
            posttrain(args.data, pretrained, root / method, method=method, reward_model=reward_model,
                      recipe=RECIPES / f"{method}.yaml", max_steps=args.steps, evaluate=False,
                      training_overrides=overrides, callbacks=[timer])
            rows.append(epoch_row(method, timer, batch_size(f"{method}.yaml"), train_rows))
            print(f"{method}: {rows[-1]['s_per_epoch']:.1f} s/epoch", flush=True)
    base = rows[0]["s_per_epoch"]
    print(f"\n{train_rows} training rows; {args.steps} steps timed per method\n")
    cpu_base = rows[0]["cpu_s_per_epoch"]
    print("| method | s/step | steps/epoch | s/epoch | vs pretraining | CPU s/epoch | CPU vs pretraining |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['method']} | {row['s_per_step']:.2f} | {row['steps_per_epoch']} | {row['s_per_epoch']:.1f} | "
              f"{row['s_per_epoch'] / base:.2f}× | {row['cpu_s_per_epoch']:.1f} | "
              f"{row['cpu_s_per_epoch'] / cpu_base:.2f}× |")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
