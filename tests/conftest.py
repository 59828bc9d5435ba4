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
from hub_server import FakeHub

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


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    """An in-process fake Hugging Face Hub (`tests/hub_server.py`) that `huggingface_hub`, transformers and
    datasets talk to for the test's duration; yields the `FakeHub` (its `.url`, `.repos`, `.requests`).

    `huggingface_hub` reads its settings into module constants at import, so setting the environment is
    not enough once it is imported: the constants (and the module-level `HfApi`) are patched too.
    """
    import datasets.config
    import huggingface_hub.constants as constants
    import huggingface_hub.hf_api
    import transformers.utils.hub
    from huggingface_hub.utils import close_session

    home = tmp_path / "hf_home"
    with FakeHub() as hub:
        env = {
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_XET": "1",  # xet is the default upload path; the fake speaks plain LFS
            "HF_TOKEN": "hf_fake_token",
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_HUB_CACHE"):
            monkeypatch.delenv(name, raising=False)
        patches = {
            "ENDPOINT": hub.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": hub.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_URL_HOSTS": constants.HF_URL_HOSTS | {"127.0.0.1"},
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_XET": True,
            "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HOME": str(home),
            "HF_HUB_CACHE": str(home / "hub"),
            "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
            "HF_ASSETS_CACHE": str(home / "assets"),
            "HF_XET_CACHE": str(home / "xet"),
            "HF_TOKEN_PATH": str(home / "token"),
            "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        }
        for name, value in patches.items():
            monkeypatch.setattr(constants, name, value, raising=False)
        monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", hub.url)
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)  # transformers' shared HfApi, built lazily
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", hub.url)
        monkeypatch.setattr(datasets.config, "HUB_DATASETS_URL", hub.url + "/datasets/{repo_id}/resolve/{revision}/{path}")
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        yield hub
        close_session()  # drop keep-alive connections to this server before it stops
