"""Resumable stages: a stage is a function whose directory is named by a hash of its inputs.

A stage is one unit of work of the benchmark (prepare, pretrain, a reward ensemble, one post-training run,
one evaluation): a plain function declared with `@stage(name)` that writes under the directory it is given
and returns a JSON-serialisable summary. `StageStore.run(function, **inputs)` calls it with `inputs` and
derives the stage key from those same inputs (SHA-256 of their canonical JSON), where

- a `Stage` input (the result of an upstream stage) contributes its name and key, and reaches the function
  as the path of its output;
- a `Given` input (a file or model from outside the store) contributes its path and content fingerprint,
  and reaches the function as its path;
- any other input contributes its value.

So:

- re-running with the same inputs finds `stages/<name>-<key>/stage.json` and skips the work;
- changing an input changes the key of the stage that takes it and, through the upstream keys, of every
  stage downstream of it, and only those are recomputed (the old directories stay, unused);
- a stage interrupted half-way has a directory but no marker: it is wiped and rerun.

The marker `stage.json` is written atomically (temporary file + `os.replace`) after the stage's outputs, so
its presence means the outputs are complete.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils.io import write_json

logger = logging.getLogger(__name__)

__all__ = ["MARKER", "Given", "Stage", "StageStore", "file_fingerprint", "freeze_long_lived_objects", "model_fingerprint",
           "stage", "stage_key", "stage_seconds"]

MARKER = "stage.json"
KEY_LENGTH = 12
# Whether this process has frozen its long-lived objects (`freeze_long_lived_objects`).
_FROZEN = False


def freeze_long_lived_objects() -> bool:
    """Once per process, before the first stage runs: collect the garbage, then move every object still alive into
    the garbage collector's permanent generation (`gc.freeze`); returns whether it froze them now.

    Every training run starts with a full collection (`Trainer.train` calls accelerate's `free_memory`), which walks
    every object the collector tracks: about 0.2 s on 2 CPU cores for the ~420k objects of the imported libraries
    alone, 15-25% of a post-training or reward stage on Amazon Musical Instruments (docs/performance.md). What is
    alive before the first stage (modules, classes, the run's settings) lives as long as the process, so the later
    collections skip it. The garbage is collected first, so none of it is kept; an object frozen here that later
    becomes part of a reference cycle is never reclaimed, which for the run's settings costs nothing.
    """
    global _FROZEN
    if _FROZEN:
        return False
    gc.collect()
    gc.freeze()
    _FROZEN = True
    return True


def _canonical(value: Any) -> Any:
    """JSON-able form of `value`: tuples as lists, paths as strings, stages and given files by identity."""
    if isinstance(value, Stage):
        return f"{value.name}-{value.key}"
    if isinstance(value, Given):
        return {"path": str(value.path), "fingerprint": value.fingerprint}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def stage_key(inputs: dict[str, Any]) -> str:
    """The first 12 hex digits of the SHA-256 of `inputs` as canonical JSON (sorted keys)."""
    text = json.dumps(_canonical(inputs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_LENGTH]


def file_fingerprint(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (or, for a directory, of its files' relative paths and contents)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    if not files:
        raise FileNotFoundError(f"{str(path)!r} does not exist or holds no files.")
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_fingerprint(directory: str | os.PathLike) -> str:
    """Content hash of a saved model or ensemble directory: its JSON and safetensors files, not checkpoints."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{str(directory)!r} is not a directory.")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")
                   and "checkpoints" not in p.relative_to(directory).parts)
    if not files:
        raise FileNotFoundError(f"{str(directory)!r} holds no model files (config.json, *.safetensors).")
    return "-".join(file_fingerprint(f)[:8] for f in files)


@dataclass(frozen=True)
class Given:
    """A file or saved model from outside the store (`--input`, `--pretrained`, ...), keyed by its content."""

    path: Path
    fingerprint: str

    @classmethod
    def file(cls, path: str | os.PathLike) -> Given:
        """A data file (or directory of files), fingerprinted by its whole content."""
        return cls(Path(path).resolve(), file_fingerprint(path))

    @classmethod
    def model(cls, directory: str | os.PathLike) -> Given:
        """A saved model or reward ensemble, fingerprinted by its weights and configs (`model_fingerprint`)."""
        return cls(Path(directory).resolve(), model_fingerprint(directory))

    @property
    def output(self) -> Path:
        """What a stage taking it as input receives: its path (as a `Stage` gives its output)."""
        return self.path


def stage(name: str, *, output: str = "", unkeyed: tuple[str, ...] = (), resumable: bool = False) -> Callable:
    """Declare `function(output_dir, **inputs) -> dict` as the stage `name` for `StageStore.run`.

    Args:
        name: the stage's name (its directories are `stages/<name>-<key>/`).
        output: the file or subdirectory of the stage directory the function writes its product to (`""`:
            the stage directory itself); the function and downstream stages receive this path.
        unkeyed: inputs that do not change the outputs (e.g. `show_progress`): passed, not hashed.
        resumable: the function takes `resume: bool` and, given `resume=True`, continues what an interrupted
            call left in its directory (a training run from its newest complete checkpoint). An interrupted
            stage of any other function is deleted and run again from the start.
    """

    def declare(function: Callable) -> Callable:
        function.stage_name, function.stage_output, function.stage_unkeyed = name, output, unkeyed
        function.stage_resumable = resumable
        return function

    return declare


