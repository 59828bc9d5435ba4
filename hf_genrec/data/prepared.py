"""A prepared dataset folder: raw interaction file -> per-user sequences + item vocabulary, saved and loaded.

`prepare_dataset` writes the folder (`sequences/`, `item_vocabulary.json`, `prepare.json`);
`load_prepared` reads it back as splits and vocabulary, caching each split it computes under `splits/` as
memory-mapped Arrow files (`cached_split`). Every command and the benchmark load data this way.

On the Hub, `push_prepared_to_hub` (`hf-genrec prepare --push-to-hub REPO`) shares the folder as a dataset repo:
the sequences as the `sequences` split in Parquet (`Dataset.push_to_hub`, so `datasets.load_dataset(REPO)`, the
dataset viewer and every other `datasets` user read it as is), plus `item_vocabulary.json` and `prepare.json`.
Training reads it back by `hf_dataset_path(REPO)` (`hf://datasets/REPO[@REVISION]`, `--dataset_name REPO`):
`load_prepared` then loads the sequences with `load_dataset` and splits them as it does a local folder's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import DatasetDict, load_from_disk

from ..utils.io import staged_output_dir, write_json
from ..utils.runtime import release_cpu_heap
from ..version import __version__
from .loaders import check_input_file, read_delimited, read_movielens, read_movielens_catalog
from .sequences import build_sequences
from .splits import split_method, split_sequences
from .vocabulary import VOCABULARY_FILE, ItemVocabulary

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "HF_DATASETS_SCHEME",
    "HUB_SEQUENCES_SPLIT",
    "PREPARED_FILES",
    "PREPARE_MANIFEST",
    "SEQUENCES_DIR",
    "SPLITS_CACHE_DIR",
    "SPLIT_OPTIONS",
    "check_prepared_dir",
    "cached_split",
    "check_same_vocabulary",
    "dataset_name_path",
    "hf_dataset_path",
    "load_prepared",
    "load_prepared_from_hub",
    "parse_columns",
    "parse_hf_dataset_path",
    "prepare_dataset",
    "prepared_dataset_name",
    "prepared_split_options",
    "push_prepared_to_hub",
]

FORMATS = ("movielens", "csv")
SEQUENCES_DIR = "sequences"
PREPARE_MANIFEST = "prepare.json"
# The `prepare.json` key holding `{split: split_sequences arguments}` that `load_prepared` applies.
SPLIT_OPTIONS = "split_options"
# The folder where `load_prepared` caches each split it computes, as Arrow files it then memory-maps.
SPLITS_CACHE_DIR = "splits"
# Everything `prepare_dataset` and `load_prepared` write at the top of the folder (`prepare --overwrite` replaces
# them all, so the split caches of the old sequences go with them).
PREPARED_FILES = (SEQUENCES_DIR, VOCABULARY_FILE, PREPARE_MANIFEST, SPLITS_CACHE_DIR)
# Part of every split cache's key: bump it when a split's contents change for the same sequences and arguments.
SPLIT_CACHE_VERSION = 1


def parse_columns(spec: str | None) -> tuple[str, ...] | dict[str, str] | None:
    """`user,item,rating,timestamp` (roles in file order) or `user=reviewerID,item=asin,...` (header names)."""
    if spec is None:
        return None
    parts = [p.strip() for p in spec.split(",")]
    if any("=" in p for p in parts):
        mapping = {}
        for part in parts:
            if "=" not in part:
                raise ValueError(f"--columns mixes 'role=name' and plain entries ({spec!r}); use one form.")
            role, name = part.split("=", 1)
            mapping[role.strip()] = name.strip()
        return mapping
    return tuple(parts)


def prepare_dataset(
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    format: str = "movielens",
    sep: str | None = None,
    columns: str | tuple | dict | None = None,
    header: bool = False,
    catalog: str | os.PathLike | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: str = "keep",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Read interactions, build the per-user sequences and the vocabulary, and save both.

    Writes `output_dir/sequences/` (`Dataset.save_to_disk`), `output_dir/item_vocabulary.json` and
    `output_dir/prepare.json` (what was read and the counts). For MovieLens, a `movies.dat` beside the
    ratings (or `catalog`) puts every catalogue movie in the vocabulary, as the HSTU reference ranks
    over all of them, rated or not.

    The folder is written beside `output_dir` and renamed into place at the end, under a lock: a failed run
    leaves an earlier `output_dir` as it was, and a second `prepare` writing the same folder at the same time
    fails with `OutputDirBusyError` instead of both reporting success. `overwrite` replaces an earlier prepared
    folder, never one holding files `prepare` did not write.

    `sep`, `columns` and `header` describe a `csv` file; with `format="movielens"` (always
    `UserID::MovieID::Rating::Timestamp`, no header) passing any of them is an error rather than ignored.

    Returns the manifest written to `prepare.json`.
    """
    if format not in FORMATS:
        raise ValueError(f"--format must be one of {FORMATS}, got {format!r}.")
    if format == "movielens":
        _check_no_csv_options(sep=sep, columns=columns, header=header)
    input_path = Path(check_input_file(input_path, "--input", "ratings file"))
    with staged_output_dir(output_dir, PREPARE_MANIFEST, PREPARED_FILES, overwrite=overwrite) as staging:
        if format == "movielens":
            interactions = read_movielens(input_path, rating_scale=rating_scale or (1, 5))
            if catalog is None and (input_path.parent / "movies.dat").is_file():
                catalog = input_path.parent / "movies.dat"
        else:
            columns = parse_columns(columns) if isinstance(columns, str) else columns
            interactions = read_delimited(input_path, sep=sep or ",", columns=columns, header=header,
                                          rating_scale=rating_scale)

        vocabulary = None
        if catalog is not None:
            catalog_ids = read_movielens_catalog(catalog)
            item_ids = interactions.item_ids
            # Integer ids stay one numpy array (a 20M-event log as a Python list would take ~700 MB).
            vocabulary = ItemVocabulary.from_items(
                np.concatenate([np.asarray(catalog_ids, dtype=np.int64), item_ids]) if item_ids.dtype.kind == "i"
                else list(catalog_ids) + item_ids.tolist()
            )
        sequences, vocabulary = build_sequences(interactions, vocabulary, duplicates=duplicates)

        sequences.save_to_disk(str(staging / SEQUENCES_DIR))
        vocabulary.save_pretrained(staging)
        ratings = interactions.ratings
        manifest = {
            "input": str(input_path),
            "format": format,
            "catalog": str(catalog) if catalog is not None else None,
            "num_interactions": int(len(interactions)),
            "num_users": int(len(sequences)),
            "num_items": int(vocabulary.num_items),
            "rating_min": float(ratings.min()),
            "rating_max": float(ratings.max()),
            "duplicates": duplicates,
        }
        write_json(staging / PREPARE_MANIFEST, manifest)
    logger.info("prepared %s users, %s items, %s interactions in %s", manifest["num_users"],
                manifest["num_items"], manifest["num_interactions"], output_dir)
    return manifest


