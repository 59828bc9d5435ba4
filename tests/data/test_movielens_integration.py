"""Reads the real MovieLens-1M files from $HF_GENREC_DATA/ml-1m (see tests/conftest.py; skipped when absent)."""

from pathlib import Path

import numpy as np
import pytest

from hf_genrec.data import build_sequences, leave_one_out_split, read_movielens, read_movielens_catalog


@pytest.fixture(scope="module")
def ml1m(data_root) -> Path:
    if not (data_root / "ml-1m").is_dir():
        pytest.skip(f"{data_root} has no ml-1m/ folder")
    return data_root / "ml-1m"


def _ratings_file(folder: Path) -> Path:
    for name in ("ratings.dat.gz", "ratings.dat"):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"{folder} has no ratings.dat(.gz)")


@pytest.mark.integration
def test_read_ml1m(ml1m):
    interactions = read_movielens(_ratings_file(ml1m))
    assert len(interactions) == 1_000_209
    assert interactions.num_users == 6040
    assert interactions.num_items == 3706
    np.testing.assert_array_equal(
        np.bincount(interactions.ratings.astype(int))[1:], [56174, 107557, 261197, 348971, 226310]
    )
    sequences, vocabulary = build_sequences(interactions, duplicates="error")
    assert len(sequences) == 6040 and vocabulary.num_items == 3706
    assert min(len(items) for items in sequences["item_ids"]) == 20
    splits = leave_one_out_split(sequences)
    assert len(splits["test"]) == 6040


@pytest.mark.integration
def test_read_ml1m_catalog(ml1m):
    catalog = read_movielens_catalog(ml1m / "movies.dat")
    assert len(catalog) == 3883 and len(set(catalog)) == 3883
