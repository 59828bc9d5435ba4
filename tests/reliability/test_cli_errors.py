"""The CLI error boundary and typed recipe/config validation (issue 17, items 6, 9 and 10).

Every expected failure of `hf-genrec` is one line `hf-genrec CMD: error: ...` on stderr and exit status 2;
a bug is one line that says so and exit status 1; `--debug` shows the traceback. Recipe values are checked
against the config field types (numeric strings coerced) before any model is built, and training settings
that cannot train anything are refused under their own names.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, workflows
from hf_genrec.cli import main as cli_main
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.recipes import RecipeError, build_training_config, load_recipe, resolve_recipe
from hf_genrec.trainers import PretrainConfig

TINY_MODEL = ("model:\n  hidden_size: 8\n  attention_dim: 4\n  linear_dim: 4\n  max_seq_len: 20\n"
              "  max_position_embeddings: 31\n  num_negatives: 4\n")


def error_line(capsys, command: str) -> str:
    """The one error line of a failed command (progress bars may share stderr, a traceback may not)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line[line.index("hf-genrec"):] for line in err.splitlines() if "hf-genrec" in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"hf-genrec {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared synthetic dataset and a tiny recipe."""
    root = tmp_path_factory.mktemp("cli_errors")
    ratings = write_movielens_file(generate_synthetic_interactions(num_users=30, num_items=25, mean_events=20, seed=3),
                                   root / "ratings.dat")
    assert cli_main(["prepare", "--input", str(ratings), "--output", str(root / "data")]) == 0
    (root / "tiny.yaml").write_text(TINY_MODEL + "training:\n  per_device_train_batch_size: 16\n  disable_tqdm: true\n")
    return root


def write_recipe(path, training: str, model: str = "") -> str:
    path.write_text(TINY_MODEL + model + "training:\n  disable_tqdm: true\n" + training)
    return str(path)


# ---------------------------------------------------------------------------------------------- recipe types
WRONG_TYPES = {
    "word for epochs": ("training:\n  num_train_epochs: three\n", "training.num_train_epochs", "'three'"),
    "word for seed": ("training:\n  seed: abc\n", "training.seed", "'abc'"),
    "fraction for seed": ("training:\n  seed: 1.5\n", "training.seed", "1.5"),
    "word for learning rate": ("training:\n  learning_rate: fast\n", "training.learning_rate", "'fast'"),
    "NaN learning rate": ("training:\n  learning_rate: .nan\n", "training.learning_rate", "nan"),
    "word for a boolean": ("training:\n  bf16: maybe\n", "training.bf16", "'maybe'"),
    "unquoted no for a strategy": ("training:\n  save_strategy: no\n", "training.save_strategy", "quote it"),
    "word for a model width": ("model:\n  hidden_size: wide\n", "model.hidden_size", "'wide'"),
    "word for a dropout": ("model:\n  input_dropout: high\n", "model.input_dropout", "'high'"),
    "list for a split": ("data:\n  split: [a, b]\n", "data.split", "['a', 'b']"),
}


@pytest.mark.parametrize("case", sorted(WRONG_TYPES))
def test_recipe_value_of_the_wrong_type_is_refused_when_read(case, tmp_path):
    text, field, shown = WRONG_TYPES[case]
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as error:
        load_recipe(path)
    message = str(error.value)
    assert "r.yaml" in message and field in message and shown in message and "Fix" in message, message


def test_method_field_of_the_wrong_type_is_refused_by_the_config_builder(tmp_path):
    from hf_genrec.trainers import DPOConfig

    with pytest.raises(RecipeError, match=r"training\.beta must be a finite number, got 'big'"):
        build_training_config(DPOConfig, {"output_dir": str(tmp_path), "beta": "big"})
    with pytest.raises(RecipeError, match=r"training\.eval_subsets must be a list whose items are each a string"):
        build_training_config(PretrainConfig, {"output_dir": str(tmp_path), "eval_subsets": ["all", 3]})


