"""The shape every training run shares, in one place.

A workflow (`pretrain`, `reward`, `posttrain`) is: recipe -> training config (recipe + overrides) -> output
folder check -> prepared data -> `recipe.yaml` -> seed -> model -> trainer -> train (or resume) -> evaluate
validation and test -> save -> report -> metrics JSON (+ Hub push). `RunOptions` holds the flags every run
takes; `TrainingRun` does every step that does not depend on the kind of run, so a workflow only says what
its model, trainer and report are.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from ..data import ItemVocabulary
from ..data.prepared import check_same_vocabulary, load_prepared
from ..data.vocabulary import VOCABULARY_FILE
from ..evaluation.metrics import RUNTIME, SUBSETS, strip_metric_prefix
from ..recipes import build_training_config
from ..trainers.base import last_complete_checkpoint
from ..utils.io import check_output_dir, peak_memory_mb, write_json

__all__ = [
    "CHECKPOINTS_DIR",
    "METRICS_FILE",
    "RECIPE_FILE",
    "EpochTimer",
    "RunOptions",
    "TrainingRun",
    "check_model_vocabulary",
    "finish_run",
    "is_main_process",
    "write_recipe",
]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"


@dataclasses.dataclass
class RunOptions:
    """The flags every training run takes, on top of its recipe (`hf-genrec pretrain/reward/posttrain`).

    `pretrain`, `reward` and `posttrain` accept these either as one `options=RunOptions(...)` object or as
    keyword arguments of the same names (`epochs=2, seed=1`); keywords win over `options`.

    Args:
        epochs: overrides the recipe's `num_train_epochs`.
        seed: overrides the recipe's `seed`.
        max_steps: overrides the recipe's `max_steps` (stop after this many optimiser steps).
        training_overrides: any other fields of the trainer's config (e.g. `{"bf16": False}`).
        overwrite: reuse an output folder that already holds a run.
        resume: continue from the newest complete checkpoint in `output_dir/checkpoints`.
        push_to_hub: a Hub repo id: upload the finished run folder (no checkpoints) there.
        hub_private: create that repo as private.
        hub_token: the Hub token (default: `HF_TOKEN` or the saved login).
        callbacks: extra `TrainerCallback`s for the trainer(s).
    """

    epochs: float | None = None
    seed: int | None = None
    max_steps: int | None = None
    training_overrides: dict[str, Any] | None = None
    overwrite: bool = False
    resume: bool = False
    push_to_hub: str | None = None
    hub_private: bool = False
    hub_token: str | bool | None = None
    callbacks: list[TrainerCallback] | None = None

    @classmethod
    def merge(cls, options: RunOptions | None, flags: dict[str, Any], *, caller: str) -> RunOptions:
        """`options` (or the defaults) with the keyword `flags` of `caller` set on top."""
        valid = [field.name for field in dataclasses.fields(cls)]
        unknown = [name for name in flags if name not in valid]
        if unknown:
            raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}; the run options are {valid}.")
        return dataclasses.replace(options or cls(), **flags)

    def training_values(
        self, recipe_training: dict[str, Any], *, implied: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A run's training config values, later sources winning: what the method implies, the recipe's
        `training` section, `training_overrides`, the caller's `overrides`, then `epochs`/`seed`/`max_steps`."""
        values = {**(implied or {}), **recipe_training, **(self.training_overrides or {}), **(overrides or {})}
        for name, value in (("num_train_epochs", self.epochs), ("seed", self.seed), ("max_steps", self.max_steps)):
            if value is not None:
                values[name] = value
        return values


def is_main_process() -> bool:
    """Rank 0 of a `torchrun` / `accelerate launch` job, or a plain single process."""
    return int(os.environ.get("RANK", "0")) == 0


def write_recipe(path: str | os.PathLike, recipe: dict[str, Any]) -> str:
    """Save the recipe a run actually used (overrides applied) so `--recipe path` reproduces it."""
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(recipe, f, sort_keys=False)
    return str(path)


def check_model_vocabulary(model_dir: str | os.PathLike, vocabulary: ItemVocabulary) -> bool:
    """Check that a saved model's vocabulary (if it has one) is the dataset's; return whether it has one."""
    if not (Path(model_dir) / VOCABULARY_FILE).is_file():
        return False
    check_same_vocabulary(ItemVocabulary.from_pretrained(model_dir), vocabulary, model_dir)
    return True


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


