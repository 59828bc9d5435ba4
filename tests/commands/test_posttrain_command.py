"""`hf-genrec posttrain`: every method from the command line on a tiny prepared dataset, model and ensemble."""

import json
from pathlib import Path

import pytest
import yaml
from workspaces import posttrain_workspace

from hf_genrec import (
    AutoModelForNextItemPrediction,
    HSTUForNextItemPrediction,
)
from hf_genrec.cli import main
from hf_genrec.evaluation.metrics import default_subsets, metric_key
from hf_genrec.recipes import build_training_config, load_recipe
from hf_genrec.trainers.base import cpu_has_native_bf16
from hf_genrec.workflows.posttrain import METHODS

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "movielens-1m"
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A prepared dataset, a (random) tiny pretrained recommender and a 2-member reward ensemble."""
    return posttrain_workspace(tmp_path_factory.mktemp("posttrain"), reward=True)


def run(workspace, output, *flags):
    return main(["posttrain", "--data", str(workspace / "data"), "--model", str(workspace / "pretrained"),
                 "--output", str(output), "--max-steps", "2", "--batch-size", "8", *flags])


@pytest.mark.parametrize("method", list(METHODS))
def test_posttrain_command_runs_every_method(method, workspace, tmp_path):
    output = tmp_path / method
    assert run(workspace, output, "--method", method, "--reward-model", str(workspace / "reward")) == 0
    report = json.loads((output / "metrics.json").read_text())
    assert report["method"] == method and report["global_steps"] == 2
    # Every subset's ranking metrics are reported, under the keys metric_key gives them, and they are ranking
    # metrics of one set of ranks: NDCG@10 <= HR@10 <= HR@50 (a mislabelled or mixed-up key breaks this).
    test = report["test"]
    for subset in default_subsets(has_windows=False):
        hr10, ndcg10, hr50 = (test[metric_key(name, subset)] for name in ("hr@10", "ndcg@10", "hr@50"))
        assert 0.0 <= ndcg10 <= hr10 <= hr50 <= 1.0
    assert test[metric_key("num_users")] > 0
    assert isinstance(AutoModelForNextItemPrediction.from_pretrained(output), HSTUForNextItemPrediction)
    assert (output / "item_vocabulary.json").is_file()
    assert "Method: **" in (output / "README.md").read_text()
    assert yaml.safe_load((output / "recipe.yaml").read_text())["method"] == {"name": method}


def test_posttrain_command_with_lora_and_offline_asft(workspace, tmp_path):
    output = tmp_path / "lora"
    assert run(workspace, output, "--method", "asft", "--baseline", "user_mean", "--temperature", "0.5",
               "--lora-r", "2") == 0
    assert (output / "adapter" / "adapter_config.json").is_file()
    assert json.loads((output / "metrics.json").read_text())["hyperparameters"]["temperature"] == 0.5


def test_posttrain_command_errors(workspace, tmp_path, capsys):
    assert run(workspace, tmp_path / "a", "--method", "dpo") == 2
    assert "--reward-model" in capsys.readouterr().err
    assert run(workspace, tmp_path / "b", "--method", "asft") == 2  # the default value baseline needs one too
    assert "--baseline user_mean" in capsys.readouterr().err
    assert run(workspace, tmp_path / "c", "--method", "asft", "--beta", "0.1") == 2
    assert "--beta does not apply to --method asft" in capsys.readouterr().err
    assert run(workspace, tmp_path / "d", "--method", "asft", "--temperature", "-1", "--baseline", "zero") == 2
    assert "temperature" in capsys.readouterr().err


@pytest.mark.parametrize("method", list(METHODS))
def test_movielens_recipes_build_their_configs(method, tmp_path):
    recipe = load_recipe(RECIPES / f"{method}.yaml")
    assert recipe["method"]["name"] == method
    config_class, _, implied = METHODS[method]
    args = build_training_config(config_class, {**implied, **recipe["training"], "output_dir": str(tmp_path)})
    # bf16 is the one field the config may change: a CPU without bf16 instructions trains in fp32 (GenRecConfig).
    changed = {"bf16"} if args.use_cpu and not cpu_has_native_bf16() else set()
    assert all(getattr(args, key) == value for key, value in recipe["training"].items() if key not in changed)
