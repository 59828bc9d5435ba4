"""`load_prepared` caches each split as Arrow files in the prepared folder and memory-maps them (issue 16 item 5):
the contents are those of the in-memory split, the cache is reused, invalidated when the sequences or the split's
arguments change, and an unwritable folder falls back to the in-memory split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from datasets import DatasetDict, load_from_disk
from datasets.table import MemoryMappedTable

from hf_genrec.data import prepared as prepared_module
from hf_genrec.data.prepared import (
    PREPARE_MANIFEST,
    SEQUENCES_DIR,
    SPLIT_OPTIONS,
    SPLITS_CACHE_DIR,
    load_prepared,
    prepare_dataset,
)
from hf_genrec.data.splits import split_sequences
from hf_genrec.data.synthetic import generate_scale_log, write_movielens_file

FUTURE_OPTIONS = {"horizon": 3, "min_history": 5}


def _prepare(tmp_path: Path, seed: int = 0, name: str = "data", overwrite: bool = False) -> Path:
    ratings = Path(write_movielens_file(generate_scale_log(6_000, 200, 300, seed=seed), tmp_path / f"r{seed}.dat"))
    prepare_dataset(ratings, tmp_path / name, format="movielens", overwrite=overwrite)
    return tmp_path / name


def _set_split_options(data_dir: Path, split: str, options: dict) -> None:
    manifest = json.loads((data_dir / PREPARE_MANIFEST).read_text())
    manifest.setdefault(SPLIT_OPTIONS, {})[split] = options
    (data_dir / PREPARE_MANIFEST).write_text(json.dumps(manifest))


def _in_memory(data_dir: Path, split: str, options: dict) -> DatasetDict:
    return split_sequences(load_from_disk(str(data_dir / SEQUENCES_DIR)), split, **options)


def _assert_same(actual: DatasetDict, expected: DatasetDict) -> None:
    assert list(actual) == list(expected)
    for name in expected:
        assert actual[name].features == expected[name].features, name
        left, right = actual[name].with_format("arrow")[:], expected[name].with_format("arrow")[:]
        assert left.schema.equals(right.schema), name
        assert left.num_rows == right.num_rows > 0, name
        for column in right.column_names:
            assert left.column(column).equals(right.column(column)), (name, column)


def _memory_mapped(splits: DatasetDict) -> bool:
    return all(isinstance(dataset.data, MemoryMappedTable) and dataset.cache_files for dataset in splits.values())


def _cache_folders(data_dir: Path) -> list[str]:
    folder = data_dir / SPLITS_CACHE_DIR
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("split", ["leave-one-out", "temporal", "future"])
def test_loaded_splits_are_memory_mapped_and_equal_the_in_memory_split(tmp_path, split):
    data_dir = _prepare(tmp_path)
    options = FUTURE_OPTIONS if split == "future" else {}
    if options:
        _set_split_options(data_dir, split, options)
    splits, _ = load_prepared(data_dir, split)
    assert _memory_mapped(splits)  # the old load_prepared returned in-memory tables
    _assert_same(splits, _in_memory(data_dir, split, options))
    assert [name.rsplit("-", 1)[0] for name in _cache_folders(data_dir)] == [split]


def test_second_load_reuses_the_cache(tmp_path, monkeypatch):
    data_dir = _prepare(tmp_path)
    first, _ = load_prepared(data_dir, "leave_one_out")  # any spelling of the method shares the cache
    folders = _cache_folders(data_dir)

    def no_split(*args, **kwargs):
        raise AssertionError("the split was computed again instead of read from the cache")

    monkeypatch.setattr(prepared_module, "split_sequences", no_split)
    second, _ = load_prepared(data_dir, "leave-one-out")
    assert _cache_folders(data_dir) == folders and len(folders) == 1
    _assert_same(second, first)


def test_changed_split_options_give_a_new_cache(tmp_path):
    data_dir = _prepare(tmp_path)
    _set_split_options(data_dir, "future", FUTURE_OPTIONS)
    load_prepared(data_dir, "future")
    changed = {**FUTURE_OPTIONS, "horizon": 2}
    _set_split_options(data_dir, "future", changed)
    splits, _ = load_prepared(data_dir, "future")
    assert len(_cache_folders(data_dir)) == 2
    assert set(splits["test"]["window_position"]) == {0, 1}
    _assert_same(splits, _in_memory(data_dir, "future", changed))


def test_changed_sequences_give_a_new_cache(tmp_path):
    data_dir = _prepare(tmp_path)
    before, _ = load_prepared(data_dir, "leave-one-out")
    # Rewrite the sequences in place (fewer users): the cache of the old ones must not be served.
    sequences = load_from_disk(str(data_dir / SEQUENCES_DIR)).select(range(150))
    sequences.save_to_disk(str(tmp_path / "subset"))
    for path in (data_dir / SEQUENCES_DIR).iterdir():
        path.unlink()
    for path in (tmp_path / "subset").iterdir():
        path.rename(data_dir / SEQUENCES_DIR / path.name)
    after, _ = load_prepared(data_dir, "leave-one-out")
    assert len(before["train"]) == 200 and len(after["train"]) == 150
    _assert_same(after, _in_memory(data_dir, "leave-one-out", {}))
    # `prepare --overwrite` of another log replaces the folder, split caches included.
    data_dir = _prepare(tmp_path, seed=1, overwrite=True)
    assert _cache_folders(data_dir) == []
    reprepared, _ = load_prepared(data_dir, "leave-one-out")
    _assert_same(reprepared, _in_memory(data_dir, "leave-one-out", {}))
    assert not reprepared["train"].with_format("arrow")[:].equals(before["train"].with_format("arrow")[:])


def test_unwritable_folder_falls_back_to_the_in_memory_split(tmp_path, caplog):
    data_dir = _prepare(tmp_path)
    (data_dir / SPLITS_CACHE_DIR).write_text("not a folder")  # the cache cannot be created (as a read-only disk)
    with caplog.at_level(logging.WARNING, logger=prepared_module.__name__):
        splits, _ = load_prepared(data_dir, "temporal")
    assert "keeping it in memory" in caplog.text
    assert not any(dataset.cache_files for dataset in splits.values())
    _assert_same(splits, _in_memory(data_dir, "temporal", {}))
    assert sorted(path.name for path in data_dir.iterdir() if path.name.startswith(".")) == []  # no staging left


def test_an_empty_split_is_cached_and_loads(tmp_path):
    data_dir = _prepare(tmp_path)
    last = max(max(times) for times in load_from_disk(str(data_dir / SEQUENCES_DIR))["timestamps"])
    options = {"test_start": last + 1}  # no event at or after it: an empty test split
    _set_split_options(data_dir, "temporal", options)
    splits, _ = load_prepared(data_dir, "temporal")
    assert len(splits["test"]) == 0 and len(splits["train"]) > 0
    assert _memory_mapped(splits)
    expected = _in_memory(data_dir, "temporal", options)
    assert splits["test"].features == expected["test"].features
    _assert_same(DatasetDict({k: splits[k] for k in ("train", "validation")}),
                 DatasetDict({k: expected[k] for k in ("train", "validation")}))


def test_a_cache_written_first_by_another_process_is_kept(tmp_path):
    data_dir = _prepare(tmp_path)
    load_prepared(data_dir, "leave-one-out")
    (cache,) = (data_dir / SPLITS_CACHE_DIR).iterdir()
    # A second writer that finishes last (same contents in real use) renames onto the finished cache: kept as is.
    prepared_module._write_split_cache(_in_memory(data_dir, "temporal", {}), cache)
    assert sorted(path.name for path in cache.parent.iterdir()) == [cache.name]  # its staging folder is gone
    _assert_same(load_from_disk(str(cache)), _in_memory(data_dir, "leave-one-out", {}))


def test_split_caches_do_not_change_the_prepared_folders_run_fingerprint(tmp_path):
    # A run's fingerprint digests its prepared data; a split cache written by any later load (another split, the
    # benchmark) is derived data and must not make a checkpoint of the same data unresumable.
    from hf_genrec.workflows.common import input_digest

    data_dir = _prepare(tmp_path)
    before = input_digest(data_dir)
    for split in ("leave-one-out", "temporal"):
        load_prepared(data_dir, split)
    assert any((data_dir / SPLITS_CACHE_DIR).iterdir())
    assert input_digest(data_dir) == before