def _check_no_csv_options(**given: Any) -> None:
    """MovieLens files have one layout; a csv option given with them would be silently ignored."""
    for name, value in given.items():
        if value not in (None, False):
            flag = f"--{name}" if value is True else f"--{name} {value!r}"
            raise ValueError(
                f"{flag} applies to --format csv only; MovieLens ratings are always "
                f"'UserID::MovieID::Rating::Timestamp' without a header. Fix: drop --{name}, or pass --format csv."
            )


def check_prepared_dir(data_dir: str | os.PathLike) -> Path:
    """The directory written by `hf-genrec prepare`, or a clear error."""
    data_dir = Path(data_dir)
    if not (data_dir / SEQUENCES_DIR).is_dir():
        raise FileNotFoundError(
            f"{str(data_dir)!r} is not a prepared dataset (no '{SEQUENCES_DIR}/' inside). "
            "Create one with: hf-genrec prepare --input RATINGS --format movielens --output DIR"
        )
    return data_dir


def load_prepared(data_dir: str | os.PathLike, split: str = "leave-one-out") -> tuple[DatasetDict, ItemVocabulary]:
    """(splits, vocabulary) of a directory written by `hf-genrec prepare`, or of a dataset repo it pushed to the
    Hub, named `hf://datasets/REPO[@REVISION]` (see `hf_dataset_path`, `load_prepared_from_hub`).

    A local folder's splits are memory-mapped Arrow files cached under `splits/` (see `cached_split`), so training
    memory does not grow with the number of users; a Hub dataset's are split in memory."""
    hub = parse_hf_dataset_path(data_dir)
    if hub is not None:
        splits, vocabulary, _ = load_prepared_from_hub(hub[0], split, revision=hub[1])
        return splits, vocabulary
    data_dir = check_prepared_dir(data_dir)
    vocabulary = ItemVocabulary.from_pretrained(data_dir)
    return cached_split(data_dir, split, prepared_split_options(data_dir, split)), vocabulary


