"""Benchmark presets: what `hf-genrec benchmark --preset` trains, built from the recipe files.

The recipes in `recipes/movielens-1m/` are the one source of truth: `hstu.yaml` (pretraining),
`reward.yaml` (the reward ensembles) and `<method>.yaml` (post-training, one per method). A preset is
those recipes plus the overrides it declares (`from_recipes`):

- `full`: the recipes exactly as written (HSTU reference recipe, 5-member reward ensembles of 6 epochs, one
  epoch of post-training per method, as the method recipes say) and a 5-member judge. An earlier copy of
  the recipes in this module post-trained 3 epochs; the recipes, which are what users run, win.
- `quick`: MovieLens-1M in well under an hour on 2 CPU cores. Overrides: 15 epochs of pretraining without
  early stopping (pass `--pretrained` to reuse a converged checkpoint), 3-member ensembles of one epoch, and
  24 optimizer steps of post-training per method (about half an epoch); the λ sweep on the first seed.
- `tiny`: a smoke test, about a minute on 2 CPU cores on the embedded synthetic data (~100k ratings).
  Overrides: a small HSTU (d = 32, 64 events), 12 epochs of pretraining, 2-member ensembles of 2 epochs,
  16 optimizer steps of 64 rows per method, 8 candidates for RS-DPO/IPO.

Every preset evaluates the `future` protocol with `FUTURE_SPLIT` (cutoff at the 0.9 time quantile, H = 10
targets per test user, at least 10 events before the cutoff), except `tiny`, whose generated users span less time:
its cutoff is at the 0.8 quantile (146 test users, 1,460 targets).

Post-training budgets are the same for every method (the same passes over the training rows); PPO takes
`ppo_epochs` optimizer steps per rollout batch, so under a `max_steps` budget its steps are multiplied by
`ppo_epochs` to see the same rows.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..recipes import load_recipe

__all__ = ["BenchmarkPreset", "DEFAULT_METHODS", "FUTURE_SPLIT", "PRESETS", "REFERENCE_METHOD", "from_recipes", "get_preset",
           "recipe_path"]

DEFAULT_METHODS = ("sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo")
REFERENCE_METHOD = "rwbc"
RECIPE_SET = "movielens-1m"
PRETRAIN_RECIPE, REWARD_RECIPE = "hstu", "reward"
# Recipe sections a preset takes; `description` is prose and `data.split` comes from `--protocol`.
_SECTIONS = ("model", "training")
# The `future` protocol on MovieLens-1M (issue 13): the test window starts at the 90% time quantile; test users have
# >= 10 events before it and >= 10 after it (887 users, 8,870 targets); validation is the 10% of earlier events
# just before it.
FUTURE_SPLIT = {"cutoff_quantile": 0.9, "horizon": 10, "min_history": 10, "validation_fraction": 0.1}


def _recipes_root() -> Path:
    """The recipe folder: the package `hf_genrec._recipes` (the top-level `recipes/` mapped into the wheel
    and the editable install by `pyproject.toml`), or, in a checkout used without installing, `recipes/`."""
    try:
        return Path(str(resources.files("hf_genrec._recipes")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "recipes"


def recipe_path(name: str, recipe_set: str = RECIPE_SET) -> Path:
    """Path of the recipe file `recipes/<recipe_set>/<name>.yaml`, e.g. `recipe_path("asft")`."""
    path = _recipes_root() / recipe_set / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no recipe {recipe_set}/{name}.yaml in {path.parent}.")
    return path


@functools.cache
def _recipe(name: str) -> dict[str, dict[str, Any]]:
    recipe = load_recipe(recipe_path(name))
    return {section: recipe[section] for section in _SECTIONS}


@dataclass(frozen=True)
class BenchmarkPreset:
    """Everything a benchmark run trains and measures, besides the data and the methods.

    Attributes:
        name: the preset's name.
        synthetic: `generate_synthetic_interactions` arguments for the embedded data (no `--input`).
        pretrain: the pretraining recipe (`model`, `training`).
        reward: the recipe of the reward ensemble the methods train against (`model`, `training`).
        posttrain: the `training` section of each method's recipe, budget included.
        judge_training: training values that differ for the judge ensemble (e.g. `ensemble_size`).
        judge_seed: seed of judge member 0 (member k: + k); far from the training ensemble's seeds.
        lambdas: A-SFT temperatures λ of the sweep.
        sweep_seeds: how many seeds the λ sweep runs (None: all of `--seeds`).
        horizon, gamma, time_gap: the judge rollout (see `hf_genrec.evaluation.judge`).
        eval_batch_size: users per evaluation pass.
        bootstrap_resamples: resamples of the bootstrap intervals (over seeds and test users together).
        future: the `future` protocol's `future_split` arguments: `cutoff_quantile` (the test window starts at
            this quantile of all event times), `horizon` (H, the test events, each a target, of every test user),
            `min_history` (the events a test user needs before the cutoff) and `validation_fraction` (the share of
            the pre-cutoff events in the validation window just before the cutoff).
    """

    name: str
    synthetic: dict[str, Any]
    pretrain: dict[str, Any]
    reward: dict[str, Any]
    posttrain: dict[str, dict[str, Any]]
    judge_training: dict[str, Any] = dataclasses.field(default_factory=dict)
    lambdas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    sweep_seeds: int | None = None
    judge_seed: int = 1000
    horizon: int = 3
    gamma: float = 0.9
    time_gap: int = 60
    eval_batch_size: int = 256
    bootstrap_resamples: int = 1000
    future: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(FUTURE_SPLIT))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def seed(self) -> int:
        """Post-training seed 0 of the benchmark (seed i is this + i): the reference method's recipe seed."""
        return int(self.posttrain[REFERENCE_METHOD]["seed"])

    def method_recipe(self, method: str, split: str, **overrides: Any) -> dict[str, Any]:
        """The `posttrain` recipe of `method`: the method's training values, then `overrides`."""
        training = {**self.posttrain[method], **overrides}
        return {"model": {}, "training": training, "data": {"split": split}, "method": {"name": method}}

    def pretrain_recipe(self, split: str) -> dict[str, Any]:
        return {"model": dict(self.pretrain["model"]), "training": dict(self.pretrain["training"]),
                "data": {"split": split}, "method": {}}

    def reward_recipe(self, split: str, judge: bool = False) -> dict[str, Any]:
        training = dict(self.reward["training"])
        if judge:
            training.update(self.judge_training)
            training["seed"] = self.judge_seed
        return {"model": dict(self.reward["model"]), "training": training, "data": {"split": split}, "method": {}}


