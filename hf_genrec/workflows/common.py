"""What every training run shares: the files of a run folder, the main-process check, the epoch timer and
the end of a run (metrics JSON, optional Hub push)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from ..utils.io import write_json

__all__ = ["CHECKPOINTS_DIR", "METRICS_FILE", "RECIPE_FILE", "EpochTimer", "finish_run", "is_main_process",
           "write_recipe"]

METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"


def is_main_process() -> bool:
    """Rank 0 of a `torchrun` / `accelerate launch` job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def write_recipe(path: str | os.PathLike, recipe: dict[str, Any]) -> str:
    """Save the recipe a run actually used (overrides applied) so `--recipe path` reproduces it."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)
    return str(path)


class EpochTimer(TrainerCallback):
    """Wall seconds of each training epoch, evaluation excluded."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = None

    def on_epoch_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.seconds.append(time.perf_counter() - self._start)


def finish_run(
    output_dir: Path,
    metrics_file: str,
    report: dict[str, Any],
    push_to_hub: str | None,
    *,
    hub_private: bool,
    hub_token: str | bool | None,
    commit_message: str,
) -> dict[str, Any]:
    """Write a run's metrics JSON, then push the run directory to the Hub when a repo id is given.

    Returns `report`, plus `hub_commit_url` when pushed.
    """
    write_json(output_dir / metrics_file, report)
    if push_to_hub:
        from ..hub import push_run_to_hub

        commit = push_run_to_hub(output_dir, push_to_hub, private=hub_private, token=hub_token,
                                 commit_message=commit_message)
        report = {**report, "hub_commit_url": commit.commit_url}
    return report