@dataclass
class Stage:
    """One finished (or planned) stage: `name`, `key`, its directory `path` and where its product lives."""

    name: str
    key: str
    path: Path
    inputs: dict[str, Any]
    output_name: str = ""

    @property
    def output(self) -> Path:
        """Where the stage wrote its product (a model, an ensemble, the prepared data, a ratings file)."""
        return self.path / self.output_name if self.output_name else self.path

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def done(self) -> bool:
        return self.marker.is_file()

    def record(self) -> dict[str, Any]:
        """The marker's content: inputs, key, result, started/finished times and seconds."""
        return json.loads(self.marker.read_text(encoding="utf-8"))

    @property
    def result(self) -> dict[str, Any]:
        return self.record().get("result") or {}


class StageStore:
    """Stages under `root/stages/`, with a log of what ran and what was reused.

    Example:

    ```python
    >>> @stage("pretrain", output="model")
    ... def pretrain_model(output, *, data, recipe):
    ...     return pretrain(data, output, recipe=recipe)
    >>> store = StageStore("runs/bench")
    >>> model = store.run(pretrain_model, data=data_stage, recipe=recipe)  # keyed by data_stage's key and recipe
    >>> model.output, model.result  # the model directory and what the function returned (JSON)
    ```

    Args:
        root: the directory holding `stages/`.
        progress: an optional `tqdm` bar advanced by one per stage (run or reused).
    """

    def __init__(self, root: str | os.PathLike, progress: Any = None):
        self.root = Path(root)
        self.progress = progress
        self.history: list[dict[str, Any]] = []

    def stage(self, function: Callable, **inputs: Any) -> Stage:
        """The stage `function` would run for `inputs` (finished or not)."""
        name = function.stage_name
        keyed = {k: v for k, v in inputs.items() if k not in function.stage_unkeyed}
        key = stage_key({"stage": name, **keyed})
        return Stage(name=name, key=key, path=self.root / "stages" / f"{name}-{key}", inputs=_canonical(keyed),
                     output_name=function.stage_output)

    def run(self, function: Callable, /, *, label: str | None = None, **inputs: Any) -> Stage:
        """Return the finished stage of `function` for `inputs`, running `function(output, **inputs)` if needed.

        `Stage` and `Given` inputs reach `function` as their output paths. `function` writes under the path
        it is given and returns a JSON-serialisable summary, saved in the marker as `result`. `label` names
        the stage in logs and `history` (default: the stage's name).
        """
        planned = self.stage(function, **inputs)
        label = label or planned.name
        if self.progress is not None:
            self.progress.set_postfix_str(label)
        if planned.done:
            logger.info("stage %-28s %s  reused (finished earlier)", label, planned.key)
            self._log(planned, label, cached=True, seconds=planned.record().get("seconds"))
            return planned
        arguments = {k: v.output if isinstance(v, (Stage, Given)) else v for k, v in inputs.items()}
        # Interrupted earlier (a folder without a marker): a resumable stage continues from what it left (a long
        # pretraining outlasts a working session); any other's outputs cannot be trusted and are deleted.
        resuming = planned.path.exists() and getattr(function, "stage_resumable", False)
        if planned.path.exists() and not resuming:
            shutil.rmtree(planned.path)
        planned.path.mkdir(parents=True, exist_ok=True)
        if getattr(function, "stage_resumable", False):
            arguments["resume"] = resuming
        logger.info("stage %-28s %s  %s", label, planned.key, "resuming" if resuming else "running")
        freeze_long_lived_objects()
        started = time.time()
        result = function(planned.output, **arguments)
        seconds = round(time.time() - started, 1)
        write_json(planned.marker, {"stage": planned.name, "label": label, "key": planned.key,
                                    "inputs": planned.inputs, "result": _canonical(result or {}),
                                    "started": started, "finished": time.time(), "seconds": seconds},
                   allow_nan=True)  # a result's metric over no users (or reward AUC without both classes) is NaN
        logger.info("stage %-28s %s  done in %.1f s", label, planned.key, seconds)
        self._log(planned, label, cached=False, seconds=seconds)
        return planned

    def _log(self, stage: Stage, label: str, cached: bool, seconds: float | None) -> None:
        self.history.append({"stage": stage.name, "label": label, "key": stage.key, "cached": cached,
                             "seconds": seconds})
        if self.progress is not None:
            self.progress.update(1)


def stage_seconds(history: list[dict[str, Any]]) -> float:
    """What the stages of a `StageStore.history` (or a results file's `stages`) cost, each at the time it took when
    it ran, reused or not, and each once: a pipeline may look a finished stage up again (the benchmark reuses a
    chosen trial's tuning run)."""
    return round(sum({entry["key"]: entry.get("seconds") or 0.0 for entry in history}.values()), 1)