class TrainingRun:
    """One run folder in the making: the steps of a training workflow that do not depend on its kind.

    Only the main process checks the output folder and writes files, so every step runs unchanged under
    `torchrun` / `accelerate launch`.

    Args:
        command: the run's `hf-genrec` command line, for the Hub commit message (e.g. `"pretrain"`).
        output_dir: the run folder; checkpoints go to `output_dir/checkpoints`.
        options: the shared flags.
        metrics_file: the name of the run's metrics JSON.
    """

    def __init__(self, command: str, output_dir: str | os.PathLike, options: RunOptions,
                 metrics_file: str = METRICS_FILE):
        self.start = time.time()
        self.command = command
        self.output_dir = Path(output_dir)
        self.options = options
        self.metrics_file = metrics_file
        self.main_process = is_main_process()

    @property
    def callbacks(self) -> list[TrainerCallback]:
        """The caller's extra trainer callbacks (a new list; empty when none)."""
        return list(self.options.callbacks or [])

    def training_config(self, config_class: type, recipe: dict[str, Any], *, implied: dict[str, Any] | None = None,
                        overrides: dict[str, Any] | None = None, source: str = "recipe") -> tuple[Any, dict[str, Any]]:
        """(config, values): `config_class` built from the recipe and the flags (see `RunOptions.training_values`)
        with checkpoints under the run folder, and the values as `recipe.yaml` records them."""
        values = self.options.training_values(recipe["training"], implied=implied, overrides=overrides)
        args = build_training_config(config_class, {**values, "output_dir": str(self.output_dir / CHECKPOINTS_DIR)},
                                     source=source)
        return args, values

    def load_data(self, data_dir: str | os.PathLike, split: str, model_dir: str | os.PathLike | None = None):
        """Refuse an output folder that holds another run, then load the prepared data as (splits, vocabulary).

        A resumed run reuses its folder; other ranks skip the check, as they would see rank 0's fresh
        `checkpoints/`. With `model_dir`, a vocabulary saved there must be the dataset's.
        """
        if self.main_process and not self.options.resume:
            check_output_dir(self.output_dir, self.metrics_file, self.options.overwrite)
        splits, vocabulary = load_prepared(data_dir, split)
        if model_dir is not None:
            check_model_vocabulary(model_dir, vocabulary)
        return splits, vocabulary

    def write_recipe(self, recipe: dict[str, Any], training: dict[str, Any], *, model: dict[str, Any],
                     data: dict[str, Any], method: dict[str, Any]) -> None:
        """Write `recipe.yaml`: the recipe with every override applied, so `--recipe` reproduces the run."""
        if not self.main_process:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)  # a resumed run may not have created it
        used = {key: recipe[key] for key in ("description",) if key in recipe}
        used.update(model=model, training=training, data=data, method=method)
        write_recipe(self.output_dir / RECIPE_FILE, used)

    def train(self, trainer):
        """`trainer.train()`, from the newest complete checkpoint when resuming; returns its `TrainOutput`."""
        resume_from = None
        if self.options.resume:
            resume_from = last_complete_checkpoint(trainer.args.output_dir)
            if resume_from is None:
                logger.warning("--resume: no complete checkpoint in %s (set save_strategy to keep some); training "
                               "from scratch", trainer.args.output_dir)
        return trainer.train(resume_from_checkpoint=resume_from)

    @staticmethod
    def evaluate(trainer, splits, *, keep_runtime: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """(validation, test) ranking metrics on every subset, keyed without the split prefix.

        `keep_runtime=False` leaves out the evaluation's wall seconds (`runtime`).
        """
        trainer.args.eval_subsets = list(SUBSETS)
        results = []
        for split in ("validation", "test"):
            metrics = strip_metric_prefix(trainer.evaluate(splits[split], metric_key_prefix=split), split)
            if not keep_runtime:
                metrics.pop(RUNTIME, None)
            results.append(metrics)
        return results[0], results[1]

    def resources(self) -> dict[str, float]:
        """`total_runtime_s` (since the run started) and `peak_memory_mb`, as every report records them."""
        return {"total_runtime_s": round(time.time() - self.start, 1), "peak_memory_mb": round(peak_memory_mb(), 1)}

    def finish(self, report: dict[str, Any]) -> dict[str, Any]:
        """On the main process, write the metrics JSON and push the run to the Hub (`push_to_hub`); return `report`
        (plus `hub_commit_url` when pushed)."""
        if not self.main_process:
            return report
        return finish_run(self.output_dir, self.metrics_file, report, self.options.push_to_hub,
                          hub_private=self.options.hub_private, hub_token=self.options.hub_token,
                          commit_message=f"hf-genrec {self.command}: {self.output_dir.name}")
