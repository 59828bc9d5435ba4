"""Sharing finished runs on the Hugging Face Hub.

A run directory written by `hf-genrec pretrain` (and by the reward and post-training commands) is already
a Hub repository layout: `config.json` + `model.safetensors`, `item_vocabulary.json`, the model card
`README.md`, the `recipe.yaml` that produced it and `metrics.json`. `push_run_to_hub` uploads it as one
commit, leaving out what only matters on the training machine (resumable `checkpoints/`, pickles such as
`training_args.bin`, TensorBoard event files). Load it back by repo id:

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
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_COMMIT_MESSAGE = "Upload hf_genrec run"

# What stays on the training machine: resumable checkpoints (optimizer state, RNG, pickled
# `training_args.bin`), pickles in general (not safe to load from a stranger), logs and temp files.
RUN_IGNORE_PATTERNS = [
    "checkpoints/*",
    "checkpoint-*",
    "*/checkpoint-*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.pickle",
    "*.tmp",
    "runs/*",
    "*events.out.tfevents*",
]

# Files that make a run directory loadable with `from_pretrained`; one of them must be there.
MODEL_FILES = ("config.json", "adapter_config.json")


def _check_run_dir(output_dir: Path) -> None:
    if not output_dir.is_dir():
        raise FileNotFoundError(
            f"Run directory {str(output_dir)!r} does not exist. Pass the --output directory of a finished "
            "hf-genrec run."
        )
    has_model = any(
        path.name in MODEL_FILES and "checkpoint" not in str(path.relative_to(output_dir))
        for path in output_dir.rglob("*.json")
    )
    if not has_model:
        raise FileNotFoundError(
            f"{str(output_dir)!r} holds no saved model ({' or '.join(MODEL_FILES)}); is the run finished? "
            "Push the directory a command wrote its model to, not its checkpoints/."
        )
    for name in ("README.md", "item_vocabulary.json"):
        if not any(output_dir.rglob(name)):
            logger.warning("%s has no %s; the Hub repo will not have one either", output_dir, name)


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
    """Upload a finished run directory to the Hub as one commit, creating the repo if needed.

    Args:
        output_dir: the run directory (model, `item_vocabulary.json`, `README.md`, `recipe.yaml`,
            `metrics.json`).
        repo_id: `namespace/name`, or `name` for a repo under the token's user.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; default: `HF_TOKEN` or the token saved by `hf auth login`.
        commit_message: message of the upload commit.
        revision: branch to commit to (default: the main branch).
        ignore_patterns: replaces `RUN_IGNORE_PATTERNS` (shell patterns on paths inside `output_dir`).

    Returns:
        `huggingface_hub.CommitInfo` of the upload (`.commit_url`, `.oid`, `.repo_url.repo_id`).
    """
    from huggingface_hub import HfApi

    output_dir = Path(output_dir)
    _check_run_dir(output_dir)
    api = HfApi(token=token)
    # private=None (not False) lets an organisation's default visibility apply to a new repo.
    repo_url = api.create_repo(repo_id, private=True if private else None, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_url.repo_id,
        folder_path=output_dir,
        commit_message=commit_message,
        revision=revision,
        ignore_patterns=RUN_IGNORE_PATTERNS if ignore_patterns is None else ignore_patterns,
    )
    logger.info("pushed %s to %s", output_dir, commit.commit_url)
    return commit


__all__ = ["DEFAULT_COMMIT_MESSAGE", "RUN_IGNORE_PATTERNS", "push_run_to_hub"]
