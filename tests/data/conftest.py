"""Shared helpers for the data-pipeline tests."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[..., Path]:
    """Writes `text` to `tmp_path / name` (gzip-compressed when `compress`), returns the path."""

    def write(name: str, text: str, *, compress: bool = False, encoding: str = "utf-8") -> Path:
        path = tmp_path / name
        data = text.encode(encoding)
        path.write_bytes(gzip.compress(data) if compress else data)
        return path

    return write