def test_unambiguous_spellings_are_coerced(tmp_path):
    # YAML 1.1 reads `1e-4` and `1e3` (no dot) and anything quoted as strings.
    path = tmp_path / "r.yaml"
    path.write_text('model:\n  hidden_size: "16"\n  use_time_bias: "false"\n'
                    'training:\n  learning_rate: 1e-4\n  num_train_epochs: "2"\n  max_steps: 1e3\n  bf16: "yes"\n'
                    "  eval_subsets: high_reward_target\n")
    recipe = load_recipe(path)
    assert recipe["model"] == {"hidden_size": 16, "use_time_bias": False}
    assert recipe["training"]["learning_rate"] == 1e-4 and isinstance(recipe["training"]["learning_rate"], float)
    assert recipe["training"]["max_steps"] == 1000 and isinstance(recipe["training"]["max_steps"], int)
    config = build_training_config(PretrainConfig, {**recipe["training"], "output_dir": str(tmp_path)})
    assert (config.learning_rate, config.num_train_epochs, config.max_steps) == (1e-4, 2, 1000)
    assert config.eval_subsets == ["high_reward_target"]  # one name for a list of names, not its characters
    assert HSTUConfig(num_items=10, **recipe["model"]).hidden_size == 16
    # A recipe dict is typed the same way, and the caller's dict is left as it was.
    given = {"training": {"seed": "7"}}
    assert resolve_recipe(given)["training"]["seed"] == 7 and given["training"]["seed"] == "7"


def test_cli_records_the_coerced_values(workspace, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "quoted.yaml",
                          '  learning_rate: 1e-3\n  max_steps: "2"\n  seed: "5"\n  per_device_train_batch_size: 16\n')
    out = tmp_path / "run"
    assert cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(out), "--recipe", recipe]) == 0
    recorded = yaml.safe_load((out / "recipe.yaml").read_text())["training"]
    assert recorded["learning_rate"] == 1e-3 and recorded["max_steps"] == 2 and recorded["seed"] == 5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seed"] == 5


def test_cli_wrong_type_is_one_line_exit_2(workspace, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", "  num_train_epochs: three\n")
    code = cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(tmp_path / "o"), "--recipe", recipe])
    assert code == 2
    line = error_line(capsys, "pretrain")
    assert "training.num_train_epochs" in line and "'three'" in line
    assert not (tmp_path / "o").exists()  # refused before the run folder was made


def test_recipe_that_is_a_directory_or_not_text(tmp_path):
    with pytest.raises(RecipeError, match="is a directory"):
        load_recipe(tmp_path)
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(b"\x80\x81\xff\x00" * 8)
    with pytest.raises(RecipeError, match=r"model\.safetensors: not a UTF-8 text file"):
        load_recipe(binary)


# ------------------------------------------------------------------------------- settings that train nothing
@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_non_positive_epochs_are_refused_and_nothing_is_saved(epochs, workspace, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(out),
                     "--recipe", str(workspace / "tiny.yaml"), "--epochs", epochs])
    assert code == 2
    line = error_line(capsys, "pretrain")
    assert "num_train_epochs" in line and "--epochs" in line and "--max-steps" in line
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()


def test_epochs_zero_with_positive_max_steps_still_trains(tmp_path):
    config = PretrainConfig(output_dir=str(tmp_path), num_train_epochs=0, max_steps=3)
    assert config.max_steps == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("gradient_accumulation_steps", 0),
        ("gradient_accumulation_steps", -2),
        ("per_device_train_batch_size", 0),
        ("per_device_eval_batch_size", 0),
        ("seed", -1),
        ("learning_rate", -1e-3),
        ("num_train_epochs", float("inf")),
    ],
)
def test_training_settings_that_cannot_train_are_named(field, value, tmp_path):
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        PretrainConfig(output_dir=str(tmp_path), **{field: value})


def test_cli_gradient_accumulation_zero_is_not_reported_as_batch_size(workspace, tmp_path, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", "  gradient_accumulation_steps: 0\n")
    code = cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(tmp_path / "o"), "--recipe", recipe])
    assert code == 2
    line = error_line(capsys, "pretrain")
    assert "gradient_accumulation_steps must be a positive integer, got 0" in line and "batch_size must" not in line


# ------------------------------------------------------------------------------------------- the boundary
def test_output_path_that_is_a_file(workspace, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code = cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(blocker),
                     "--recipe", str(workspace / "tiny.yaml"), "--max-steps", "1"])
    assert code == 2
    line = error_line(capsys, "pretrain")
    assert "afile" in line and "--output" in line and "Fix" in line
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write to a read-only folder")
def test_output_under_a_read_only_folder(saved_model, workspace, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code = cli_main(["evaluate", "--model", str(saved_model), "--data", str(workspace / "data"),
                         "--output", str(locked / "sub" / "m.json")])
    finally:
        locked.chmod(0o755)
    assert code == 2
    line = error_line(capsys, "evaluate")
    assert "Permission denied" in line and "--output" in line and "Fix" in line


@pytest.fixture(scope="module")
def saved_model(workspace):
    """A tiny pretrained model on the workspace's data (saved with its vocabulary)."""
    out = workspace / "model"
    assert cli_main(["pretrain", "--data", str(workspace / "data"), "--output", str(out),
                     "--recipe", str(workspace / "tiny.yaml"), "--max-steps", "1"]) == 0
    return out


def test_truncated_safetensors(saved_model, workspace, tmp_path, capsys):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in saved_model.iterdir():
        if path.is_file():
            (damaged / path.name).write_bytes(path.read_bytes())
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code = cli_main(["evaluate", "--model", str(damaged), "--data", str(workspace / "data"),
                     "--output", str(tmp_path / "m.json")])
    assert code == 2
    line = error_line(capsys, "evaluate")
    assert "safetensors" in line and ("damaged" in line or "--model" in line)


def test_missing_model_path(workspace, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "model"
    code = cli_main(["evaluate", "--model", str(missing), "--data", str(workspace / "data"),
                     "--output", str(tmp_path / "m.json")])
    assert code == 2
    line = error_line(capsys, "evaluate")
    assert f"--model {str(missing)!r} does not exist" in line and "Fix" in line


def test_prepared_data_with_indices_past_its_vocabulary(workspace, tmp_path, capsys):
    data = tmp_path / "data"
    for path in (workspace / "data").rglob("*"):
        if path.is_file():
            target = data / path.relative_to(workspace / "data")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    vocabulary = json.loads((data / "item_vocabulary.json").read_text())
    vocabulary["item_ids"] = vocabulary["item_ids"][:5]  # the sequences still hold indices up to 25
    (data / "item_vocabulary.json").write_text(json.dumps(vocabulary))
    code = cli_main(["pretrain", "--data", str(data), "--output", str(tmp_path / "o"),
                     "--recipe", str(workspace / "tiny.yaml"), "--max-steps", "1"])
    assert code == 2
    assert "vocabulary" in error_line(capsys, "pretrain")


def size_mismatch(*args, **kwargs):
    """What loading weights saved with another model width raises (torch's own error)."""
    config = {"num_items": 10, "attention_dim": 4, "linear_dim": 4, "num_negatives": 2}
    saved = HSTUForNextItemPrediction(HSTUConfig(hidden_size=8, **config)).state_dict()
    HSTUForNextItemPrediction(HSTUConfig(hidden_size=16, **config)).load_state_dict(saved)


def test_weights_that_do_not_fit_the_model(monkeypatch, capsys):
    monkeypatch.setattr(workflows, "evaluate_model", size_mismatch)
    assert cli_main(["evaluate", "--model", "me/model", "--data", "D", "--output", "m.json"]) == 2
    line = error_line(capsys, "evaluate")
    assert "size mismatch for" in line and "recipe.yaml" in line and "--overwrite" in line


def raise_(error):
    def call(*args, **kwargs):
        raise error
    return call


def test_a_bug_is_one_line_exit_1_that_points_to_debug(monkeypatch, capsys):
    monkeypatch.setattr(workflows, "pretrain", raise_(TypeError("unsupported operand type(s) for +: 'int' and 'str'")))
    assert cli_main(["pretrain", "--data", "D", "--output", "O"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("hf-genrec pretrain: internal error: TypeError: unsupported operand") and "--debug" in err
    monkeypatch.setattr(workflows, "pretrain", raise_(KeyError("bucket")))  # a bare key is a bug, not an input
    assert cli_main(["pretrain", "--data", "D", "--output", "O"]) == 1


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_the_traceback(where, monkeypatch):
    monkeypatch.setattr(workflows, "pretrain", raise_(ValueError("bad value")))
    command = ["pretrain", "--data", "D", "--output", "O"]
    with pytest.raises(ValueError, match="bad value"):
        cli_main(["--debug", *command] if where == "before" else [*command, "--debug"])


def test_keyboard_interrupt_is_not_swallowed(monkeypatch):
    monkeypatch.setattr(workflows, "pretrain", raise_(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cli_main(["pretrain", "--data", "D", "--output", "O"])


def test_bad_flag_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["pretrain", "--data", "D", "--output", "O", "--epochs", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"hf-genrec pretrain: error: argument --epochs: invalid float value: 'three'\. "
                        r"See `hf-genrec pretrain --help`\.\n", err), err


def test_expected_failures_keep_their_message_on_one_line(monkeypatch, capsys):
    monkeypatch.setattr(workflows, "pretrain", raise_(ValueError("first line\n  second line")))
    assert cli_main(["pretrain", "--data", "D", "--output", "O"]) == 2
    assert error_line(capsys, "pretrain") == "hf-genrec pretrain: error: first line second line"