def _split_cache_key(data_dir: Path, method: str, options: dict[str, Any]) -> str:
    """A hash of everything a split's contents depend on: the method and its arguments, the sequences' files
    (their `state.json`, which holds the dataset's fingerprint, and each file's size and modification time: a new
    `prepare` rewrites them) and the split code's version."""
    sequences_dir = data_dir / SEQUENCES_DIR
    files = sorted(path for path in sequences_dir.iterdir() if path.is_file())
    state = sequences_dir / "state.json"
    payload = {
        "method": method,
        "options": options,
        "state": state.read_text(encoding="utf-8") if state.is_file() else None,
        "files": [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in files],
        "version": [SPLIT_CACHE_VERSION, __version__],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_split_cache(splits: DatasetDict, cache: Path) -> None:
    """Save `splits` to `cache` atomically: written to a hidden sibling, then renamed into place, so a reader never
    sees a half-written cache; when another process renamed its (identical) copy first, that one is kept."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = cache.parent / f".{cache.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        # An empty split gets one (empty) shard: with `datasets`' default of none, `load_from_disk` fails on it.
        splits.save_to_disk(str(staging), num_shards={name: 1 for name, dataset in splits.items() if len(dataset) == 0})
        os.rename(staging, cache)
    except OSError:
        if not (cache / "dataset_dict.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def cached_split(data_dir: str | os.PathLike, split: str, options: dict[str, Any] | None = None) -> DatasetDict:
    """`split_sequences(sequences, split, **options)` of a prepared folder's sequences, memory-mapped.

    The first call computes the split and saves it as Arrow files in
    `data_dir/splits/<split>-<hash of the arguments and of the sequences>/`; every later call with the same
    sequences and arguments loads them (`load_from_disk`: memory-mapped, so the rows stay file-backed pages the
    kernel can drop, and the memory used does not grow with the number of users). The contents are those of the
    in-memory split, column for column. When the folder cannot be written (read-only, full disk), the split is
    returned in memory, as computed.
    """
    data_dir = Path(data_dir)
    method, options = split_method(split), dict(options or {})
    cache = data_dir / SPLITS_CACHE_DIR / f"{method}-{_split_cache_key(data_dir, method, options)}"
    if (cache / "dataset_dict.json").is_file():
        return load_from_disk(str(cache))
    splits = split_sequences(load_from_disk(str(data_dir / SEQUENCES_DIR)), method, **options)
    try:
        _write_split_cache(splits, cache)
    except OSError as error:
        logger.warning("could not cache the %s split in %s (%s); keeping it in memory.", method, cache, error)
        return splits
    del splits
    # The split's temporaries and in-memory tables are free now: give their pages back to the OS (a warm heap,
    # `keep_cpu_heap_warm`, would otherwise keep them resident for the whole run).
    pa.default_memory_pool().release_unused()
    release_cpu_heap()
    return load_from_disk(str(cache))


def prepared_split_options(data_dir: str | os.PathLike, split: str) -> dict[str, Any]:
    """The arguments of `split` recorded under `split_options` in the folder's `prepare.json` (e.g. the benchmark's
    `future` cutoff and H), so every command loading the folder splits it the same way; `{}` when none."""
    manifest = Path(data_dir) / PREPARE_MANIFEST
    if not manifest.is_file():
        return {}
    return dict(json.loads(manifest.read_text(encoding="utf-8")).get(SPLIT_OPTIONS, {}).get(split, {}))


def prepared_dataset_name(data_dir: str | os.PathLike) -> str:
    """What a prepared folder holds, for model cards: `<folder>/<file> (prepared at DIR)` of the input its
    manifest names, else the folder's path; for a Hub dataset (`hf://datasets/REPO`), its repo id."""
    hub = parse_hf_dataset_path(data_dir)
    if hub is not None:
        return hub[0]
    data_dir = Path(data_dir)
    manifest = data_dir / PREPARE_MANIFEST
    if manifest.is_file():
        source = json.loads(manifest.read_text(encoding="utf-8")).get("input")
        if source:
            return f"{Path(source).parent.name}/{Path(source).name} (prepared at {data_dir})"
    return str(data_dir)


