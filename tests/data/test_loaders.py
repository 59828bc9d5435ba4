import gzip

import numpy as np
import pytest

from hf_genrec.data import DataFormatError, read_delimited, read_movielens, read_movielens_catalog

ML_TEXT = "1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n"
AMAZON_COLUMNS = {"user": "reviewerID", "item": "asin", "rating": "overall", "timestamp": "unixReviewTime"}


def _check(interactions, users, items, ratings, timestamps):
    np.testing.assert_array_equal(interactions.user_ids, users)
    np.testing.assert_array_equal(interactions.item_ids, items)
    np.testing.assert_array_equal(interactions.ratings, np.asarray(ratings, dtype=np.float32))
    np.testing.assert_array_equal(interactions.timestamps, timestamps)


@pytest.mark.parametrize(
    ("name", "compress"), [("ratings.dat", False), ("ratings.dat.gz", True), ("r.dat", True)]
)
def test_read_movielens_plain_and_gzip(write_file, name, compress):
    # "r.dat" is gzip without the suffix: detected by the magic bytes.
    interactions = read_movielens(write_file(name, ML_TEXT, compress=compress))
    assert len(interactions) == 3
    assert interactions.user_ids.dtype == np.int64 and interactions.item_ids.dtype == np.int64
    assert interactions.ratings.dtype == np.float32 and interactions.timestamps.dtype == np.int64
    _check(interactions, [1, 1, 2], [10, 20, 10], [5, 3, 4], [978300760, 978302109, 978301968])
    assert interactions.source.endswith(name)


def test_read_delimited_with_header_mapping(write_file):
    # As the Amazon 5-core CSV: spaces after the header's commas, CRLF line endings, string ids.
    text = (
        "asin, reviewerID, overall, unixReviewTime\r\n"
        "1384719342,A2IBPI20UZIR0U,5.0,1393545600\r\n"
        "B00004Y2UT,A14VAT5EAX3D9S,4.0,1363392000\r\n"
    )
    interactions = read_delimited(write_file("ratings.csv", text), header=True, columns=AMAZON_COLUMNS)
    _check(
        interactions,
        ["A2IBPI20UZIR0U", "A14VAT5EAX3D9S"],
        ["1384719342", "B00004Y2UT"],  # one non-numeric asin: all item ids stay strings
        [5, 4],
        [1393545600, 1363392000],
    )


def test_read_delimited_roles_in_file_order_with_ignored_column(write_file):
    text = "u1\tx\ti1\t1000\n007\ty\ti2\t2000\n"
    interactions = read_delimited(
        write_file("data.tsv", text), sep="\t", columns=("user", "_", "item", "timestamp")
    )
    _check(interactions, ["u1", "007"], ["i1", "i2"], [1.0, 1.0], [1000, 2000])  # implicit: rating 1.0


def test_implicit_data_without_rating(write_file):
    text = "user,item,ts\n1,5,100\n2,6,200\n"
    path = write_file("clicks.csv", text)
    interactions = read_delimited(
        path, header=True, columns={"user": "user", "item": "item", "timestamp": "ts"}
    )
    _check(interactions, [1, 2], [5, 6], [1.0, 1.0], [100, 200])


def test_non_canonical_integer_ids_stay_strings(write_file):
    interactions = read_delimited(write_file("a.csv", "1,007,3,10\n2,7,3,10\n"))
    assert list(interactions.item_ids) == ["007", "7"]  # "007" and "7" must not collapse into one item


def test_unusual_but_valid_spellings_take_the_slow_path(write_file):
    # " 5", "+3" and a float-written integer timestamp are accepted, with the same result as clean data.
    interactions = read_movielens(write_file("r.dat", "1:: 10 ::+3::978300760.0\n\n2::11::5 ::5\n"))
    _check(interactions, [1, 2], [10, 11], [3, 5], [978300760, 5])


