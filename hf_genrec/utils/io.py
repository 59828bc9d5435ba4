"""Files every run writes: atomic JSON, output folders that refuse to mix runs, resource usage."""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

__all__ = ["check_output_dir", "peak_memory_mb", "write_json"]


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> str:
    """Write JSON atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return str(path)


def check_output_dir(output_dir: str | os.PathLike, marker: str, overwrite: bool = False) -> Path:
    """Refuse to mix two runs in one directory.

    A directory that holds files but not `marker` (this command's manifest) belongs to something else;
    one that holds `marker` is an earlier run of this command and is reused only with `overwrite` (or
    when resuming).
    """
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        what = "an earlier run of this command" if (output_dir / marker).exists() else "other files"
        raise FileExistsError(
            f"Output directory {str(output_dir)!r} already holds {what}. Choose a new --output, or pass "
            "--overwrite to replace it."
        )
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir
