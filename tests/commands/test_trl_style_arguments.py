"""TRL users' command-line habits on `hf-genrec pretrain | reward | posttrain`: a flat `--config` file (with `env:`),
every trainer config field as a flag with its type, TRL's spellings (`--output_dir`, `--model_name_or_path`,
`--push_to_hub --hub_model_id`), and "did you mean" on typos."""

import json
import os

import pytest
import torch
import yaml
from workspaces import posttrain_workspace

from hf_genrec import AutoModelForNextItemPrediction, HSTUForNextItemPrediction
from hf_genrec.cli import main


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared dataset and a (random) tiny pretrained recommender."""
    return posttrain_workspace(tmp_path_factory.mktemp("trl_style"))


def exit_status(argv) -> int:
    """`main`'s exit status, also when argparse exits (as it does for a config file it cannot read)."""
    try:
        return main(argv)
    except SystemExit as exit_:
        return exit_.code


def write_yaml(path, values):
    path.write_text(yaml.safe_dump(values))
    return str(path)


def test_flat_config_with_env_and_flag_overrides(workspace, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_GENREC_TEST_VARIABLE", raising=False)
    output = tmp_path / "asft"
    # TRL's flat style: every key at the top level; `1e-4` is a *string* to YAML 1.1 and must become a float.
    config = tmp_path / "asft.yaml"
    config.write_text(
        f"data: {workspace / 'data'}\nmodel_name_or_path: {workspace / 'pretrained'}\noutput_dir: {output}\n"
        "method: asft\nbaseline: user_mean\ntemperature: 0.5\nlearning_rate: 1e-4\nmax_steps: 2\n"
        "per_device_train_batch_size: 8\nlogging_steps: 1\ndisable_tqdm: true\n"
        "env:\n  HF_GENREC_TEST_VARIABLE: set-by-config\n"
    )
    code = main(["posttrain", "--config", str(config), "--gradient_accumulation_steps", "2",
                 "--report-to", "none", "--lr_scheduler_type", "linear"])
    assert code == 0
    assert os.environ["HF_GENREC_TEST_VARIABLE"] == "set-by-config"
    hyper = json.loads((output / "metrics.json").read_text())["hyperparameters"]
    assert hyper["learning_rate"] == 1e-4 and isinstance(hyper["learning_rate"], float)
    assert hyper["gradient_accumulation_steps"] == 2 and hyper["lr_scheduler_type"] == "linear"
    assert hyper["temperature"] == 0.5 and hyper["baseline"] == "user_mean"
    assert yaml.safe_load((output / "recipe.yaml").read_text())["method"] == {"name": "asft"}
    # What the trainer really ran with, from its saved arguments: 2 steps of 2 accumulated batches.
    assert json.loads((output / "metrics.json").read_text())["global_steps"] == 2

    # A flag beats the config file; dashes work as in TRL.
    again = tmp_path / "asft-flag"
    assert main(["posttrain", "--config", str(config), "--output_dir", str(again), "--learning-rate", "3e-4",
                 "--temperature", "2"]) == 0
    hyper = json.loads((again / "metrics.json").read_text())["hyperparameters"]
    assert hyper["learning_rate"] == 3e-4 and hyper["temperature"] == 2.0


def test_pretrain_takes_model_and_trainer_fields_as_flags(workspace, tmp_path):
    output = tmp_path / "pretrained"
    code = main(["pretrain", "--data", str(workspace / "data"), "--output_dir", str(output),
                 "--num_hidden_layers", "1", "--hidden_size", "16", "--attention_dim", "8", "--linear_dim", "8",
                 "--max_seq_len", "12", "--max_position_embeddings", "15", "--num_negatives", "8",
                 "--num_train_epochs", "1", "--per_device_train_batch_size", "16", "--weight_decay", "0.01",
                 "--disable_tqdm", "true"])
    assert code == 0
    model = AutoModelForNextItemPrediction.from_pretrained(output)
    assert model.config.num_hidden_layers == 1 and model.config.hidden_size == 16
    recipe = yaml.safe_load((output / "recipe.yaml").read_text())
    assert recipe["training"]["weight_decay"] == 0.01 and recipe["training"]["num_train_epochs"] == 1
    assert recipe["model"]["max_seq_len"] == 12


def test_nested_recipe_is_accepted_as_config(workspace, tmp_path):
    recipe = write_yaml(tmp_path / "recipe.yaml", {"method": {"name": "sft"},
                                                   "training": {"learning_rate": "2e-4", "disable_tqdm": True}})
    output = tmp_path / "sft"
    assert main(["posttrain", "--config", recipe, "--data", str(workspace / "data"), "--model",
                 str(workspace / "pretrained"), "--output", str(output), "--max-steps", "1", "--batch-size", "8"]) == 0
    assert json.loads((output / "metrics.json").read_text())["hyperparameters"]["learning_rate"] == 2e-4


@pytest.mark.parametrize(
    ("flags", "config", "expected"),
    [
        (["--learning_rat", "1e-4"], None, "Did you mean --learning_rate?"),
        (["--gradient_acumulation_steps", "2"], None, "Did you mean --gradient_accumulation_steps?"),
        (["--beta", "0.1"], None, "--beta does not apply to --method asft"),
        (["--learning_rate", "fast"], None, "learning_rate"),
        ([], {"learnin_rate": 0.1}, "Did you mean 'learning_rate'?"),
        ([], {"env": ["A"]}, "`env` must be a mapping"),
        (["--push_to_hub"], None, "hub_model_id"),
    ],
)
def test_typos_and_bad_values_name_the_fix(workspace, tmp_path, capsys, flags, config, expected):
    base = ["posttrain", "--method", "asft", "--baseline", "zero", "--data", str(workspace / "data"), "--model",
            str(workspace / "pretrained"), "--output", str(tmp_path / "run"), "--max-steps", "1"]
    if config is not None:
        base += ["--config", write_yaml(tmp_path / "config.yaml", config)]
    capsys.readouterr()
    assert exit_status([*base, *flags]) == 2
    error = capsys.readouterr().err
    assert expected in error, error
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_trl_push_to_hub_flags_upload_the_run(workspace, tmp_path, fake_hub):
    output = tmp_path / "sft"
    assert main(["posttrain", "--method", "sft", "--data", str(workspace / "data"), "--model",
                 str(workspace / "pretrained"), "--output", str(output), "--max-steps", "1", "--batch-size", "8",
                 "--push_to_hub", "--hub_model_id", "tester/sft-tiny"]) == 0
    files = fake_hub.files("tester/sft-tiny")
    assert "model.safetensors" in files and "item_vocabulary.json" in files, sorted(files)


def test_offline_dpo_from_logged_pairs_needs_no_reward_model(workspace, tmp_path, capsys):
    output = tmp_path / "dpo"
    assert main(["posttrain", "--method", "dpo", "--preferences", "logged", "--preference-ratings", "4,2",
                 "--data", str(workspace / "data"), "--model", str(workspace / "pretrained"), "--output",
                 str(output), "--max-steps", "2", "--batch-size", "8", "--beta", "0.2"]) == 0
    report = json.loads((output / "metrics.json").read_text())
    assert report["preferences"] == {"source": "logged", "ratings": [4.0, 2.0]}
    assert report["num_preference_pairs"] > 0 and report["global_steps"] == 2
    assert report["last_train_log"] is None or "loss" in report["last_train_log"]
    before = HSTUForNextItemPrediction.from_pretrained(workspace / "pretrained").state_dict()
    after = AutoModelForNextItemPrediction.from_pretrained(output).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)

    # Logged pairs are for DPO/IPO only; no pair at all is a clear error, not an empty run.
    capsys.readouterr()
    assert main(["posttrain", "--method", "sft", "--preferences", "logged", "--data", str(workspace / "data"),
                 "--model", str(workspace / "pretrained"), "--output", str(tmp_path / "sft")]) == 2
    assert "only --method dpo and ipo" in capsys.readouterr().err
    assert main(["posttrain", "--method", "ipo", "--preferences", "logged", "--preference-ratings", "6,5.5",
                 "--data", str(workspace / "data"), "--model", str(workspace / "pretrained"), "--output",
                 str(tmp_path / "ipo")]) == 2
    assert "no pair" in capsys.readouterr().err