def check_same_vocabulary(model_vocabulary: ItemVocabulary, data_vocabulary: ItemVocabulary, model_dir) -> None:
    """Item indices only mean the same thing when both sides use the same vocabulary."""
    if model_vocabulary != data_vocabulary:
        raise ValueError(
            f"The item vocabulary of {str(model_dir)!r} ({model_vocabulary.num_items} items) differs from the "
            f"dataset's ({data_vocabulary.num_items} items): item indices would not match. Evaluate on data "
            "prepared with the same vocabulary (the same input file and catalogue)."
        )


# ------------------------------------------------------------------------------------------- on the Hub
HF_DATASETS_SCHEME = "hf://datasets/"
# The split of the Hub dataset that holds the per-user sequences (every train/validation/test split is cut from
# them at training time, by the recipe's `data.split`, as for a local folder).
HUB_SEQUENCES_SPLIT = SEQUENCES_DIR
DEFAULT_DATASET_COMMIT_MESSAGE = "Upload hf_genrec prepared dataset"


def hf_dataset_path(repo_id: str, revision: str | None = None) -> str:
    """`hf://datasets/REPO[@REVISION]`: how a run's data argument names a dataset repo written by
    `push_prepared_to_hub` (the form of `huggingface_hub.HfFileSystem` paths); `--dataset_name REPO` passes this."""
    return f"{HF_DATASETS_SCHEME}{repo_id}" + (f"@{revision}" if revision else "")


def dataset_name_path(dataset_name: str) -> str:
    """The `hf://datasets/REPO[@REVISION]` path of a `--dataset_name REPO[@REVISION]` (TRL's flag name)."""
    repo_id, _, revision = dataset_name.partition("@")
    return hf_dataset_path(repo_id, revision or None)


def parse_hf_dataset_path(source: Any) -> tuple[str, str | None] | None:
    """`(repo_id, revision or None)` of an `hf://datasets/REPO[@REVISION]` string, else `None` (a local folder).

    Raises:
        ValueError: the repo id after `hf://datasets/` is malformed.
    """
    if not isinstance(source, str) or not source.startswith(HF_DATASETS_SCHEME):
        return None
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id, _, revision = source[len(HF_DATASETS_SCHEME):].partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(
            f"--dataset_name {repo_id!r} is not a Hub repo id ({source!r}). Fix: pass namespace/name of a dataset "
            "repo written by `hf-genrec prepare --push-to-hub`."
        ) from None
    return repo_id, revision or None


def _shared_manifest(data_dir: Path) -> dict[str, Any]:
    """`prepare.json` as uploaded: the input and catalogue named by `<folder>/<file>`, not by a path of this
    machine (which may hold a user name)."""
    manifest = json.loads((data_dir / PREPARE_MANIFEST).read_text(encoding="utf-8"))
    for key in ("input", "catalog"):
        if manifest.get(key):
            manifest[key] = f"{Path(manifest[key]).parent.name}/{Path(manifest[key]).name}"
    return manifest


def _dataset_card(repo_id: str, sequences, manifest: dict[str, Any] | None, token: str | bool | None) -> str:
    """The dataset card written by `Dataset.push_to_hub` (its metadata: features, splits), with the hf_genrec tags
    and a text saying what the data is and how to train on it."""
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(repo_id, repo_type="dataset", token=token)
    card.data.tags = list(dict.fromkeys([*(getattr(card.data, "tags", None) or []), "hf_genrec", "recommendation"]))
    source = ""
    if manifest:
        source = (f" from `{manifest.get('input')}` ({manifest.get('num_users')} users, {manifest.get('num_items')} "
                  f"items, {manifest.get('num_interactions')} interactions)")
    columns = ", ".join(f"`{name}`" for name in sequences.features)
    card.text = f"""
# {repo_id.split("/")[-1]}

Per-user interaction sequences prepared with [hf_genrec](https://pypi.org/project/hf_genrec/)'s `hf-genrec
prepare`{source}. The `{HUB_SEQUENCES_SPLIT}` split holds one row per user, events in time order (columns
{columns}); `{VOCABULARY_FILE}` maps raw item ids to the indices in `item_ids`, and `{PREPARE_MANIFEST}` records
how the data was prepared. Training cuts the train/validation/test splits from the sequences (leave-one-out or
temporal, as the recipe says).

```bash
hf-genrec pretrain --dataset_name {repo_id} --output runs/pretrain
```

```python
from hf_genrec.data.prepared import hf_dataset_path, load_prepared

splits, vocabulary = load_prepared(hf_dataset_path("{repo_id}"), "leave-one-out")
```
"""
    return str(card)