def _override(recipe: dict[str, dict[str, Any]], overrides: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    overrides = overrides or {}
    unknown = set(overrides) - set(_SECTIONS)
    if unknown:
        raise ValueError(f"overrides of a recipe take the sections {_SECTIONS}, got {sorted(unknown)}.")
    return {section: {**recipe[section], **overrides.get(section, {})} for section in _SECTIONS}


def _posttrain(budget: dict[str, Any], methods: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each method's recipe `training` section, then the shared `budget`, then the method's own overrides."""
    unknown = set(methods) - set(DEFAULT_METHODS)
    if unknown:
        raise ValueError(f"method overrides for unknown method(s) {sorted(unknown)}; valid: {DEFAULT_METHODS}.")
    posttrain = {}
    for method in DEFAULT_METHODS:
        training = {**_recipe(method)["training"], **budget, **methods.get(method, {})}
        if "ppo_epochs" in training and "max_steps" in budget and "max_steps" not in methods.get(method, {}):
            # The same rows as the other methods: PPO takes ppo_epochs optimizer steps per rollout batch.
            training["max_steps"] = budget["max_steps"] * training["ppo_epochs"]
        posttrain[method] = training
    return posttrain


def from_recipes(
    name: str,
    *,
    synthetic: dict[str, Any],
    pretrain: dict[str, dict[str, Any]] | None = None,
    reward: dict[str, dict[str, Any]] | None = None,
    posttrain: dict[str, Any] | None = None,
    methods: dict[str, dict[str, Any]] | None = None,
    **settings: Any,
) -> BenchmarkPreset:
    """A preset: the `recipes/movielens-1m/` recipes with the given overrides on top (none: as written).

    Args:
        name: the preset's name.
        synthetic: the embedded synthetic data's `generate_synthetic_interactions` arguments.
        pretrain: `{"model": {...}, "training": {...}}` values replacing those of `hstu.yaml`.
        reward: the same for `reward.yaml` (the judge takes them too, plus `judge_training`).
        posttrain: training values replacing those of every method's recipe (the shared budget). A
            `max_steps` budget is multiplied by `ppo_epochs` for PPO (the same rows as the others).
        methods: `{method: training values}` replacing those of one method's recipe.
        settings: the other `BenchmarkPreset` fields (`lambdas`, `judge_training`, ...).
    """
    return BenchmarkPreset(
        name=name,
        synthetic=synthetic,
        pretrain=_override(_recipe(PRETRAIN_RECIPE), pretrain),
        reward=_override(_recipe(REWARD_RECIPE), reward),
        posttrain=_posttrain(posttrain or {}, methods or {}),
        **settings,
    )


_ML1M_SCALE = {"num_users": 6000, "num_items": 3000, "mean_events": 160, "seed": 0}

PRESETS: dict[str, BenchmarkPreset] = {
    "tiny": from_recipes(
        "tiny",
        synthetic={"num_users": 1000, "num_items": 400, "mean_events": 100, "seed": 0},
        pretrain={"model": {"hidden_size": 32, "attention_dim": 32, "linear_dim": 32, "max_seq_len": 64,
                            "max_position_embeddings": 75, "num_negatives": 64},
                  "training": {"num_train_epochs": 12, "early_stopping_patience": None,
                               "per_device_train_batch_size": 64, "per_device_eval_batch_size": 512}},
        reward={"model": {"reward_head_hidden_size": 32},
                "training": {"ensemble_size": 2, "num_train_epochs": 2, "per_device_train_batch_size": 64}},
        posttrain={"max_steps": 16, "per_device_train_batch_size": 64, "logging_steps": 4},
        methods={"dpo": {"num_candidates": 8}, "ipo": {"num_candidates": 8}},
        judge_training={"ensemble_size": 2},
        lambdas=(0.5, 1.0, 2.0),
        eval_batch_size=512,
        bootstrap_resamples=500,
        # The generated users' events span a shorter time than MovieLens users': at the 90% quantile only 110 of
        # 1,000 users have 10 events on each side; at 80%, 146 (1,460 targets) and 150 validation users.
        future={**FUTURE_SPLIT, "cutoff_quantile": 0.8},
    ),
    "quick": from_recipes(
        "quick",
        synthetic=_ML1M_SCALE,
        pretrain={"training": {"num_train_epochs": 15, "early_stopping_patience": None}},
        reward={"training": {"ensemble_size": 3, "num_train_epochs": 1}},
        posttrain={"max_steps": 24},
        judge_training={"ensemble_size": 3},
        sweep_seeds=1,
    ),
    "full": from_recipes("full", synthetic=_ML1M_SCALE, bootstrap_resamples=2000),
}


def get_preset(preset: str | BenchmarkPreset) -> BenchmarkPreset:
    """A preset by name (`tiny`, `quick`, `full`), or the given `BenchmarkPreset` itself."""
    if isinstance(preset, BenchmarkPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}.")
    return PRESETS[preset]
