"""Benchmark presets are the recipe files (`full`) or the recipe files plus declared overrides (`quick`, `tiny`)."""

from pathlib import Path

import pytest
import yaml

from hf_genrec.benchmark.pipeline import needs_reward_model
from hf_genrec.benchmark.presets import DEFAULT_METHODS, PRESETS, from_recipes, recipe_path

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "movielens-1m"


def _recipe(name):
    return yaml.safe_load((RECIPES / f"{name}.yaml").read_text(encoding="utf-8"))


def test_recipes_are_found_from_the_package():
    # The checkout's top-level recipes/ (the package `hf_genrec._recipes` maps to it), not a copy.
    for name in ("hstu", "reward", *DEFAULT_METHODS):
        assert recipe_path(name).samefile(RECIPES / f"{name}.yaml")
    with pytest.raises(FileNotFoundError, match="no recipe"):
        recipe_path("magic")


def test_full_preset_is_the_recipe_files_as_written():
    # ... but for the post-training budget: up to 5 epochs, each followed by a validation pass (issue 13).
    full = PRESETS["full"]
    hstu, reward = _recipe("hstu"), _recipe("reward")
    assert full.pretrain == {"model": hstu["model"], "training": hstu["training"]}
    assert full.reward == {"model": reward["model"], "training": reward["training"]}
    assert full.judge_training == {}
    assert full.default_seeds >= 5 and full.patience is not None
    for method in DEFAULT_METHODS:
        recipe = _recipe(method)
        assert full.posttrain[method] == {**recipe["training"], "num_train_epochs": 5}, method
        assert full.method_recipe(method, "temporal") == {"model": {}, "data": {"split": "temporal"},
                                                          "training": {**recipe["training"], "num_train_epochs": 5},
                                                          "method": recipe["method"]}
        # A benchmark trial adds the selection values (validation passes, best checkpoint kept, patience).
        training = full.trial_recipe(method, "temporal")["training"]
        assert training == {**recipe["training"], "num_train_epochs": 5, **full.selection_training("temporal")}
    assert full.seed == _recipe("rwbc")["training"]["seed"]


def test_selection_values_every_benchmark_run_takes():
    quick, tiny = PRESETS["quick"], PRESETS["tiny"]
    future, loo = quick.selection_training("future"), quick.selection_training("leave-one-out")
    assert future["metric_for_best_model"] == "high_reward_trajectory/ndcg@10"
    assert loo["metric_for_best_model"] == "high_reward_target/ndcg@10"
    assert future["eval_strategy"] == future["save_strategy"] == "epoch" and future["load_best_model_at_end"]
    assert future["early_stopping_patience"] == quick.patience
    # tiny: a pass every eval_steps; PPO takes ppo_epochs steps per batch of rows, so its passes are as many.
    assert tiny.trial_recipe("sft", "future")["training"]["eval_steps"] == tiny.eval_steps
    ppo = tiny.trial_recipe("ppo", "future")["training"]
    assert ppo["eval_steps"] == ppo["save_steps"] == tiny.eval_steps * ppo["ppo_epochs"]
    # A trial's hyperparameters win over the recipe's values.
    assert tiny.trial_recipe("cql", "future", alpha=0.1)["training"]["alpha"] == 0.1
    assert "eval_strategy" not in tiny.method_recipe("cql", "future")["training"]  # the recipe alone: no selection


def test_overrides_apply_on_top_of_the_recipes():
    preset = from_recipes(
        "custom", synthetic={},
        pretrain={"model": {"hidden_size": 16}, "training": {"num_train_epochs": 2}},
        reward={"training": {"ensemble_size": 2}},
        posttrain={"max_steps": 10, "per_device_train_batch_size": 8},
        methods={"dpo": {"num_candidates": 4}, "cql": {"max_steps": 3}},
        judge_training={"ensemble_size": 3},
    )
    hstu, reward = _recipe("hstu"), _recipe("reward")
    assert preset.pretrain["model"] == {**hstu["model"], "hidden_size": 16}
    assert preset.pretrain["training"] == {**hstu["training"], "num_train_epochs": 2}
    assert preset.reward["training"] == {**reward["training"], "ensemble_size": 2}
    judge = preset.reward_recipe("leave-one-out", judge=True)["training"]
    assert judge["ensemble_size"] == 3 and judge["seed"] == preset.judge_seed
    budget = {"max_steps": 10, "per_device_train_batch_size": 8}
    assert preset.posttrain["sft"] == {**_recipe("sft")["training"], **budget}
    assert preset.posttrain["dpo"] == {**_recipe("dpo")["training"], **budget, "num_candidates": 4}
    assert preset.posttrain["cql"]["max_steps"] == 3  # a method's own override wins over the budget
    # PPO takes ppo_epochs optimizer steps per rollout batch: the same rows take ppo_epochs x the steps.
    ppo = _recipe("ppo")["training"]
    assert preset.posttrain["ppo"] == {**ppo, **budget, "max_steps": 10 * ppo["ppo_epochs"]}
    assert preset.method_recipe("asft", "leave-one-out", temperature=2.0)["training"]["temperature"] == 2.0
    with pytest.raises(ValueError, match="sections"):
        from_recipes("bad", synthetic={}, pretrain={"data": {"split": "temporal"}})
    with pytest.raises(ValueError, match="unknown method"):
        from_recipes("bad", synthetic={}, methods={"magic": {}})


@pytest.mark.parametrize("name", ["tiny", "quick"])
def test_smaller_presets_keep_every_recipe_value_they_do_not_override(name):
    preset, full = PRESETS[name], PRESETS["full"]
    for section in ("model", "training"):
        assert set(full.pretrain[section]) <= set(preset.pretrain[section])
        assert set(full.reward[section]) <= set(preset.reward[section])
    for method in DEFAULT_METHODS:
        changed = {k for k, v in full.posttrain[method].items() if preset.posttrain[method][k] != v}
        assert changed <= {"num_train_epochs", "per_device_train_batch_size", "logging_steps", "num_candidates"}, method
        assert "max_steps" not in preset.posttrain[method]  # epochs, each followed by a validation pass


def test_needs_reward_model_asks_the_trainer_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answers = {method: needs_reward_model(method, PRESETS["tiny"].posttrain[method]) for method in DEFAULT_METHODS}
    assert answers == {"sft": False, "rwbc": False, "asft": True, "dpo": True, "ipo": True, "cql": False,
                       "ppo": True}
    # A-SFT queries the ensemble only for its value baseline or model rewards.
    plain = {**PRESETS["tiny"].posttrain["asft"], "baseline": "user_mean", "reward_source": "observed"}
    assert needs_reward_model("asft", plain) is False
    assert needs_reward_model("asft", {**plain, "reward_source": "model"}) is True
    assert list(tmp_path.iterdir()) == []