def push_prepared_to_hub(
    data_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_DATASET_COMMIT_MESSAGE,
):
    """Share a folder written by `prepare_dataset` as a Hub dataset repo, creating it if needed.

    The sequences go up with `datasets.Dataset.push_to_hub` as the `sequences` split (Parquet, features in the
    dataset card), then `item_vocabulary.json`, `prepare.json` (input paths reduced to `<folder>/<file>`) and the
    card's text (what the data is, how to train on it) in a second commit: a repo whose vocabulary is there is
    complete. Load it back for training with
    `load_prepared(hf_dataset_path(repo_id), split)` (`--dataset_name REPO`).

    Args:
        data_dir: the prepared folder.
        repo_id: `namespace/name`, or `name` for a repo under the token's user.
        private: create the repo private (an existing repo keeps its visibility).
        token: Hub token; default: `HF_TOKEN` or the token saved by `hf auth login`.
        commit_message: message of the commits.

    Returns:
        `huggingface_hub.CommitInfo` of the last commit (`.commit_url`, `.oid`).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    data_dir = check_prepared_dir(data_dir)
    sequences = load_from_disk(str(data_dir / SEQUENCES_DIR))
    api = HfApi(token=token)
    # private=None (not False) lets an organisation's default visibility apply to a new repo.
    repo_id = api.create_repo(repo_id, repo_type="dataset", private=True if private else None, exist_ok=True).repo_id
    sequences.push_to_hub(repo_id, split=HUB_SEQUENCES_SPLIT, token=token, commit_message=commit_message)
    manifest = _shared_manifest(data_dir) if (data_dir / PREPARE_MANIFEST).is_file() else None
    card = _dataset_card(repo_id, sequences, manifest, token)
    operations = [CommitOperationAdd(path_in_repo=VOCABULARY_FILE, path_or_fileobj=str(data_dir / VOCABULARY_FILE)),
                  CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode())]
    if manifest is not None:
        manifest_bytes = json.dumps(manifest, indent=2).encode()
        operations.append(CommitOperationAdd(path_in_repo=PREPARE_MANIFEST, path_or_fileobj=manifest_bytes))
    commit = api.create_commit(repo_id=repo_id, repo_type="dataset", operations=operations,
                               commit_message=commit_message)
    logger.info("pushed the prepared dataset %s to %s", data_dir, commit.commit_url)
    return commit


def load_prepared_from_hub(
    repo_id: str,
    split: str = "leave-one-out",
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> tuple[DatasetDict, ItemVocabulary, str]:
    """(splits, vocabulary, commit) of a dataset repo written by `push_prepared_to_hub`.

    The revision is resolved to its commit first and everything is read at that commit, so the data and the
    commit returned (a run's fingerprint records it) always belong together. The sequences are read with
    `datasets.load_dataset` and split as a local folder's are (`split_sequences`).

    Raises:
        FileNotFoundError: no such dataset repo or revision, or the repo holds no `item_vocabulary.json` (it was
            not pushed by `hf-genrec prepare --push-to-hub`).
    """
    from datasets import load_dataset
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    flag = f"--dataset_name {repo_id!r}" + (f" (revision {revision!r})" if revision else "")
    try:
        commit = HfApi(token=token).dataset_info(repo_id, revision=revision).sha
        vocabulary_file = hf_hub_download(repo_id, VOCABULARY_FILE, repo_type="dataset", revision=commit, token=token)
    except RevisionNotFoundError:
        raise FileNotFoundError(f"{flag}: the dataset repo has no such revision. Fix: pass a branch, tag or commit "
                                "it has.") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"{flag}: no such dataset repo on the Hub (or it is private and no token allows "
                                "it). Fix: check the repo id, or log in with `hf auth login`.") from None
    except EntryNotFoundError:
        raise FileNotFoundError(f"{flag}: the dataset repo has no {VOCABULARY_FILE}, so it was not pushed by "
                                "`hf-genrec prepare --push-to-hub`. Fix: push the prepared folder with "
                                "`hf-genrec prepare ... --push-to-hub REPO`.") from None
    sequences = load_dataset(repo_id, split=HUB_SEQUENCES_SPLIT, revision=commit, token=token)
    return split_sequences(sequences, split), ItemVocabulary.from_pretrained(vocabulary_file), commit
