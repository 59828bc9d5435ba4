"""Sharing finished runs on the Hugging Face Hub.

A run directory written by `hf-genrec pretrain` (and by the reward and post-training commands) is already
a Hub repository layout. `push_run_to_hub` uploads it as one commit, and only the files hf_genrec writes there
(`HUB_FILES`, an allow-list, not a deny-list): whatever else sits in the folder (a `.env`, an SSH key, notes,
resumable `checkpoints/`, pickles such as `training_args.bin`, TensorBoard logs) stays on the machine. Load it
back by repo id:

```python
>>> from hf_genrec import AutoModelForNextItemPrediction
>>> from hf_genrec.data import ItemVocabulary
>>> model = AutoModelForNextItemPrediction.from_pretrained("user/hstu-ml1m")
>>> vocabulary = ItemVocabulary.from_pretrained("user/hstu-ml1m")
```

Every command that writes a run directory calls `push_run_to_hub` for its `--push-to-hub REPO_ID` flag,
after the run is complete and on the main process only.
"""

from __future__ import annotations

import logging
import os
import re
from fnmatch import fnmatch
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload hf_genrec run"

# The files hf_genrec writes into a run folder, as paths relative to it (`re.fullmatch`); nothing else is uploaded.
# Names owned by modules the hub must not import (the workflows call `push_run_to_hub`) are spelled out here;
# tests/reliability/test_hub_allow_list.py checks them against their owners' constants.
_MODEL = (r"(config\.json|generation_config\.json|model\.safetensors|model\.safetensors\.index\.json"
          r"|model-\d+-of-\d+\.safetensors)")
HUB_FILES = (
    # The model: config + weights (sharded or not); the reward ensemble's members in member-<k>/.
    rf"(member-\d+/)?{_MODEL}",
    # Extra heads of post-training (`<head>.safetensors`, e.g. `value_head`, `cql_head`); weights only.
    r"[\w.-]+\.safetensors",
    # A LoRA adapter: under `adapter/` beside the merged model (PEFT's own card included), or alone.
    r"adapter/(adapter_config\.json|adapter_model\.safetensors|README\.md)",
    r"adapter_config\.json",
    # The item vocabulary, the model card, the recipe, the reward ensemble's manifest.
    r"item_vocabulary\.json",
    r"README\.md",
    r"recipe\.yaml",
    r"ensemble\.json",
    # Metrics of pretrain/posttrain (`metrics.json`) and reward (`reward_metrics.json`).
    r"(reward_)?metrics\.json",
    # A benchmark's results and figures.
    r"results\.(json|md)",
    r"(improvement_vs_rwbc|asft_lambda_sweep|judge_vs_ranking)\.png",
)
_HUB_FILES = re.compile("|".join(f"(?:{pattern})" for pattern in HUB_FILES))
_RUN_FOLDERS = re.compile(r"adapter|member-\d+")

# Files that make a run directory loadable with `from_pretrained`; one of them must be there.
MODEL_FILES = ("config.json", "adapter_config.json")


def run_files(output_dir: str | os.PathLike, ignore_patterns: list[str] | None = None) -> list[str]:
    """The files of `output_dir` that `push_run_to_hub` uploads: relative POSIX paths matching `HUB_FILES`,
    minus any matching a shell pattern of `ignore_patterns`, sorted.

    Raises:
        ValueError: an allowed file, or a folder holding allowed files (`adapter/`, `member-<k>/`), is a symbolic
            link: it could point anywhere (e.g. to `~/.ssh/id_rsa`), and a linked folder would be left out.
    """
    output_dir = Path(output_dir)
    files = []
    for folder, subfolders, names in os.walk(output_dir):  # does not descend into linked folders
        base = Path(folder).relative_to(output_dir)
        for name in [*names, *subfolders]:
            relative, path = (base / name).as_posix(), Path(folder) / name
            allowed = _HUB_FILES.fullmatch(relative) or _RUN_FOLDERS.fullmatch(relative)
            if allowed and path.is_symlink():
                raise ValueError(
                    f"{str(path)!r} is a symbolic link; refusing to upload what it points to. Fix: replace it "
                    "with the file itself."
                )
            ignored = any(fnmatch(relative, pattern) for pattern in ignore_patterns or ())
            if name in names and _HUB_FILES.fullmatch(relative) and not ignored:
                files.append(relative)
    return sorted(files)


def _check_run_dir(output_dir: Path) -> list[str]:
    """The files to upload (`run_files`), or an error if the directory is missing or holds no saved model."""
    if not output_dir.is_dir():
        raise FileNotFoundError(
            f"Run directory {str(output_dir)!r} does not exist. Pass the --output directory of a finished "
            "hf-genrec run."
        )
    files = run_files(output_dir)
    if not any(Path(file).name in MODEL_FILES for file in files):
        raise FileNotFoundError(
            f"{str(output_dir)!r} holds no saved model ({' or '.join(MODEL_FILES)}); is the run finished? "
            "Push the directory a command wrote its model to, not its checkpoints/."
        )
    for name in ("README.md", "item_vocabulary.json"):
        if name not in files:
            logger.warning("%s has no %s; the Hub repo will not have one either", output_dir, name)
    return files


def push_run_to_hub(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    revision: str | None = None,
    ignore_patterns: list[str] | None = None,
):
    """Upload the files hf_genrec wrote into a finished run directory to the Hub as one commit, creating the
    repo if needed.

    What is uploaded is an allow-list (`HUB_FILES`, see `run_files`): `config.json` and the `*.safetensors`
    weights (sharded ones and their index too; post-training heads as `<head>.safetensors`), a reward ensemble's
    `ensemble.json` and `member-<k>/` models, a LoRA `adapter/`, `item_vocabulary.json`, the model card
    `README.md`, `recipe.yaml`, `metrics.json` / `reward_metrics.json`, and a benchmark's `results.json`,
    `results.md` and figures. Nothing else in the folder is sent: no `checkpoints/`, pickles (`*.bin`, `*.pt`),
    logs, `.env` files, keys or notes. The files left out are logged.

    Args:
        output_dir: the run directory.
        repo_id: `namespace/name`, or `name` for a repo under the token's user.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; default: `HF_TOKEN` or the token saved by `hf auth login`.
        commit_message: message of the upload commit.
        revision: branch to commit to (default: the main branch).
        ignore_patterns: shell patterns of allowed files to leave out as well (they can only remove files).

    Returns:
        `huggingface_hub.CommitInfo` of the upload (`.commit_url`, `.oid`, `.repo_url.repo_id`).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    output_dir = Path(output_dir)
    _check_run_dir(output_dir)
    files = run_files(output_dir, ignore_patterns)
    left_out = sorted(path for path in (p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*")
                                        if not p.is_dir()) if path not in files)
    if left_out:
        logger.info("not uploaded (not a file hf_genrec writes into a run, or ignored): %s", left_out[:20])
    api = HfApi(token=token)
    # private=None (not False) lets an organisation's default visibility apply to a new repo.
    repo_url = api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
    commit = api.create_commit(
        repo_id=repo_url.repo_id,
        operations=[CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(output_dir / name)) for name in files],
        commit_message=commit_message,
        revision=revision,
    )
    logger.info("pushed %d files of %s to %s", len(files), output_dir, commit.commit_url)
    return commit


__all__ = ["DEFAULT_COMMIT_MESSAGE", "HUB_FILES", "push_run_to_hub", "run_files"]
