import numpy as np
import pytest

from hf_genrec.data import generate_synthetic_interactions, read_movielens, write_movielens_file


@pytest.fixture(scope="module")
def log():
    return generate_synthetic_interactions()  # the defaults: the embedded dataset


def test_defaults_size_and_ranges(log):
    assert 50_000 <= len(log) <= 70_000
    assert log.num_users == 1000 and log.num_items <= 300
    counts = np.bincount(log.user_ids)[1:]
    assert counts.min() >= 20 and counts.max() <= 180
    assert set(np.unique(log.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert len(np.unique(log.ratings)) == 5  # every rating level occurs


def test_no_repeated_item_and_increasing_time_per_user(log):
    pairs = log.user_ids * 1000 + log.item_ids
    assert len(np.unique(pairs)) == len(log)
    same_user = log.user_ids[1:] == log.user_ids[:-1]
    assert (np.diff(log.timestamps)[same_user] > 0).all()


def test_deterministic_for_a_seed(log):
    again = generate_synthetic_interactions()
    other = generate_synthetic_interactions(seed=1)
    for column in ("user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(log, column), getattr(again, column))
    assert not np.array_equal(log.item_ids[:1000], other.item_ids[:1000])


def test_sequential_structure_beats_popularity(log):
    # The next item is often the follow-up of the last one (i -> i + 1): learnable, not just popularity.
    same_user = log.user_ids[1:] == log.user_ids[:-1]
    follow_up = (log.item_ids[1:] == log.item_ids[:-1] + 1)[same_user].mean()
    assert follow_up > 0.1


@pytest.mark.parametrize("name", ["ratings.dat", "ratings.dat.gz"])
def test_write_movielens_round_trip(tmp_path, name):
    small = generate_synthetic_interactions(num_users=20, num_items=50, mean_events=25, seed=3)
    path = write_movielens_file(small, tmp_path / "out" / name)
    assert open(path, "rb").read(2) == (b"\x1f\x8b" if name.endswith(".gz") else b"1:")
    back = read_movielens(path)
    for column in ("user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(back, column), getattr(small, column))
