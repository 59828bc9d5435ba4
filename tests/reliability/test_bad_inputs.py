"""Bad inputs across loaders, splits, the CLI, configs and inference.

Each case asserts a specific error type and a message that names the file/line/field/value and the fix.
No bad input may produce a silent wrong result or only a raw stack trace from deep inside torch.
"""

from __future__ import annotations

import gzip

import pytest
import torch

from hf_genrec import AutoModelForNextItemPrediction, HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.cli import main as cli_main
from hf_genrec.data import (
    DataFormatError,
    ItemVocabulary,
    SequenceCollator,
    UnknownItemError,
    build_sequences,
    generate_synthetic_interactions,
    leave_one_out_split,
    read_delimited,
    read_movielens,
    split_sequences,
    write_movielens_file,
)
from hf_genrec.recipes import RecipeError, load_recipe
from hf_genrec.trainers import PretrainConfig

# (file name, content, expected message fragments) for the MovieLens loader.
MOVIELENS_CASES = {
    "malformed line": ("1::10::5::100\n1::11::4\n", ["line 2", "4 fields", "Fix"]),
    "wrong separator": ("1,10,5,100\n", ["line 1", "separator", "--sep ','"]),
    "non-numeric rating": ("1::10::abc::100\n", ["line 1", "'rating'", "'abc'", "Fix"]),
    "NaN rating": ("1::10::5::100\n1::11::nan::100\n", ["line 2", "'rating'", "nan", "Fix"]),
    "infinite rating": ("1::10::inf::100\n", ["line 1", "'rating'", "inf", "Fix"]),
    "rating outside the scale": ("1::10::7::100\n", ["line 1", "'rating'", "'7'", "scale", "Fix"]),
    "timestamp not an integer": ("1::10::5::100.5\n", ["line 1", "'timestamp'", "100.5", "Fix"]),
    "negative timestamp": ("1::10::5::-3\n", ["line 1", "'timestamp'", "-3", "Fix"]),
    "empty item field": ("1::::5::100\n", ["line 1", "'item'", "Fix"]),
    "empty file": ("", ["no data rows", "Fix"]),
    "blank lines only": ("\n\n", ["no data rows"]),
}


@pytest.mark.parametrize("case", sorted(MOVIELENS_CASES))
def test_movielens_loader_rejects(case, tmp_path):
    content, fragments = MOVIELENS_CASES[case]
    path = tmp_path / "ratings.dat"
    path.write_text(content)
    with pytest.raises(DataFormatError) as error:
        read_movielens(path)
    message = str(error.value)
    assert "ratings.dat" in message
    for fragment in fragments:
        assert fragment in message, (case, message)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(b"1::10::5::100\n" * 2000)
    path = tmp_path / "ratings.dat.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"ratings\.dat\.gz.*truncated or corrupt.*re-download"):
        read_movielens(path)