@pytest.mark.parametrize(
    ("text", "kwargs", "expected"),
    [
        ("1::10::5::100\n1::20::5\n", {}, ["line 2", "expected 4 fields", "found 3"]),
        ("1::10::abc::100\n", {}, ["line 1", "field 'rating'", "'abc'", "not a number", "Fix:"]),
        (
            "1::10::5::100\n1::20::nan::100\n",
            {},
            ["line 2", "field 'rating'", "'nan'", "not a finite number"],
        ),
        ("1::10::inf::100\n", {}, ["line 1", "field 'rating'", "'inf'", "not a finite number"]),
        (
            "1::10::6::100\n",
            {},
            ["line 1", "field 'rating'", "'6'", "outside the rating scale [1, 5]", "rating_scale"],
        ),
        ("1::10::0.5::100\n", {}, ["line 1", "'0.5'", "outside the rating scale"]),
        ("1::10::5::100.5\n", {}, ["line 1", "field 'timestamp'", "'100.5'", "not an integer"]),
        ("1::10::5::2001-01-01\n", {}, ["line 1", "field 'timestamp'", "not an integer"]),
        ("1::10::5::100\n1::10::5::-7\n", {}, ["line 2", "field 'timestamp'", "'-7'", "negative"]),
        ("1::::5::100\n", {}, ["line 1", "field 'item'", "is empty"]),
        ("::10::5::100\n", {}, ["line 1", "field 'user'", "is empty"]),
    ],
)
def test_movielens_bad_rows(write_file, text, kwargs, expected):
    path = write_file("ratings.dat", text)
    with pytest.raises(DataFormatError) as info:
        read_movielens(path, **kwargs)
    message = str(info.value)
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message


def test_rating_scale_can_be_changed_or_disabled(write_file):
    path = write_file("ratings.dat", "1::10::0.5::100\n1::11::7::100\n")
    assert list(read_movielens(path, rating_scale=None).ratings) == [0.5, 7.0]
    with pytest.raises(DataFormatError, match="line 2.*outside the rating scale \\[0.5, 5\\]"):
        read_movielens(path, rating_scale=(0.5, 5))


def test_first_bad_line_is_reported(write_file):
    text = "1::10::5::100\n1::11::5::100\n1::12::x::100\n1::13::5::1.5\n"
    with pytest.raises(DataFormatError, match="line 3: field 'rating'"):
        read_movielens(write_file("ratings.dat", text))
    text = "1::10::5::100\n1::13::5::1.5\n1::12::x::100\n"
    with pytest.raises(DataFormatError, match="line 2: field 'timestamp'"):
        read_movielens(write_file("ratings.dat", text))


def test_wrong_separator_suggests_sep(write_file):
    with pytest.raises(DataFormatError) as info:
        read_movielens(write_file("ratings.csv", "1,10,5,100\n"))
    message = str(info.value)
    assert "line 1" in message and "separated by '::'" in message and "--sep ','" in message


def test_header_line_numbers_count_the_header(write_file):
    text = "user,item,rating,timestamp\n1,2,5,100\n1,3,bad,100\n"
    with pytest.raises(DataFormatError, match="line 3: field 'rating' \\(column 'rating'\\) is 'bad'"):
        read_delimited(write_file("r.csv", text), header=True)


def test_missing_header_column(write_file):
    path = write_file("ratings.csv", "asin,reviewerID,overall,time\n1,2,5,100\n")
    with pytest.raises(DataFormatError) as info:
        read_delimited(path, header=True, columns=AMAZON_COLUMNS)
    message = str(info.value)
    assert "line 1" in message and "'unixReviewTime'" in message and "field 'timestamp'" in message
    assert "['asin', 'reviewerID', 'overall', 'time']" in message


@pytest.mark.parametrize(
    ("text", "header"), [("", False), ("\n\n", False), ("user,item,rating,timestamp\n", True)]
)
def test_empty_file(write_file, text, header):
    with pytest.raises(DataFormatError, match="no data rows"):
        read_delimited(write_file("empty.csv", text), header=header)


def test_truncated_gzip(write_file, tmp_path):
    data = gzip.compress(("1::10::5::978300760\n" * 200).encode())
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError) as info:
        read_movielens(path)
    message = str(info.value)
    assert str(path) in message and "truncated or corrupt; re-download it" in message


def test_column_roles_are_validated(write_file):
    path = write_file("r.csv", "1,2,100\n")
    with pytest.raises(ValueError, match="lack the required role"):
        read_delimited(path, columns=("user", "item", "rating"))
    with pytest.raises(ValueError, match="unknown column role 'time'"):
        read_delimited(path, columns=("user", "item", "time"))
    with pytest.raises(ValueError, match="given twice"):
        read_delimited(path, columns=("user", "item", "item", "timestamp"))
    with pytest.raises(ValueError, match="needs header=True"):
        read_delimited(path, columns={"user": "u", "item": "i", "timestamp": "t"})


def test_read_movielens_catalog(write_file):
    text = "1::Toy Story (1995)::Animation|Children's\n2::Misérables, Les (1995)::Drama\n"
    path = write_file("movies.dat", text, encoding="latin-1")
    assert read_movielens_catalog(path) == [1, 2]
    with pytest.raises(DataFormatError, match="line 2: field 'MovieID' is 'x'"):
        read_movielens_catalog(write_file("bad.dat", "1::A::B\nx::C::D\n"))
