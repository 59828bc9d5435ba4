"""`generate_scale_log`: the fast synthetic log of the scale benchmark (benchmarks/scale.py)."""

import numpy as np
import pytest

from hf_genrec.data.loaders import (
    _resolve_layout,
    _single_character_split,
    _slow_parse,
    read_delimited,
    read_movielens,
)
from hf_genrec.data.synthetic import MIN_EVENTS_PER_USER, generate_scale_log, write_movielens_file


def _log(seed=0):
    return generate_scale_log(num_events=30_000, num_users=200, num_items=2_000, seed=seed)


def test_same_seed_same_log_other_seed_other_log():
    first, again, other = _log(0), _log(0), _log(1)
    for column in ("user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(first, column), getattr(again, column))
    assert not np.array_equal(first.item_ids, other.item_ids)


def test_counts_and_id_ranges():
    log = _log()
    assert len(log) == 30_000
    users, counts = np.unique(log.user_ids, return_counts=True)
    np.testing.assert_array_equal(users, np.arange(1, 201))
    assert counts.min() >= MIN_EVENTS_PER_USER and counts.max() <= 2_000 // 2
    assert counts.max() > 3 * np.median(counts)  # a realistic spread: some users are far more active
    assert log.item_ids.min() >= 1 and log.item_ids.max() <= 2_000
    assert set(np.unique(log.ratings).tolist()) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # Zipf-like popularity: the most popular item is far above the median item.
    item_counts = np.bincount(log.item_ids, minlength=2_001)[1:]
    assert item_counts.max() > 10 * np.median(item_counts)


def test_no_repeated_item_per_user_and_time_increases_per_user():
    log = _log()
    pairs = log.user_ids * 10_000 + log.item_ids
    assert len(np.unique(pairs)) == len(log)
    assert np.all(np.diff(log.user_ids) >= 0)  # grouped by user
    same_user = log.user_ids[1:] == log.user_ids[:-1]
    assert np.all(np.diff(log.timestamps)[same_user] > 0)


def test_round_trip_through_movielens_file(tmp_path):
    log = _log()
    read = read_movielens(write_movielens_file(log, tmp_path / "ratings.dat"))
    for column in ("user_ids", "item_ids", "ratings", "timestamps"):
        np.testing.assert_array_equal(getattr(read, column), getattr(log, column))


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="num_events"):
        generate_scale_log(num_events=100, num_users=10, num_items=500)  # fewer than 20 per user
    with pytest.raises(ValueError, match="num_events"):
        generate_scale_log(num_events=10 * 300, num_users=10, num_items=500)  # more than half the catalogue each


# --------------------------------------------------------------------------- reading a 20M-event log fast
def test_movielens_separator_is_split_without_copying_the_file():
    """`::` is split on `:` (every field between two `:` empty), not swapped in a copy of the (550 MB) file."""
    data = b"1::7::5::978300760\n2::8::4::978300761\n"
    split_data, delimiter, stride = _single_character_split(data, "::", "utf-8")
    assert split_data is data and (delimiter, stride) == (":", 2)
    # A lone ':' in a field: the file is copied with the separator swapped, as before.
    odd = b"a:b::7::5::978300760\n"
    split_data, delimiter, stride = _single_character_split(odd, "::", "utf-8")
    assert stride == 1 and split_data == odd.replace(b"::", delimiter.encode())


@pytest.mark.parametrize(
    "text",
    [
        "1::7::5::978300760\n2::8::4::978300761\n",
        " 1 :: 7 ::5:: 978300760\r\n2::8::4::978300761\n\n",  # spaces, CRLF and a blank line
        "a:b::7::5::978300760\n2::8::4::978300761\n",  # a ':' inside an id
        "1::7::5::978300760\n2:::8::4::978300761\n",  # ':::': the item is ':8'
    ],
)
def test_fast_parse_of_colon_separated_file_equals_the_per_line_parse(tmp_path, text):
    path = tmp_path / "ratings.dat"
    path.write_text(text)
    fast = read_delimited(path, sep="::", columns=("user", "item", "rating", "timestamp"))
    layout = _resolve_layout(("user", "item", "rating", "timestamp"), None, "::", str(path))
    slow = _slow_parse(path.read_bytes(), str(path), "::", layout, False, None, "utf-8")
    for got, expected in zip((fast.user_ids, fast.item_ids, fast.ratings, fast.timestamps), slow):
        np.testing.assert_array_equal(got, expected)

