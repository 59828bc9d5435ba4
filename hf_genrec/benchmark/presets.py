"""Benchmark presets: what `hf-genrec benchmark --preset` trains, built from the recipe files.

The recipes in `recipes/movielens-1m/` are the one source of truth: `hstu.yaml` (pretraining),
`reward.yaml` (the reward ensembles) and `<method>.yaml` (post-training, one per method). A preset is
those recipes plus the overrides it declares (`from_recipes`):

- `full`: the recipes as written (HSTU reference recipe, 5-member reward ensembles of 6 epochs, the method
  recipes' post-training values) and a 5-member judge, except the post-training budget: up to 5 epochs with
  patience 2; 4 trials per method; 5 seeds by default for A-SFT, RW-BC and the two other methods best on
  validation, 3 for the other methods and the A-SFT ablations (`reduced_seeds`, `focus_methods`,
  `ablation_seeds`).
- `quick`: MovieLens-1M within 30 minutes on 2 CPU cores (issue 13). Overrides: 15 epochs of pretraining without
  early stopping (pass `--pretrained` to reuse a converged checkpoint; the judge's own backbone: 8),
  3-member ensembles of one epoch (the judge: 5 members), and up to 2 epochs of post-training with patience 1;
  2 trials per method; no A-SFT ablations (`--ablations` adds them).
- `tiny`: a smoke test, a few minutes on 2 CPU cores on the embedded synthetic data (~100k ratings); with
  `--world`, on a log drawn in a small simulated world instead (`EMBEDDED_WORLD`), so every model also gets its
  true value V*.
  Overrides: a small HSTU (d = 32, 64 events), 12 epochs of pretraining (the judge's backbone: 6),
  2-member ensembles of 2 epochs, one epoch (about 14 steps of 64 rows) of post-training with a validation pass
  every 8 steps and patience 1, 8 candidates for RS-DPO/IPO; 2 trials per method; no A-SFT ablations (`full`
  runs them).

The judge (issue 13 item 6) is independent of what it scores: its own pretrained backbone (the pretraining recipe
with seed `judge_seed`, `judge_pretraining`), members seeded from `judge_seed`, trained on the training and
validation events (`hf-genrec benchmark --judge-data`, default `train+validation`).

Equal tuning (issue 13): every method gets the same number of hyperparameter trials from its grid (`grids`: A-SFT's
temperature λ, SFT's and RW-BC's learning rate, RS-DPO's and RS-IPO's β, CQL's α, PPO's KL coefficient), checked
when the preset is built. Every post-training run of the benchmark ranks the validation split after each epoch (or
every `eval_steps`), keeps the checkpoint with the best validation NDCG@10 of the high-reward validation subset
(`high_reward_trajectory` on `future`, `high_reward_target` otherwise) and stops after `patience` evaluations
without improvement (`selection_training`).

Every preset evaluates the `future` protocol with `FUTURE_SPLIT` (cutoff at the 0.9 time quantile, H = 10
targets per test user, at least 10 events before the cutoff), except `tiny`, whose generated users span less time:
its cutoff is at the 0.8 quantile (146 test users, 1,460 targets; in `EMBEDDED_WORLD`'s log 171 and 1,710).

Post-training budgets are the same for every method (the same passes over the training rows); PPO takes
`ppo_epochs` optimizer steps per rollout batch, so under a `max_steps` budget its steps are multiplied by
`ppo_epochs` to see the same rows.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from ..evaluation.metrics import (
    SUBSET_HIGH_REWARD_TARGET,
    SUBSET_HIGH_REWARD_TRAJECTORY,
    metric_key,
    ndcg_key,
)
from ..recipes import load_recipe

__all__ = ["BenchmarkPreset", "DEFAULT_METHODS", "EMBEDDED_WORLD", "FUTURE_SPLIT", "PRESETS", "REFERENCE_METHOD", "SELECTION_METRIC",
           "from_recipes", "get_preset", "recipe_path", "selection_subset"]

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
# Checkpoints and hyperparameters are chosen on this validation metric of `selection_subset(split)`.
SELECTION_METRIC = ndcg_key(10)


def selection_subset(split: str) -> str:
    """The high-reward validation subset selection reads: `high_reward_trajectory` on the `future` split (users whose
    window reward is above the median), else its one-target analogue `high_reward_target`."""
    return SUBSET_HIGH_REWARD_TRAJECTORY if split == "future" else SUBSET_HIGH_REWARD_TARGET


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
        synthetic: `generate_synthetic_interactions` arguments for the embedded data (no `--input`) when the preset
            has no `world`.
        pretrain: the pretraining recipe (`model`, `training`).
        reward: the recipe of the reward ensemble the methods train against (`model`, `training`).
        posttrain: the `training` section of each method's recipe, budget included.
        judge_training: training values that differ for the judge ensemble (e.g. `ensemble_size`).
        judge_seed: seed of judge member 0 (member k: + k); far from the training ensemble's seeds.
        judge_pretraining: training values of the judge's own pretrained backbone (pretraining recipe, then these;
            its seed is `judge_seed`), so the judge shares neither weights nor initialisation with the models it
            scores; `None`: the judge starts from the benchmark's pretrained model (as before issue 13).
        grids: `{method: {field: (values, ...)}}`, the hyperparameter trials of each method (the product of its
            fields' values; a method without a grid has one trial, its recipe's values). Every method of
            `DEFAULT_METHODS` must get the same number of trials.
        patience: stop a post-training run after this many validation passes without improvement (None: never).
        eval_steps: rank the validation split every `eval_steps` optimizer steps instead of every epoch.
        tuning_seeds: the trials run on the first `tuning_seeds` seeds; a trial's score is its mean over them.
        default_seeds: post-training seeds when `--seeds` is not given.
        reduced_seeds: post-training seeds of the methods outside the focus (`--reduced-seeds`); `None` (or as many
            as `--seeds`): every method runs every seed. A-SFT and RW-BC (the claims' subject and reference) and the
            `focus_methods` others always run every seed. A method with n seeds runs the first n (seed + i), so its
            runs are a prefix of the others' and pair with them seed by seed.
        focus_methods: besides A-SFT and RW-BC, this many other methods run every seed when `reduced_seeds` is set:
            those whose chosen trial has the best validation score (the tuning's; ties: method order). The claims'
            close comparisons are A-SFT against RW-BC and against the best other method; a method far below them is
            decided with fewer seeds.
        ablation_seeds: post-training seeds of every A-SFT ablation row (the first n; `--ablation-seeds`); `None`:
            every seed.
        horizon, gamma, time_gap: the judge rollout (see `hf_genrec.evaluation.judge`).
        eval_batch_size: users per evaluation pass.
        bootstrap_resamples: resamples of the bootstrap intervals (over seeds and test users together).
        ablations: also run A-SFT's ablation grid (`asft_ablation_grid`: baseline x reward source, and the
            tilt-matched RW-BC control) at A-SFT's chosen λ on every seed, or the first `ablation_seeds`
            (`--ablations/--no-ablations`).
        future: the `future` protocol's `future_split` arguments: `cutoff_quantile` (the test window starts at
            this quantile of all event times), `horizon` (H, the test events, each a target, of every test user),
            `min_history` (the events a test user needs before the cutoff) and `validation_fraction` (the share of
            the pre-cutoff events in the validation window just before the cutoff).
        world: a simulated world whose log is the embedded data instead (no `--input`): the `SimulatedLog.draw`
            inputs (`world`: `World.synthetic` arguments; `events_per_user`; `logging`: `LoggingPolicy` fields
            but `coverage`; `observation`: `ObservationModel` fields but `noise_std`; `setting`: `noise_std`,
            `num_users`, `coverage`; `seed`). Its truth gives every evaluated model a true value V* (`world_value`).
    """

    name: str
    synthetic: dict[str, Any]
    pretrain: dict[str, Any]
    reward: dict[str, Any]
    posttrain: dict[str, dict[str, Any]]
    judge_training: dict[str, Any] = dataclasses.field(default_factory=dict)
    grids: dict[str, dict[str, tuple[Any, ...]]] = dataclasses.field(default_factory=dict)
    patience: int | None = None
    eval_steps: int | None = None
    tuning_seeds: int = 1
    default_seeds: int = 1
    reduced_seeds: int | None = None
    focus_methods: int = 2
    ablation_seeds: int | None = None
    judge_seed: int = 1000
    judge_pretraining: dict[str, Any] | None = dataclasses.field(default_factory=dict)
    horizon: int = 3
    gamma: float = 0.9
    time_gap: int = 60
    eval_batch_size: int = 256
    bootstrap_resamples: int = 1000
    ablations: bool = False
    future: dict[str, Any] = dataclasses.field(default_factory=lambda: dict(FUTURE_SPLIT))
    world: dict[str, Any] | None = None

    def __post_init__(self):
        unknown = set(self.grids) - set(DEFAULT_METHODS)
        if unknown:
            raise ValueError(f"preset {self.name!r}: grids for unknown method(s) {sorted(unknown)}; valid: "
                             f"{DEFAULT_METHODS}.")
        for method, grid in self.grids.items():
            empty = [name for name, values in grid.items() if len(values) == 0]
            if empty:
                raise ValueError(f"preset {self.name!r}: the {method} grid has no values for {empty}. Fix: give each "
                                 "field at least one value, or leave the field out (the recipe's value).")
        trials = {method: len(self.trials(method)) for method in DEFAULT_METHODS}
        if len(set(trials.values())) > 1:
            raise ValueError(
                f"preset {self.name!r} gives the methods unequal numbers of hyperparameter trials {trials}; every "
                "method must get the same number. Fix: give every grid as many values (--lambdas sets A-SFT's "
                "temperature grid)."
            )
        for name in ("tuning_seeds", "default_seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"preset {self.name!r}: {name} must be >= 1, got {getattr(self, name)}.")
        for name in ("reduced_seeds", "ablation_seeds"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"preset {self.name!r}: {name} must be None (every seed) or an integer >= 1, got "
                                 f"{value!r}. Fix: pass None or a positive number of seeds.")
        if isinstance(self.focus_methods, bool) or not isinstance(self.focus_methods, int) or self.focus_methods < 0:
            raise ValueError(f"preset {self.name!r}: focus_methods must be an integer >= 0, got "
                             f"{self.focus_methods!r}. Fix: pass how many methods besides A-SFT and RW-BC run every "
                             "seed (0 or more).")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def trials_per_method(self) -> int:
        """The number of hyperparameter trials every method gets."""
        return len(self.trials(REFERENCE_METHOD))

    def trials(self, method: str) -> list[dict[str, Any]]:
        """The hyperparameters of each trial of `method`: every combination of its grid's values, in grid order."""
        grid = self.grids.get(method, {})
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]

    def with_grid(self, method: str, **values: tuple[Any, ...]) -> BenchmarkPreset:
        """This preset with `method`'s grid fields replaced (checked again: every method the same trials)."""
        return dataclasses.replace(self, grids={**self.grids, method: {**self.grids.get(method, {}), **values}})

    def selection_training(self, split: str, ppo_epochs: int = 1) -> dict[str, Any]:
        """The training values every post-training run of the benchmark takes on top of its recipe: a validation
        pass after every epoch (or every `eval_steps`, times `ppo_epochs` for PPO, which takes that many steps over
        the same rows) with a checkpoint, the best one on validation NDCG@10 of `selection_subset(split)` kept at
        the end, stopping after `patience` passes without improvement."""
        strategy = "steps" if self.eval_steps else "epoch"
        values = {"eval_strategy": strategy, "save_strategy": strategy, "load_best_model_at_end": True,
                  "metric_for_best_model": metric_key(SELECTION_METRIC, selection_subset(split)),
                  "greater_is_better": True, "save_total_limit": 1, "early_stopping_patience": self.patience}
        if self.eval_steps:
            values.update(eval_steps=self.eval_steps * ppo_epochs, save_steps=self.eval_steps * ppo_epochs)
        return values

    @property
    def seed(self) -> int:
        """Post-training seed 0 of the benchmark (seed i is this + i): the reference method's recipe seed."""
        return int(self.posttrain[REFERENCE_METHOD]["seed"])

    def method_recipe(self, method: str, split: str, **overrides: Any) -> dict[str, Any]:
        """The `posttrain` recipe of `method`: the method's training values, then `overrides`."""
        training = {**self.posttrain[method], **overrides}
        return {"model": {}, "training": training, "data": {"split": split}, "method": {"name": method}}

    def trial_recipe(self, method: str, split: str, **hyperparameters: Any) -> dict[str, Any]:
        """The `posttrain` recipe of one benchmark trial: `method_recipe` with the selection values
        (`selection_training`) and the trial's `hyperparameters` on top."""
        selection = self.selection_training(split, ppo_epochs=self.posttrain[method].get("ppo_epochs", 1))
        return self.method_recipe(method, split, **selection, **hyperparameters)

    def pretrain_recipe(self, split: str) -> dict[str, Any]:
        return {"model": dict(self.pretrain["model"]), "training": dict(self.pretrain["training"]),
                "data": {"split": split}, "method": {}}

    def judge_pretrain_recipe(self, split: str) -> dict[str, Any] | None:
        """The pretraining recipe of the judge's own backbone (`judge_pretraining`, seed `judge_seed`), or None."""
        if self.judge_pretraining is None:
            return None
        recipe = self.pretrain_recipe(split)
        recipe["training"].update({**self.judge_pretraining, "seed": self.judge_seed})
        return recipe

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
        settings: the other `BenchmarkPreset` fields (`grids`, `patience`, `judge_training`, ...).
    """
    return BenchmarkPreset(
        name=name,
        synthetic=synthetic,
        pretrain=_override(_recipe(PRETRAIN_RECIPE), pretrain),
        reward=_override(_recipe(REWARD_RECIPE), reward),
        posttrain=_posttrain(posttrain or {}, methods or {}),
        **settings,
    )


# The embedded simulated world (`--world`), the size of the embedded generator's data (1,000 users x 100 events over
# 400 items): taste weighs twice the generator's (affinity 3), so that the next item depends on the user more than on
# item quality (with the default 1.5 and a logging strength of 4, recommending the most popular items beat a
# pretrained HSTU); a continuation bonus of 2 for the next item of the last one's genre block (a series' next
# episode: about 30% of the logged events follow their predecessor, as the generator's follow-ups do), without which
# the tiny HSTU's test HR@10 was most-popular's (0.057 vs 0.058; with it 0.32 vs 0.059); a base of 1 instead of 2.8,
# so that the logged ratings spread like MovieLens' (1/7/24/32/36% of 1..5 stars) instead of 84% fives, where the
# trap boost was mostly clipped away (the base shifts every reward alike: the same items are logged); a logging
# policy that follows true taste closely (beta 3), every event observed (so a test row's history is the world's),
# the embedded data's rating noise, and 10% trap items whose observed rating is inflated but whose true reward is
# not (what a reward model fitted to the log cannot tell apart).
EMBEDDED_WORLD = {"world": {"num_users": 1000, "num_items": 400, "dim": 16, "seed": 0, "affinity_scale": 3.0,
                            "continuation": 2.0, "base": 1.0},
               "events_per_user": 100, "logging": {"strength": 3.0}, "observation": {"trap_share": 0.1},
               "setting": {"noise_std": 0.6, "num_users": 1000, "coverage": 1.0}, "seed": 0}
_ML1M_SCALE = {"num_users": 6000, "num_items": 3000, "mean_events": 160, "seed": 0}


def method_grids(learning_rates: tuple[float, ...], temperatures: tuple[float, ...], betas: tuple[float, ...],
           alphas: tuple[float, ...], kl_coefs: tuple[float, ...]) -> dict[str, dict[str, tuple[float, ...]]]:
    """Each method's grid over the hyperparameter that sets its strength (the learning rate for the two without
    one): SFT and RW-BC `learning_rate`, A-SFT `temperature` (λ), RS-DPO and RS-IPO `beta`, CQL `alpha`, PPO
    `kl_coef`."""
    return {"sft": {"learning_rate": learning_rates}, "rwbc": {"learning_rate": learning_rates},
            "asft": {"temperature": temperatures}, "dpo": {"beta": betas}, "ipo": {"beta": betas},
            "cql": {"alpha": alphas}, "ppo": {"kl_coef": kl_coefs}}


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
        # One epoch of 16 steps of 64 rows with a validation pass after 8 and 16 (PPO: ppo_epochs times the steps
        # over the same rows); two whole epochs per trial would take the README command past 3 minutes.
        posttrain={"num_train_epochs": 1, "per_device_train_batch_size": 64, "logging_steps": 4},
        methods={"dpo": {"num_candidates": 8}, "ipo": {"num_candidates": 8}},
        # A smoke test: a 2-member judge on its own backbone, pretrained half as long as the policy's.
        judge_training={"ensemble_size": 2},
        judge_pretraining={"num_train_epochs": 6},
        grids=method_grids(learning_rates=(1e-4, 3e-4), temperatures=(0.5, 2.0), betas=(0.1, 0.3), alphas=(0.1, 1.0),
                     kl_coefs=(0.05, 0.2)),
        eval_steps=8,
        patience=1,
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
        # Two epochs: with patience 1 a third epoch ran only where the second had improved, and it cost the 30-minute
        # budget a third of every trial (MovieLens-1M, 2 cores: trials of 36-91 s, about 24 s an epoch).
        posttrain={"num_train_epochs": 2},
        judge_training={"ensemble_size": 5},
        # Its own backbone pretrained half as long as the policies' (238 s of 15 epochs on MovieLens-1M).
        judge_pretraining={"num_train_epochs": 8},
        # Two trials per method (`full`: four), each grid holding what the first MovieLens-1M `quick` run chose
        # (learning rate 3e-4, λ 1, β 0.3, α 10, KL coefficient 0.2; β and KL at their grid's edge, so one value
        # past it; α keeps one value below 1).
        grids=method_grids(learning_rates=(1e-4, 3e-4), temperatures=(1.0, 2.0), betas=(0.3, 1.0),
                     alphas=(0.3, 10.0), kl_coefs=(0.2, 1.0)),
        patience=1,
        # The A-SFT ablations (7 runs and 7 evaluations, about 11 minutes) are `full`'s; `--ablations` adds them.
        ablations=False,
    ),
    "full": from_recipes(
        "full", synthetic=_ML1M_SCALE, posttrain={"num_train_epochs": 5}, bootstrap_resamples=2000,
        grids=method_grids(learning_rates=(3e-5, 1e-4, 3e-4, 1e-3), temperatures=(0.25, 0.5, 1.0, 2.0),
                     betas=(0.1, 0.3, 1.0, 3.0), alphas=(0.1, 1.0, 10.0, 100.0), kl_coefs=(0.05, 0.2, 0.5, 2.0)),
        # 5 seeds where they decide the verdict (A-SFT, RW-BC and the two best others on validation), 3 elsewhere.
        patience=2, default_seeds=5, reduced_seeds=3, focus_methods=2, ablation_seeds=3, ablations=True,
    ),
}


def get_preset(preset: str | BenchmarkPreset) -> BenchmarkPreset:
    """A preset by name (`tiny`, `quick`, `full`), or the given `BenchmarkPreset` itself."""
    if isinstance(preset, BenchmarkPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}.")
    return PRESETS[preset]
