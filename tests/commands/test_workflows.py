"""The shared shape of the training workflows (`hf_genrec.workflows.common`) and the command line's mapping of
its flags onto them: `RunOptions` as an object or as keywords, one library call per subcommand."""

import json
import os

import pytest
import yaml

from hf_genrec import workflows
from hf_genrec.cli import main
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset, prepared_dataset_name
from hf_genrec.recipes import resolve_recipe
from hf_genrec.workflows import RunOptions, posttrain, pretrain, reward

TINY_RECIPE = {
    "description": "tiny",
    "model": {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 20,
              "max_position_embeddings": 21, "num_negatives": 8},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16, "disable_tqdm": True, "seed": 1},
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("workflows")
    interactions = generate_synthetic_interactions(num_users=30, num_items=25, mean_events=20, seed=4)
    prepare_dataset(write_movielens_file(interactions, root / "raw" / "ratings.dat"), root / "data")
    return root / "data"


def test_keywords_override_the_options_object():
    options = RunOptions(epochs=3, seed=1, overwrite=True)
    merged = RunOptions.merge(options, {"seed": 7, "max_steps": 5}, caller="pretrain")
    assert (merged.epochs, merged.seed, merged.max_steps, merged.overwrite) == (3, 7, 5, True)
    assert options.seed == 1  # the caller's object is not modified
    assert RunOptions.merge(None, {}, caller="pretrain") == RunOptions()
    with pytest.raises(TypeError, match=r"pretrain\(\) got unexpected keyword argument\(s\) \['epoch'\]"):
        RunOptions.merge(None, {"epoch": 2}, caller="pretrain")


def test_training_values_precedence():
    options = RunOptions(epochs=2, seed=None, max_steps=4, training_overrides={"learning_rate": 0.1, "bf16": False})
    values = options.training_values({"learning_rate": 0.5, "seed": 3, "num_train_epochs": 9, "loss_type": "ipo"},
                                     implied={"loss_type": "sigmoid", "beta": 0.1}, overrides={"beta": 0.3})
    # implied < recipe < training_overrides < overrides < epochs/seed/max_steps; unset flags leave the recipe's.
    assert values == {"loss_type": "ipo", "beta": 0.3, "learning_rate": 0.1, "seed": 3, "num_train_epochs": 2,
                      "bf16": False, "max_steps": 4}
    assert list(values) == ["loss_type", "beta", "learning_rate", "seed", "num_train_epochs", "bf16", "max_steps"]


def test_resolve_recipe_copies_a_dict_and_fills_every_section(tmp_path):
    given = {"training": {"seed": 2}}
    recipe = resolve_recipe(given)
    assert recipe == {"training": {"seed": 2}, "model": {}, "data": {}, "method": {}}
    assert given == {"training": {"seed": 2}}
    assert resolve_recipe(None) == {"model": {}, "training": {}, "data": {}, "method": {}}
    (tmp_path / "r.yaml").write_text("description: d\ntraining: {seed: 3}\n")
    assert resolve_recipe(tmp_path / "r.yaml") == {"description": "d", "training": {"seed": 3}, "model": {},
                                                   "data": {}, "method": {}}


def test_prepared_dataset_name_names_the_input_file(data_dir, tmp_path):
    assert prepared_dataset_name(data_dir) == f"raw/ratings.dat (prepared at {data_dir})"
    assert prepared_dataset_name(tmp_path) == str(tmp_path)


def test_options_object_and_keywords_write_the_same_run(data_dir, tmp_path):
    by_keywords = pretrain(data_dir, tmp_path / "a", recipe=TINY_RECIPE, seed=5, max_steps=2,
                           training_overrides={"learning_rate": 0.01})
    by_options = pretrain(data_dir, tmp_path / "b", recipe=TINY_RECIPE,
                          options=RunOptions(seed=5, max_steps=2, training_overrides={"learning_rate": 0.01}))
    assert by_keywords["test"] == by_options["test"] and by_keywords["seed"] == by_options["seed"] == 5
    recipes = [yaml.safe_load((tmp_path / run / "recipe.yaml").read_text()) for run in ("a", "b")]
    assert recipes[0] == recipes[1]
    assert recipes[0]["training"] == {"num_train_epochs": 1, "per_device_train_batch_size": 16, "disable_tqdm": True,
                                      "seed": 5, "learning_rate": 0.01, "max_steps": 2}
    assert recipes[0]["description"] == "tiny" and recipes[0]["data"] == {"split": "leave-one-out"}
    # Pretraining reports evaluation timings once, outside the metric dicts; post-training keeps them inside.
    assert "runtime" not in by_keywords["validation"] and "ndcg@10" in by_keywords["validation"]
    report = posttrain(data_dir, tmp_path / "a", tmp_path / "sft", method="sft", max_steps=1)
    assert "runtime" in report["test"] and "high_reward_target/ndcg@10" in report["test"]
    assert json.loads((tmp_path / "sft" / "metrics.json").read_text())["test"] == report["test"]


def test_posttrain_resume_into_a_new_folder_trains_from_scratch(data_dir, tmp_path):
    pretrain(data_dir, tmp_path / "pretrained", recipe=TINY_RECIPE, max_steps=1)
    output = tmp_path / "not-yet-created"
    report = posttrain(data_dir, tmp_path / "pretrained", output, method="sft", max_steps=1, resume=True)
    assert report["global_steps"] == 1
    assert (output / "recipe.yaml").is_file() and (output / "metrics.json").is_file()


