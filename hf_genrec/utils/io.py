"""Files every run writes: strict atomic JSON, output folders that refuse to mix runs or writers, resource usage."""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "OutputDirBusyError",
    "check_output_dir",
    "output_dir_lock",
    "peak_memory_mb",
    "staged_output_dir",
    "write_json",
]


class OutputDirBusyError(FileExistsError):
    """Another process is writing the same output folder right now."""


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _first_non_finite(value: Any, where: str) -> tuple[str, float] | None:
    """(key path such as `test.hr@10` or `rows[2]`, value) of the first NaN or infinity in `value`, if any."""
    if isinstance(value, float) and not math.isfinite(value):
        return where, value
    if isinstance(value, dict):
        items: Iterable[tuple[str, Any]] = (
            (f"{where}.{key}" if where else str(key), item) for key, item in value.items()
        )
    elif isinstance(value, (list, tuple)):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for path, item in items:
        found = _first_non_finite(item, path)
        if found is not None:
            return found
    return None


def write_json(path: str | os.PathLike, payload: dict[str, Any], *, allow_nan: bool = False) -> str:
    """Write JSON atomically (a crash never leaves a half-written file).

    Args:
        path: the file.
        payload: JSON-serialisable content.
        allow_nan: write NaN and infinities as the non-standard `NaN` / `Infinity` tokens that Python's
            `json` reads back. Off by default: JSON has no such numbers, and an infinity in a manifest is an
            overflow upstream, not a value. Metrics files turn it on, as a mean over no users is `NaN`.

    Raises:
        ValueError: `payload` holds a NaN or infinity (naming its key) and `allow_nan` is off.
    """
    path = Path(path)
    if not allow_nan:
        found = _first_non_finite(payload, "")
        if found is not None:
            key, value = found
            raise ValueError(
                f"{path.name}: key {key!r} is {value!r}, which JSON cannot represent. Fix: find the input that "
                "overflowed or was undefined (e.g. a rating too large for float32) and correct it."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, allow_nan=allow_nan) + "\n", encoding="utf-8")
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


# ------------------------------------------------------------------------------------------ locked, staged folders
def _lock_path(output_dir: Path) -> Path:
    return output_dir.parent / f".{output_dir.name}.lock"


def _busy(output_dir: Path, lock: Path, holder: str) -> OutputDirBusyError:
    by = f" (process {holder})" if holder else ""
    return OutputDirBusyError(
        f"Output directory {str(output_dir)!r} is being written by another process{by}; two writers would mix "
        f"their files. Fix: wait for it to finish, or choose another --output (a crashed writer's lock is "
        f"released by the system; on a system without file locks, delete {str(lock)!r})."
    )


@contextlib.contextmanager
def output_dir_lock(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on `output_dir` (a `.<name>.lock` file beside it) for the duration of the block.

    A second writer, in this process or another, raises `OutputDirBusyError` at once instead of waiting. The
    lock is an OS file lock (`fcntl.flock`), so a writer that crashes releases it; the lock file is removed
    when the block ends.
    """
    output_dir = Path(os.path.realpath(output_dir))  # a symlinked folder: lock and stage beside the real one
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(output_dir)
    fd = _acquire(output_dir, lock)
    try:
        yield output_dir
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: a waiter that opened the old file sees it vanish and retries
        os.close(fd)


def _acquire(output_dir: Path, lock: Path) -> int:
    try:
        import fcntl
    except ImportError:  # no flock (Windows): an exclusive create; a crash leaves the file for the user to delete
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = lock.read_text(errors="replace").strip()
            raise _busy(output_dir, lock, holder) from None
        os.write(fd, str(os.getpid()).encode())
        return fd
    for _ in range(10):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise _busy(output_dir, lock, holder) from None
        try:
            same_file = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        os.close(fd)  # the previous holder removed the file between our open and our lock: take the new one
    raise _busy(output_dir, lock, "")


@contextlib.contextmanager
def staged_output_dir(
    output_dir: str | os.PathLike, marker: str, own_files: Iterable[str], *, overwrite: bool = False
) -> Iterator[Path]:
    """Write a whole output folder beside `output_dir` and move it into place only once the block succeeds.

    Under `output_dir_lock`, so a concurrent writer fails with `OutputDirBusyError`. The block gets a fresh
    hidden sibling folder to write into; when it returns, that folder is renamed to `output_dir` (or, when
    `output_dir` exists, its entries replace the old ones), and when it raises, the folder is deleted and
    `output_dir` is left as it was: a reader never sees a half-written or mixed folder.

    Args:
        output_dir: the folder to produce.
        marker: the file that identifies a finished folder of this kind (for messages).
        own_files: the names this writer puts at the top of the folder. With `overwrite`, an existing folder is
            replaced only if it holds nothing else: replacing it must not delete files another tool wrote.
        overwrite: replace an existing non-empty folder (otherwise it is an error).
    """
    own = set(own_files)
    with output_dir_lock(output_dir) as target:
        if target.exists() and not target.is_dir():
            raise FileExistsError(
                f"Output path {str(output_dir)!r} is a file, not a directory. Fix: choose another --output."
            )
        existing = sorted(path.name for path in target.iterdir()) if target.is_dir() else []
        if existing and not overwrite:
            check_output_dir(output_dir, marker, overwrite=False)  # raises, with its usual message
        foreign = [name for name in existing if name not in own]
        if foreign:
            raise FileExistsError(
                f"Output directory {str(output_dir)!r} holds files this command did not write ({foreign[:5]}); "
                "--overwrite only replaces a folder of its own. Fix: move them away, or choose another --output."
            )
        prefix = f".{target.name}.staging-"
        for leftover in target.parent.glob(prefix + "*"):  # a crashed writer's; no one else holds the lock
            shutil.rmtree(leftover, ignore_errors=True)
        # Not `mkdtemp`: its 0700 mode would become the output folder's; `mkdir` applies the umask as usual.
        staging = target.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        try:
            yield staging
            _move_into_place(staging, target, marker)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _move_into_place(staging: Path, target: Path, marker: str) -> None:
    """Put the entries of `staging` in `target`: a rename of the folder when `target` does not exist yet.

    An existing `target` is kept as a folder (it may be the working directory, a mount point, or have its own
    permissions): its entries are swapped, the old marker out first and the new one in last, so that a reader
    never sees a marker beside another run's data. If a rename fails, the old entries are put back.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
    try:
        for entry in sorted(target.iterdir(), key=lambda path: path.name != marker):
            os.rename(entry, aside / entry.name)
        for entry in sorted(staging.iterdir(), key=lambda path: path.name == marker):
            os.rename(entry, target / entry.name)
    except BaseException:
        for entry in list(target.iterdir()):
            os.rename(entry, staging / entry.name)
        for entry in list(aside.iterdir()):
            os.rename(entry, target / entry.name)
        aside.rmdir()
        raise
    shutil.rmtree(aside)
    staging.rmdir()
