"""The shape every training run shares, in one place.

A workflow (`pretrain`, `reward`, `posttrain`) is: recipe -> training config (recipe + overrides) -> output
folder check -> prepared data -> seed -> model -> trainer -> resume check -> (`--overwrite`: the earlier run's
files deleted) `recipe.yaml` -> train (or resume) -> evaluate validation and test -> save -> report -> metrics
JSON (+ Hub push). `RunOptions` holds the flags every run takes; `TrainingRun` does every step that does not
depend on the kind of run, so a workflow only says what its model, trainer and report are.

Every checkpoint's marker holds the run's fingerprint (`GenRecTrainer.run_fingerprint`: the config, the recipe's
model/data/method sections, digests of the prepared data and of the models the run starts from, the hf_genrec
version, the seed); `--resume` continues only from a checkpoint whose fingerprint is this run's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from transformers import TrainerCallback

from ..data import ItemVocabulary
from ..data.prepared import (
    SPLITS_CACHE_DIR,
    check_same_vocabulary,
    load_prepared,
    load_prepared_from_hub,
    parse_hf_dataset_path,
    prepared_dataset_name,
)
from ..data.vocabulary import VOCABULARY_FILE
from ..evaluation.evaluator import dataset_subsets
from ..evaluation.metrics import RUNTIME, metric_key, strip_metric_prefix
from ..recipes import build_training_config
from ..trainers.base import checkpoint_fingerprint, last_complete_checkpoint
from ..utils.io import check_output_dir, output_dir_lock, peak_memory_mb, write_json
from ..utils.runtime import bound_onednn_caches

__all__ = [
    "CHECKPOINTS_DIR",
    "METRICS_FILE",
    "RECIPE_FILE",
    "RUN_FILES",
    "EpochTimer",
    "RunOptions",
    "TrainingRun",
    "best_epoch",
    "check_model_vocabulary",
    "check_resumable",
    "clear_run_folder",
    "resumable_checkpoint",
    "finish_run",
    "input_digest",
    "is_main_process",
    "write_recipe",
]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
RECIPE_FILE = "recipe.yaml"
CHECKPOINTS_DIR = "checkpoints"
# What a training run writes at the top of its folder (shell patterns): the model (`config.json`, weights, extra
# heads `<head>.safetensors`, `adapter/`, `training_args.bin`), a reward ensemble (`member-k/`, `ensemble.json`),
# the vocabulary, the card, the recipe, the metrics, checkpoints, and the temporary files of atomic writes.
# `--overwrite` deletes only these, and refuses a folder that holds anything else.
RUN_FILES = (
    CHECKPOINTS_DIR, RECIPE_FILE, "metrics.json", "reward_metrics.json", "README.md", "config.json",
    "generation_config.json", "*.safetensors", "model.safetensors.index.json", "training_args.bin", "adapter",
    "item_vocabulary.json", "ensemble.json", "member-[0-9]*", "*.json.tmp",
)
# Files only a training run leaves: a folder without any of them is not known to be one, and is not emptied.
RUN_MARKERS = (CHECKPOINTS_DIR, RECIPE_FILE, "metrics.json", "reward_metrics.json", "ensemble.json")
# Files of a model or data folder that do not hold what training reads from it (reports, paths, the datasets
# library's bookkeeping): left out of its digest, so a report rewritten or data prepared from a moved file
# keep it.
DIGEST_IGNORED = frozenset({
    RECIPE_FILE, "metrics.json", "reward_metrics.json", "README.md", "training_args.bin", "prepare.json",
    "state.json", "dataset_info.json",
})
DIGEST_SUFFIXES = (".arrow", ".safetensors", ".json", ".bin")


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
        overwrite: start over in an output folder that holds an earlier hf_genrec run: its files (`RUN_FILES`)
            are deleted before the new run writes any; a folder holding anything else is refused.
        resume: continue from the newest complete checkpoint in `output_dir/checkpoints`, which must have been
            written by a run with this run's fingerprint (recipe, flags, data, base models, version, seed).
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


def best_epoch(trainer) -> float | None:
    """The epoch (fractional with step-wise evaluation) at which training reached its best checkpoint, from the
    log history; `None` without one."""
    best_step = trainer.state.best_global_step
    for entry in trainer.state.log_history:
        if entry.get("step") == best_step and "epoch" in entry:
            return entry["epoch"]
    return None


def logged_validation(trainer, validation, *, expected) -> dict[str, Any] | None:
    """The validation metrics training logged for the weights `trainer.model` holds now, or `None`.

    Ranking the validation split again would give the same numbers (same weights, evaluation mode, same batches),
    so a run reports the logged ones instead of paying for another pass. They are used only when: training
    evaluated `validation` itself (its `eval_dataset`), at the step whose weights the model holds (the best
    checkpoint's with `load_best_model_at_end`, else the last step's), and that evaluation has exactly the
    `expected` metric names (the same subsets as the final evaluation).
    """
    if trainer.eval_dataset is not validation:
        return None
    state = trainer.state
    step = state.best_global_step if trainer.args.load_best_model_at_end else state.global_step
    head = metric_key("", prefix="eval")
    for entry in reversed(state.log_history):
        if entry.get("step") == step and any(key.startswith(head) for key in entry):
            metrics = strip_metric_prefix(entry, "eval")
            return metrics if metrics.keys() == set(expected) else None
    return None


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


def _digest_files(folder: Path) -> list[Path]:
    """The files of `folder` that `input_digest` reads, in a fixed order."""
    found = []
    for root, dirs, files in os.walk(folder):
        # Checkpoints and the split caches `load_prepared` writes are derived, not input.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in (CHECKPOINTS_DIR, SPLITS_CACHE_DIR))
        found += [Path(root) / name for name in sorted(files) if not name.startswith(".")
                  and name.endswith(DIGEST_SUFFIXES) and name not in DIGEST_IGNORED]
    return found


def input_digest(source: Any) -> str:
    """What identifies a run's input in its fingerprint.

    A local folder (prepared data, a model, a reward ensemble): `sha256:` of its data files (`DIGEST_SUFFIXES`,
    without `DIGEST_IGNORED`, hidden files and `checkpoints/`) and their paths inside it. A Hub repo id: `hub:`
    and the id. An in-memory module: `sha256:` of its state. Any other object: `object:` and its class.
    """
    digest = hashlib.sha256()
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            return f"hub:{source}"
        for path in _digest_files(folder):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
        return f"sha256:{digest.hexdigest()}"
    if callable(getattr(source, "state_dict", None)):
        for name, tensor in source.state_dict().items():
            digest.update(name.encode() + b"\0" + tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return f"sha256:{digest.hexdigest()}"
    return f"object:{type(source).__module__}.{type(source).__qualname__}"


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"training": {"learning_rate": 0.1}}` -> `{"training.learning_rate": 0.1}`."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if text.startswith("sha256:"):
        return text[:19] + "…"
    return text if len(text) <= 60 else text[:57] + "..."


def resumable_checkpoint(trainer) -> str | None:
    """The newest complete checkpoint under `trainer.args.output_dir`, checked to have been written by this run
    (`check_resumable` against `trainer.run_fingerprint()`), or `None` when there is none."""
    checkpoint = last_complete_checkpoint(trainer.args.output_dir)
    if checkpoint is not None:
        check_resumable(checkpoint, trainer.run_fingerprint())
    return checkpoint


def check_resumable(checkpoint: str | os.PathLike, fingerprint: dict[str, Any]) -> None:
    """Refuse to resume a run with `fingerprint` from `checkpoint` unless the checkpoint's marker holds the same.

    Raises:
        ValueError: the checkpoint has no fingerprint (written before they existed), or another one; the message
            names every value that differs, the checkpoint's and this run's.
    """
    name = Path(checkpoint).name
    stored = checkpoint_fingerprint(checkpoint)
    if stored is None:
        raise ValueError(
            f"--resume: {name} in {str(Path(checkpoint).parent)!r} holds no run fingerprint (an hf_genrec older than "
            "the one that records them wrote it), so nothing shows it was written by this run's recipe and data. "
            "Fix: start over with --overwrite, or resume with the hf_genrec version that wrote it."
        )
    theirs, ours = _flatten(stored), _flatten(fingerprint)
    differ = [key for key in [*theirs, *(k for k in ours if k not in theirs)] if theirs.get(key) != ours.get(key)]
    if differ:
        unset = "(unset)"
        shown = differ[:6]
        more = f" (and {len(differ) - len(shown)} more)" if len(differ) > len(shown) else ""
        raise ValueError(
            f"--resume: {name} was written by a run with "
            + ", ".join(f"{key}={_shown(theirs.get(key, unset))}" for key in shown)
            + "; this run has " + ", ".join(f"{key}={_shown(ours.get(key, unset))}" for key in shown) + more
            + ". Fix: resume with that run's recipe, flags and data, or start over with --overwrite."
        )


def _run_entries(output_dir: Path) -> list[str]:
    """The entries of an existing `output_dir` that an hf_genrec run may delete when overwriting it.

    Raises:
        FileExistsError: `output_dir` is a file, holds an entry that no run writes, or holds run-like files
            but none that only a run leaves (`RUN_MARKERS`).
    """
    if not output_dir.exists():
        return []
    if not output_dir.is_dir():
        raise FileExistsError(f"--output {str(output_dir)!r} is a file, not a folder. Fix: choose another --output.")
    entries = sorted(os.listdir(output_dir))
    foreign = [name for name in entries if not any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)]
    if foreign:
        raise FileExistsError(
            f"--overwrite: {str(output_dir)!r} holds files an hf_genrec run does not write ({foreign[:5]}), so "
            "nothing was deleted. Fix: move them away, or choose another --output."
        )
    if entries and not any(name in RUN_MARKERS for name in entries):
        raise FileExistsError(
            f"--overwrite: {str(output_dir)!r} holds {entries[:5]} but none of {list(RUN_MARKERS)}, so it is not "
            "known to be an hf_genrec run folder and nothing was deleted. Fix: choose another --output."
        )
    return entries


def clear_run_folder(output_dir: str | os.PathLike) -> list[str]:
    """Delete the files of an earlier hf_genrec run in `output_dir` (`--overwrite`); return the names deleted.

    Refuses (`FileExistsError`, deleting nothing) a folder that holds anything a run does not write.
    """
    output_dir = Path(output_dir)
    entries = _run_entries(output_dir)
    for name in entries:
        path = output_dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return entries


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
    write_json(output_dir / metrics_file, report, allow_nan=True)  # a metric over no users is NaN
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


# The flag that names each input of a run, for messages.
INPUT_FLAGS = {"prepared_data": "--data", "base_model": "--model", "reward_model": "--reward-model"}


class TrainingRun:
    """One run folder in the making: the steps of a training workflow that do not depend on its kind.

    Only the main process checks the output folder and writes files, so every step runs unchanged under
    `torchrun` / `accelerate launch`. Nothing is written (or, with `overwrite`, deleted) before `train`: a run
    that fails on its inputs leaves the folder as it was.

    Args:
        command: the run's `hf-genrec` command line, for the Hub commit message (e.g. `"pretrain"`).
        output_dir: the run folder; checkpoints go to `output_dir/checkpoints`.
        options: the shared flags.
        metrics_file: the name of the run's metrics JSON.
    """

    def __init__(self, command: str, output_dir: str | os.PathLike, options: RunOptions,
                 metrics_file: str = METRICS_FILE):
        if options.resume and options.overwrite:
            raise ValueError("--resume and --overwrite contradict each other: --overwrite starts over and deletes the "
                             "checkpoints --resume would continue from. Fix: pass only one of them.")
        # Before any model is built: oneDNN and ideep read their cache capacities at the first (bf16) matmul.
        bound_onednn_caches()
        self.start = time.time()
        self.command = command
        self.output_dir = Path(output_dir)
        self.options = options
        self.metrics_file = metrics_file
        self.main_process = is_main_process()
        # What determines the result besides the trainer's config (see `describe`, `add_input`).
        self.identity: dict[str, Any] = {"run": command}
        self.inputs: dict[str, str] = {}
        self._recipe: dict[str, Any] | None = None
        self._writing = False
        # What the model card names as the training data (`load_data`): a Hub dataset's repo id, or the folder's input.
        self.dataset_name: str | None = None

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

    def add_input(self, role: str, source: Any) -> None:
        """Record an input of the run (`prepared_data`, `base_model`, `reward_model`) by its `input_digest`.

        Raises:
            ValueError: the run folder is that input's folder or inside it (the run would write into, or with
                `--overwrite` delete, its own input, and change the input's digest while it trains).
        """
        if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
            here, there = self.output_dir.resolve(), Path(source).resolve()
            if here == there or there in here.parents:
                where = "is" if here == there else "is inside"
                raise ValueError(f"--output {str(self.output_dir)!r} {where} the {INPUT_FLAGS.get(role, role)} folder "
                                 f"{str(source)!r}; the run would write into its own input. Fix: choose another --output.")
        self.inputs[role] = input_digest(source)

    def load_data(self, data_dir: str | os.PathLike, split: str, model_dir: str | os.PathLike | None = None):
        """Refuse an output folder that holds another run, then load the prepared data as (splits, vocabulary).

        `data_dir` is a folder written by `hf-genrec prepare`, or a dataset repo it pushed, as
        `hf://datasets/REPO[@REVISION]` (`--dataset_name`). A resumed run reuses its folder; with `overwrite`, the
        folder may hold an earlier run's files (they are deleted when training starts) and nothing else. Other
        ranks skip the check, as they would see rank 0's fresh `checkpoints/`. With `model_dir`, a vocabulary saved
        there must be the dataset's. The data (a Hub dataset by its repo id and the commit read) and the model are
        recorded as the run's inputs (`add_input`).
        """
        if self.main_process and not self.options.resume:
            if self.options.overwrite:
                _run_entries(self.output_dir)
            else:
                check_output_dir(self.output_dir, self.metrics_file, False)
        hub = parse_hf_dataset_path(data_dir)
        if hub is not None:
            splits, vocabulary, commit = load_prepared_from_hub(hub[0], split, revision=hub[1],
                                                                token=self.options.hub_token)
            # A branch moves: the commit read, not the revision asked for, identifies the data.
            self.inputs["prepared_data"] = f"hub:datasets/{hub[0]}@{commit}"
        else:
            splits, vocabulary = load_prepared(data_dir, split)
            self.add_input("prepared_data", data_dir)
        self.dataset_name = prepared_dataset_name(data_dir)
        if model_dir is not None:
            check_model_vocabulary(model_dir, vocabulary)
            self.add_input("base_model", model_dir)
        return splits, vocabulary

    def describe(self, recipe: dict[str, Any], training: dict[str, Any], *, model: dict[str, Any],
                 data: dict[str, Any], method: dict[str, Any], write_recipe: bool = True, **identity: Any) -> None:
        """Record what the run is: the recipe's sections as used (with `write_recipe`, `train` writes them as
        `recipe.yaml`, the recipe with every override applied, so `--recipe` reproduces the run) and, in
        `identity`, anything else that determines the result (e.g. `lora_r`). All of it is in the fingerprint."""
        self.identity.update(model=model, data=data, method=method, **identity)
        if write_recipe:
            used = {key: recipe[key] for key in ("description",) if key in recipe}
            used.update(model=model, training=training, data=data, method=method)
            self._recipe = used

    @contextlib.contextmanager
    def lock(self):
        """Hold the run folder's lock (`output_dir_lock`) for the block, on the main process: a second run writing
        the same folder at the same time fails at once with `OutputDirBusyError`, naming the folder."""
        with output_dir_lock(self.output_dir) if self.main_process else contextlib.nullcontext():
            yield self

    def train(self, trainer):
        """`trainer.train()`, from the newest complete checkpoint when resuming; returns its `TrainOutput`.

        The trainer gets the run's identity (stored with its fingerprint in every checkpoint marker). A resume
        checks the checkpoint's fingerprint first (`check_resumable`); then, on the first call, the earlier run's
        files are deleted (`overwrite`) and `recipe.yaml` is written, as training is about to start.
        """
        trainer.run_identity = {**self.identity, "inputs": dict(self.inputs)}
        if getattr(trainer, "dataset_name", None) is None:  # for the model card
            trainer.dataset_name = self.dataset_name
        resume_from = self._resume_checkpoint(trainer) if self.options.resume else None
        self._start_writing()
        return trainer.train(resume_from_checkpoint=resume_from)

    def _resume_checkpoint(self, trainer) -> str | None:
        """The checkpoint a resumed `trainer` continues from (checked to be this run's), or `None` to start over
        in a folder without one (refused when the folder holds a finished run)."""
        resume_from = resumable_checkpoint(trainer)
        if resume_from is not None:
            return resume_from
        if (self.output_dir / self.metrics_file).is_file():
            raise FileExistsError(
                f"--resume: {str(self.output_dir)!r} holds a finished run ({self.metrics_file}) but no complete "
                f"checkpoint in {trainer.args.output_dir} to continue from. Fix: pass --overwrite to start over, or "
                "choose another --output."
            )
        logger.warning("--resume: no complete checkpoint in %s (set save_strategy to keep some); training "
                       "from scratch", trainer.args.output_dir)
        return None

    def _start_writing(self) -> None:
        """Once, on the main process, as training starts: delete an overwritten run's files, write `recipe.yaml`."""
        if not self.main_process or self._writing:
            return
        self._writing = True
        if self.options.overwrite:
            deleted = clear_run_folder(self.output_dir)
            if deleted:
                logger.info("--overwrite: deleted the earlier run's %s from %s", deleted, self.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self._recipe is not None:
            write_recipe(self.output_dir / RECIPE_FILE, self._recipe)

    @staticmethod
    def evaluate(trainer, splits, *, keep_runtime: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """(validation, test) ranking metrics on every subset, keyed without the split prefix.

        The validation metrics are those training logged for the weights the model holds now, when training
        evaluated the validation split on the same subsets at that step (`logged_validation`); otherwise the
        split is ranked again. `keep_runtime=False` leaves out the evaluations' wall seconds (`runtime`).
        """
        trainer.args.eval_subsets = list(dataset_subsets(splits["test"]))
        test = strip_metric_prefix(trainer.evaluate(splits["test"], metric_key_prefix="test"), "test")
        validation = logged_validation(trainer, splits["validation"], expected=test.keys())
        if validation is None:
            validation = strip_metric_prefix(trainer.evaluate(splits["validation"], metric_key_prefix="validation"),
                                             "validation")
        if not keep_runtime:
            for metrics in (validation, test):
                metrics.pop(RUNTIME, None)
        return validation, test

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