def test_missing_header_column(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("user,item,stars\nu1,i1,5\n")
    with pytest.raises(DataFormatError) as error:
        read_delimited(path, header=True, columns={"user": "user", "item": "item", "rating": "stars", "timestamp": "ts"})
    assert "'ts'" in str(error.value) and "columns found" in str(error.value) and "Fix" in str(error.value)


def test_csv_without_a_timestamp_role(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("u1,i1,5\n")
    with pytest.raises((DataFormatError, ValueError), match="timestamp"):
        read_delimited(path, columns=("user", "item", "rating"))


def test_duplicate_rows_policy_error(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n1::11::4::101\n1::10::5::100\n")
    interactions = read_movielens(path)
    with pytest.raises(DataFormatError, match="duplicate"):
        build_sequences(interactions, duplicates="error")
    dropped, _ = build_sequences(interactions, duplicates="drop")
    assert dropped[0]["item_ids"] and len(dropped[0]["item_ids"]) == 2
    kept, _ = build_sequences(interactions, duplicates="keep")
    assert len(kept[0]["item_ids"]) == 3


def test_users_too_short_for_the_split(tmp_path):
    path = tmp_path / "ratings.dat"
    path.write_text("1::10::5::100\n1::11::4::101\n2::10::3::100\n")
    sequences, _ = build_sequences(read_movielens(path))
    with pytest.raises((DataFormatError, ValueError), match="at least 3 events"):
        leave_one_out_split(sequences)


def test_unknown_split_method():
    sequences, _ = build_sequences(generate_synthetic_interactions(num_users=5, num_items=20, mean_events=20, seed=0))
    with pytest.raises(ValueError, match="leave-one-out"):
        split_sequences(sequences, "random")


def test_unknown_item_in_vocabulary():
    vocabulary = ItemVocabulary.from_items([1, 2, 3])
    with pytest.raises(UnknownItemError) as error:
        vocabulary.encode([1, 99])
    assert "99" in str(error.value)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return HSTUForNextItemPrediction(HSTUConfig(num_items=30, hidden_size=16, attention_dim=8, linear_dim=8,
                                                max_seq_len=10, max_position_embeddings=21, num_negatives=4)).eval()


def test_history_longer_than_max_seq_len_is_truncated_not_an_error(tiny_model):
    collator = SequenceCollator(max_seq_len=10)
    history = list(range(1, 26))
    row = {"user_id": "u", "item_ids": history, "ratings": [4.0] * 25, "timestamps": list(range(25)),
           "target_item_id": 30, "target_rating": 5.0, "target_timestamp": 30}
    batch = collator([row])
    assert batch["item_ids"][0].tolist() == history[-10:]  # the most recent events
    assert batch["history_item_ids"][0].tolist() == history  # all of them stay excluded at ranking time
    recommended = tiny_model.recommend(batch["item_ids"], batch["attention_mask"], k=5,
                                       exclude_item_ids=batch["history_item_ids"]).item_ids[0].tolist()
    assert not set(recommended) & set(history)


def test_too_long_input_to_the_model_names_the_fix(tiny_model):
    with pytest.raises(ValueError, match="most recent 10 events"):
        tiny_model(torch.ones(1, 22, dtype=torch.long))


def test_recommend_with_bad_k(tiny_model):
    with pytest.raises(ValueError, match="k must be at least 1"):
        tiny_model.recommend(torch.tensor([[1, 2]]), k=0)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"num_attention_heads": 0}, "num_attention_heads"),
        ({"hidden_size": -4}, "hidden_size"),
        ({"similarity_temperature": -0.05}, "similarity_temperature"),
        ({"linear_dropout": 1.0}, "linear_dropout"),
        ({"max_seq_len": 300, "max_position_embeddings": 211}, "max_position_embeddings"),
        ({"loss_type": "softmax"}, "loss_type"),
    ],
)
def test_impossible_model_config(overrides, field):
    with pytest.raises(ValueError, match=field):
        HSTUConfig(num_items=10, **overrides)


def test_bad_training_config_values(tmp_path):
    with pytest.raises(ValueError, match="eval_subsets"):
        PretrainConfig(output_dir=str(tmp_path), eval_subsets=["everyone"])
    with pytest.raises(ValueError, match="early_stopping_patience"):
        PretrainConfig(output_dir=str(tmp_path), early_stopping_patience=0)


def test_recipe_errors(tmp_path):
    bad_section = tmp_path / "a.yaml"
    bad_section.write_text("modle:\n  hidden_size: 8\n")
    with pytest.raises(RecipeError, match="modle.*Did you mean 'model'"):
        load_recipe(bad_section)
    bad_field = tmp_path / "b.yaml"
    bad_field.write_text("model:\n  hidden_sise: 8\n")
    with pytest.raises(RecipeError, match="hidden_sise.*hidden_size"):
        load_recipe(bad_field)
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "missing.yaml")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    ratings = write_movielens_file(generate_synthetic_interactions(num_users=40, num_items=30, mean_events=20, seed=4),
                                   root / "ratings.dat")
    assert cli_main(["prepare", "--input", str(ratings), "--output", str(root / "data")]) == 0
    return root


def test_output_directory_holding_another_run(prepared, capsys):
    other = prepared / "other"
    other.mkdir()
    (other / "notes.txt").write_text("someone else's files")
    assert cli_main(["prepare", "--input", str(prepared / "ratings.dat"), "--output", str(other)]) == 2
    assert "already holds other files" in capsys.readouterr().err
    assert (other / "notes.txt").exists()


def test_vocabulary_that_does_not_match_the_checkpoint(prepared, tmp_path, capsys):
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=31, hidden_size=8, attention_dim=4, linear_dim=4))
    model.save_pretrained(tmp_path / "model")
    ItemVocabulary.from_items(range(100, 131)).save_pretrained(tmp_path / "model")
    code = cli_main(["evaluate", "--model", str(tmp_path / "model"), "--data", str(prepared / "data"),
                     "--output", str(tmp_path / "m.json")])
    assert code == 2
    assert "vocabulary" in capsys.readouterr().err


def test_model_checkpoint_that_is_not_hstu(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert", "hidden_size": 8}')
    with pytest.raises((ValueError, OSError)):
        AutoModelForNextItemPrediction.from_pretrained(tmp_path)


def test_unknown_cli_choice_is_rejected_by_argparse(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["prepare", "--input", "x", "--output", "y", "--format", "parquet"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'parquet'" in capsys.readouterr().err
