"""A prepared dataset folder: raw interaction file -> per-user sequences + item vocabulary, saved and loaded.

`prepare_dataset` writes the folder (`sequences/`, `item_vocabulary.json`, `prepare.json`);
`load_prepared` reads it back as splits and vocabulary. Every command and the benchmark load data this way.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from datasets import DatasetDict, load_from_disk

from ..utils.io import staged_output_dir, write_json
from .loaders import check_input_file, read_delimited, read_movielens, read_movielens_catalog
from .sequences import build_sequences
from .splits import split_sequences
from .vocabulary import VOCABULARY_FILE, ItemVocabulary

logger = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "PREPARED_FILES",
    "PREPARE_MANIFEST",
    "SEQUENCES_DIR",
    "check_prepared_dir",
    "check_same_vocabulary",
    "load_prepared",
    "parse_columns",
    "prepare_dataset",
    "prepared_dataset_name",
]

FORMATS = ("movielens", "csv")
SEQUENCES_DIR = "sequences"
PREPARE_MANIFEST = "prepare.json"
# Everything `prepare_dataset` writes at the top of its folder.
PREPARED_FILES = (SEQUENCES_DIR, VOCABULARY_FILE, PREPARE_MANIFEST)


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
            vocabulary = ItemVocabulary.from_items(list(catalog_ids) + interactions.item_ids.tolist())
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
    """(splits, vocabulary) of a directory written by `hf-genrec prepare`."""
    data_dir = check_prepared_dir(data_dir)
    sequences = load_from_disk(str(data_dir / SEQUENCES_DIR))
    vocabulary = ItemVocabulary.from_pretrained(data_dir)
    return split_sequences(sequences, split), vocabulary


def prepared_dataset_name(data_dir: str | os.PathLike) -> str:
    """What a prepared folder holds, for model cards: `<folder>/<file> (prepared at DIR)` of the input its
    manifest names, else the folder's path."""
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
