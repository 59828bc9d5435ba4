"""Shared test settings.

Real datasets are found through `HF_GENREC_DATA` (a folder holding `ml-1m/`, ...). When it is unset, the
`shared/data` folder beside this checkout is used if present (that is where CI lays it); tests that need
real data skip otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def real_data_dir() -> Path | None:
    configured = os.environ.get("HF_GENREC_DATA")
    candidate = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = real_data_dir()
    if root is None:
        pytest.skip("real datasets not found: set HF_GENREC_DATA to the folder holding ml-1m/")
    return root


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # Tests are tiny; one thread avoids oversubscribing the 2-core CI machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