def test_reward_refuses_resume_with_overwrite(data_dir, tmp_path):
    with pytest.raises(ValueError, match="--resume and --overwrite contradict each other"):
        reward(data_dir, tmp_path / "model", tmp_path / "reward", resume=True, overwrite=True)
    assert not (tmp_path / "reward").exists()


def fake_workflow(calls, name, report):
    def call(*args, **kwargs):
        calls.append((name, args, kwargs))
        return report
    return call


def test_training_commands_map_their_flags_onto_one_workflow_call(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(workflows, "pretrain", fake_workflow(calls, "pretrain", {
        "validation": {}, "test": {"ndcg@10": 0.5}, "best_epoch": 1, "seconds_per_epoch": 2.0}))
    monkeypatch.setattr(workflows, "posttrain", fake_workflow(calls, "posttrain", {
        "method": "asft", "test": {}, "train_runtime_s": 1.0, "hub_commit_url": "https://hub/commit/1"}))
    monkeypatch.setattr(workflows, "reward", fake_workflow(calls, "reward", {"markdown": "| table |",
                                                                            "ensemble_size": 3}))
    assert main(["pretrain", "--data", "D", "--output", "O", "--epochs", "2", "--seed", "4", "--resume",
                 "--no-bf16", "--push-to-hub", "me/run", "--hub-private"]) == 0
    assert main(["posttrain", "--data", "D", "--model", "M", "--output", "P", "--method", "asft", "--max-steps",
                 "3", "--learning-rate", "0.01", "--temperature", "0.5", "--normalize-weights", "--lora-r", "2"]) == 0
    assert main(["reward", "--data", "D", "--model", "M", "--output", "R", "--ensemble", "3", "--seed", "9",
                 "--overwrite"]) == 0

    (_, args, pre), (_, _, post), (_, _, rew) = calls
    assert args == ("D", "O") and pre["recipe"] is None
    assert pre["options"] == RunOptions(epochs=2.0, seed=4, training_overrides={"bf16": False}, resume=True,
                                        push_to_hub="me/run", hub_private=True)
    assert post["method"] == "asft" and post["lora_r"] == 2 and post["reward_model"] is None
    assert post["method_overrides"] == {"temperature": 0.5, "normalize_weights": True}
    assert post["options"] == RunOptions(max_steps=3, training_overrides={"learning_rate": 0.01})
    assert rew["ensemble_size"] == 3 and rew["options"] == RunOptions(seed=9, overwrite=True)
    out = capsys.readouterr().out
    assert '"best_epoch": 1' in out and "Pushed to the Hub: https://hub/commit/1" in out
    assert "| table |" in out and "Ensemble (3 members) and reward_metrics.json written to R" in out


def test_pretrain_reports_the_selected_epochs_logged_validation_without_ranking_it_again(data_dir, tmp_path,
                                                                                         monkeypatch):
    # The selected epoch's validation pass already ranked the validation split with the weights the run keeps;
    # the report must hold exactly what ranking it again gives, without the extra pass.
    from hf_genrec.trainers.base import GenRecTrainer
    from hf_genrec.workflows import common

    recipe = {**TINY_RECIPE, "training": {**TINY_RECIPE["training"], "num_train_epochs": 3}}
    calls = []
    predict_ranks = GenRecTrainer.predict_ranks
    monkeypatch.setattr(GenRecTrainer, "predict_ranks",
                        lambda self, dataset: calls.append(len(dataset)) or predict_ranks(self, dataset))
    reused = pretrain(data_dir, tmp_path / "reused", recipe=recipe)
    assert len(calls) == 3 + 1  # one validation pass per epoch, then the test split only
    calls.clear()
    monkeypatch.setattr(common, "logged_validation", lambda *args, **kwargs: None)
    ranked = pretrain(data_dir, tmp_path / "ranked", recipe=recipe)
    assert len(calls) == 3 + 2
    assert reused["validation"] == ranked["validation"] and reused["test"] == ranked["test"]
    assert "long_history/ndcg@10" in reused["validation"] and "runtime" not in reused["validation"]


def test_pretrain_bounds_the_onednn_caches_before_training_unless_the_user_set_them(data_dir, tmp_path, monkeypatch):
    # oneDNN and ideep read their capacities once, at the first matmul: the workflow must set them before it trains.
    import hf_genrec.trainers.base as trainer_base
    from hf_genrec.utils.runtime import ONEDNN_CACHE_CAPACITY

    names = ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY")
    for name in (*names, "DNNL_PRIMITIVE_CACHE_CAPACITY"):
        monkeypatch.setenv(name, "0")  # records the process's value to restore after the test (or that there was
        monkeypatch.delenv(name)  # none), which a bare delenv of an absent variable would not: pretrain sets them
    seen = []
    train = trainer_base.GenRecTrainer.train
    monkeypatch.setattr(trainer_base.GenRecTrainer, "train", lambda self, *args, **kwargs: seen.append(
        [os.environ.get(name) for name in names]) or train(self, *args, **kwargs))
    pretrain(data_dir, tmp_path / "bounded", recipe=TINY_RECIPE)
    assert seen == [[str(ONEDNN_CACHE_CAPACITY)] * 2]
    monkeypatch.setenv("DNNL_PRIMITIVE_CACHE_CAPACITY", "7")  # the older name is the user's choice too
    monkeypatch.setenv("LRU_CACHE_CAPACITY", "3")
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY")
    pretrain(data_dir, tmp_path / "users", recipe=TINY_RECIPE)
    assert seen[1] == [None, "3"] and os.environ["DNNL_PRIMITIVE_CACHE_CAPACITY"] == "7"
