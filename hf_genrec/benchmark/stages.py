"""Resumable stages: each stage's directory is named by a hash of its inputs and finished by a marker.

A stage is one unit of work of the benchmark (prepare, pretrain, a reward ensemble, one post-training run,
one evaluation). Its *inputs* are a JSON-serialisable dict of everything its output depends on: its own
arguments and the keys of the stages it reads from. The stage key is a hash of that dict, so:

- re-running with the same arguments finds `stages/<name>-<key>/stage.json` and skips the work;
- changing an argument changes the key of the stage that takes it and, through the upstream keys, of every
  stage downstream of it, and only those are recomputed (the old directories stay, unused);
- a stage interrupted half-way has a directory but no marker: it is wiped and rerun.

The marker `stage.json` is written atomically (temporary file + `os.replace`) after the stage's outputs, so
its presence means the outputs are complete.
"""

from __future__ import annotations

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

__all__ = ["MARKER", "Stage", "StageStore", "file_fingerprint", "stage_key"]

MARKER = "stage.json"
KEY_LENGTH = 12


def _canonical(value: Any) -> Any:
    """JSON-able form of `value`: tuples as lists, paths as strings, dict keys sorted by `json.dumps`."""
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


@dataclass
class Stage:
    """One stage: `name`, `key`, its directory `path` and (once done) the record in its marker."""

    name: str
    key: str
    path: Path
    inputs: dict[str, Any]

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
    >>> store = StageStore("runs/bench")
    >>> stage = store.run("pretrain", {"data": data.key, "recipe": recipe}, lambda path: pretrain(..., path))
    >>> stage.path, stage.result  # the directory and what the function returned (JSON)
    ```
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.history: list[dict[str, Any]] = []

    def stage(self, name: str, inputs: dict[str, Any]) -> Stage:
        key = stage_key({"stage": name, **inputs})
        return Stage(name=name, key=key, path=self.root / "stages" / f"{name}-{key}", inputs=_canonical(inputs))

    def run(
        self, name: str, inputs: dict[str, Any], function: Callable[[Path], dict[str, Any] | None], label: str = ""
    ) -> Stage:
        """Return the finished stage `name` for `inputs`, running `function(stage_dir)` first if needed.

        `function` writes its outputs under the directory it is given and returns a JSON-serialisable
        summary, saved in the marker as `result`.
        """
        stage = self.stage(name, inputs)
        label = label or name
        if stage.done:
            logger.info("stage %-28s %s  reused (finished earlier)", label, stage.key)
            self.history.append({"stage": name, "label": label, "key": stage.key, "cached": True,
                                 "seconds": stage.record().get("seconds")})
            return stage
        if stage.path.exists():  # interrupted earlier: its outputs cannot be trusted
            shutil.rmtree(stage.path)
        stage.path.mkdir(parents=True)
        logger.info("stage %-28s %s  running", label, stage.key)
        started = time.time()
        result = function(stage.path)
        seconds = round(time.time() - started, 1)
        write_json(stage.marker, {"stage": name, "label": label, "key": stage.key, "inputs": stage.inputs,
                                  "result": _canonical(result or {}), "started": started,
                                  "finished": time.time(), "seconds": seconds})
        logger.info("stage %-28s %s  done in %.1f s", label, stage.key, seconds)
        self.history.append({"stage": name, "label": label, "key": stage.key, "cached": False, "seconds": seconds})
        return stage
