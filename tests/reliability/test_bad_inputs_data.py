"""Bad inputs of `prepare` and the data files (issue 17: items 3, 4, 5, 6 and 10): header names against column roles,
values checked in the dtype they are stored in, strict JSON, one writer per output folder, item vocabularies whose
`item_ids` is not a list, a directory as `--input`, csv flags given with `--format movielens`.

Each case fails on the code before the fix: it loaded swapped or infinite data, mixed two writers' files, loaded a
string as one item per character, or gave the wrong cause.
"""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

import hf_genrec.data.prepared as prepared_module
from hf_genrec.cli import main as cli_main
from hf_genrec.data import (
    DataFormatError,
    ItemVocabulary,
    generate_synthetic_interactions,
    read_delimited,
    read_movielens,
    write_movielens_file,
)
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.utils.io import write_json

# ---------------------------------------------------------------------------------------------- header names (3)
SWAPPED_HEADER = "item,user,rating,timestamp\n10,u1,5,100\n20,u2,4,200\n10,u2,3,300\n"


def test_header_in_another_order_is_read_by_name(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(SWAPPED_HEADER)
    interactions = read_delimited(path, header=True)
    assert list(interactions.user_ids) == ["u1", "u2", "u2"]
    assert interactions.item_ids.tolist() == [10, 20, 10]
    assert interactions.ratings.tolist() == [5.0, 4.0, 3.0]


def test_prepare_reads_a_header_by_name(tmp_path, capsys):
    """The issue's case through the command line: the header's order wins over the default role order."""
    (tmp_path / "ratings.csv").write_text(SWAPPED_HEADER)
    code = cli_main(["prepare", "--input", str(tmp_path / "ratings.csv"), "--format", "csv", "--header",
                     "--output", str(tmp_path / "data")])
    assert code == 0, capsys.readouterr().err
    assert ItemVocabulary.from_pretrained(tmp_path / "data").raw_ids == [10, 20]  # the items, not the users


def test_recbole_typed_header_is_read_by_name(tmp_path):
    path = tmp_path / "ml.inter"
    path.write_text("item_id:token\tuser_id:token\trating:float\ttimestamp:float\n7\t1\t4\t978300760.0\n")
    interactions = read_delimited(path, sep="\t", header=True)
    assert interactions.user_ids.tolist() == [1] and interactions.item_ids.tolist() == [7]


@pytest.mark.parametrize(
    "header, columns, fragments",
    [
        # The case: positional roles that contradict the header.
        ("item,user,rating,timestamp", ("user", "item", "rating", "timestamp"),
         ["column 1 is 'item' (the item)", "reads it as the user", "--columns item,user,rating,timestamp"]),
        ("userId,movieId,rating,timestamp", ("item", "user", "rating", "timestamp"), ["'userId' (the user)"]),
        ("user,item,stars,time", ("user", "item", "timestamp", "rating"), ["'stars' (the rating)"]),
        # A role put on an unnamed column while the header names it elsewhere.
        ("customer,user,item,ts", ("user", "_", "item", "timestamp"),
         ["reads column 1 ('customer') as the user", "column 2 ('user') the user"]),
    ],
)
def test_positional_columns_that_contradict_the_header(tmp_path, header, columns, fragments):
    path = tmp_path / "ratings.csv"
    path.write_text(f"{header}\n1,2,3,100\n")
    with pytest.raises(DataFormatError) as error:
        read_delimited(path, header=True, columns=columns)
    message = str(error.value)
    for fragment in [*fragments, "line 1", "swapped", "Fix"]:
        assert fragment in message, message


def test_header_naming_a_role_twice_is_ambiguous(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,user_id,item,timestamp\nu1,7,10,100\n")
    with pytest.raises(DataFormatError, match=r"\['user', 'user_id'\] all look like the user.*ambiguous.*user=user"):
        read_delimited(path, header=True)
    # Saying which one by name resolves it.
    interactions = read_delimited(path, header=True, columns={"user": "user_id", "item": "item", "timestamp": "timestamp"})
    assert interactions.user_ids.tolist() == [7]


def test_header_that_names_no_role_keeps_the_default_order(tmp_path):
    """Valid but unusual: a header of unknown names gives no evidence against the documented default order."""
    path = tmp_path / "ratings.csv"
    path.write_text("a,b,c,d\nu1,10,5,100\n")
    interactions = read_delimited(path, header=True)
    assert interactions.user_ids.tolist() == ["u1"] and interactions.item_ids.tolist() == [10]
    # And positional roles that agree with a header, with an ignored column, still read as given.
    path.write_text("user,extra,item,timestamp\nu1,x,10,100\n")
    assert read_delimited(path, header=True, columns=("user", "_", "item", "timestamp")).item_ids.tolist() == [10]


# ----------------------------------------------------------------------------------- dtype and strict JSON (4)
@pytest.mark.parametrize("rating", ["1e39", "-4e38", " 3.5e38"])  # " 3.5e38": the per-line path finds it too
def test_rating_beyond_float32_is_refused(tmp_path, rating):
    path = tmp_path / "ratings.dat"
    path.write_text(f"1::10::5::100\n1::11::{rating}::101\n")
    with pytest.raises(DataFormatError) as error:
        read_movielens(path, rating_scale=None)
    message = str(error.value)
    assert "line 2" in message and "'rating'" in message and rating.strip() in message and "float32" in message


def test_largest_float32_rating_is_kept(tmp_path):
    """The boundary: the largest finite float32 still loads, as itself."""
    largest = float(np.finfo(np.float32).max)
    path = tmp_path / "ratings.csv"
    path.write_text(f"u1,10,{largest!r},100\n")
    assert read_delimited(path).ratings.tolist() == [largest]


def test_prepare_refuses_an_overflowing_rating_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "ratings.csv").write_text("u1,10,5,100\nu1,11,1e39,101\nu1,12,3,102\n")
    code = cli_main(["prepare", "--input", str(tmp_path / "ratings.csv"), "--format", "csv",
                     "--output", str(tmp_path / "data")])
    assert code == 2
    assert "float32" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_write_json_refuses_non_finite_numbers_naming_the_key(tmp_path):
    path = tmp_path / "prepare.json"
    with pytest.raises(ValueError, match=r"prepare\.json: key 'counts\.ratings\[1\]' is inf"):
        write_json(path, {"num_users": 3, "counts": {"ratings": [1.0, math.inf]}})
    assert not path.exists()
    with pytest.raises(ValueError, match="'rating_min' is nan"):
        write_json(path, {"rating_min": math.nan})
    # Metrics opt in: a mean over no users is NaN, and the file reads back as such.
    write_json(path, {"hr@10": math.nan}, allow_nan=True)
    assert math.isnan(json.loads(path.read_text())["hr@10"])


# ------------------------------------------------------------------------------------- one writer per folder (5)
def _ratings(tmp_path, name, seed):
    interactions = generate_synthetic_interactions(num_users=12, num_items=25, mean_events=20, seed=seed)
    return write_movielens_file(interactions, tmp_path / name)


def test_second_concurrent_prepare_into_one_folder_fails(tmp_path, monkeypatch):
    """Writer A is held in the middle of its run; writer B into the same folder must fail, not report success."""
    first, second = _ratings(tmp_path, "a.dat", 1), _ratings(tmp_path, "b.dat", 2)
    output = tmp_path / "data"
    started, release = threading.Event(), threading.Event()
    build_sequences = prepared_module.build_sequences

    def held_build(interactions, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            started.set()
            assert release.wait(30)
        return build_sequences(interactions, *args, **kwargs)

    monkeypatch.setattr(prepared_module, "build_sequences", held_build)
    results = {}
    writer_a = threading.Thread(target=lambda: results.setdefault("a", prepare_dataset(first, output)))
    writer_a.start()
    try:
        assert started.wait(30)
        with pytest.raises(FileExistsError, match="being written by another process"):
            prepare_dataset(second, output)
    finally:
        release.set()
        writer_a.join(30)
    assert results["a"]["input"] == str(first)
    assert json.loads((output / "prepare.json").read_text())["input"] == str(first)
    splits, vocabulary = load_prepared(output)
    assert vocabulary.num_items == results["a"]["num_items"] and len(splits["train"]) == results["a"]["num_users"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.dat", "b.dat", "data"]  # no lock, no staging


def test_failed_overwrite_leaves_the_earlier_folder_intact(tmp_path, monkeypatch):
    """A run that fails after writing part of its output must not leave a mix of two runs' files."""
    first, second = _ratings(tmp_path, "a.dat", 1), _ratings(tmp_path, "b.dat", 3)
    output = tmp_path / "data"
    prepare_dataset(first, output)
    before = {path.relative_to(output): path.read_bytes() for path in output.rglob("*") if path.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(prepared_module, "write_json", disk_full)
    with pytest.raises(OSError, match="No space left"):
        prepare_dataset(second, output, overwrite=True)
    after = {path.relative_to(output): path.read_bytes() for path in output.rglob("*") if path.is_file()}
    assert after == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.dat", "b.dat", "data"]


def test_overwrite_replaces_a_prepared_folder_but_not_foreign_files(tmp_path):
    first, second = _ratings(tmp_path, "a.dat", 1), _ratings(tmp_path, "b.dat", 3)
    output = tmp_path / "data"
    prepare_dataset(first, output)
    manifest = prepare_dataset(second, output, overwrite=True)  # still allowed: an earlier prepare of its own
    assert json.loads((output / "prepare.json").read_text()) == manifest
    (output / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"did not write \(\['notes\.txt'\]\)"):
        prepare_dataset(first, output, overwrite=True)
    assert (output / "notes.txt").read_text() == "mine"
    assert json.loads((output / "prepare.json").read_text()) == manifest


# --------------------------------------------------------------------------------------- vocabulary item_ids (6)
@pytest.mark.parametrize(
    "item_ids, fragment",
    [
        ("abc", "JSON string"),  # loaded as the three items 'a', 'b', 'c' before
        ({"a": 1}, "JSON object"),  # loaded as its keys before
        (5, "JSON number"),  # a raw TypeError before
        ([1.5, 2.5], "item id at position 0 is 1.5"),
        ([1, "2"], "mix int and str"),
    ],
)
def test_vocabulary_file_whose_item_ids_are_not_a_list_of_ids(tmp_path, item_ids, fragment):
    (tmp_path / "item_vocabulary.json").write_text(json.dumps({"version": 1, "id_type": "str", "item_ids": item_ids}))
    with pytest.raises(ValueError) as error:
        ItemVocabulary.from_pretrained(tmp_path)
    message = str(error.value)
    assert "item_vocabulary.json" in message and "'item_ids'" in message and fragment in message, message


def test_vocabulary_of_a_string_is_refused():
    with pytest.raises(ValueError, match="item_ids must be a list of ids, not a str"):
        ItemVocabulary("abc")


# ------------------------------------------------------------------------------------------- wrong causes (10)
def test_directory_as_input_is_named_a_directory(tmp_path, capsys):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    (folder / "ratings.dat").write_text("1::10::5::100\n")
    code = cli_main(["prepare", "--input", str(folder), "--output", str(tmp_path / "data")])
    assert code == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "does not exist" not in err and "ratings.dat" in err
    with pytest.raises(DataFormatError, match="is a directory"):
        read_movielens(folder)


@pytest.mark.parametrize(
    "flags, named",
    [(["--sep", ","], "--sep ','"), (["--columns", "item,user,rating,timestamp"], "--columns"), (["--header"], "--header")],
)
def test_csv_flags_with_movielens_format_are_refused(tmp_path, capsys, flags, named):
    ratings = _ratings(tmp_path, "ratings.dat", 1)
    code = cli_main(["prepare", "--input", str(ratings), "--format", "movielens", "--output", str(tmp_path / "data"),
                     *flags])
    assert code == 2
    err = capsys.readouterr().err
    assert named in err and "--format csv" in err
    assert not (tmp_path / "data").exists()
    with pytest.raises(ValueError, match="applies to --format csv only"):  # the Python API too
        prepare_dataset(ratings, tmp_path / "data2", sep=",")
