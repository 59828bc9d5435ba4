"""Benchmark presets: model sizes, training budgets and ensemble sizes of `hf-genrec benchmark --preset`.

- `tiny`: a smoke test, about a minute on 2 CPU cores on the embedded synthetic data (~100k ratings): a
  small HSTU, a few epochs, 2-member ensembles, a few optimizer steps per method.
- `quick`: MovieLens-1M in well under an hour on 2 CPU cores: the reference HSTU shape with a shorter
  pretraining (pass `--pretrained` to reuse a converged checkpoint), 3-member ensembles of one epoch, and
  about half an epoch of post-training per method.
- `full`: the faithful configuration: the `recipes/movielens-1m/` recipes (HSTU reference recipe, 5-member
  reward ensembles of 6 epochs, 3 epochs of post-training per method) and a 5-member judge.

Post-training budgets are the same for every method (the same passes over the training rows); PPO gets
`ppo_epochs` optimizer steps per rollout batch, so under a `max_steps` budget its steps are multiplied by
`ppo_epochs` to see the same rows.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BenchmarkPreset", "PRESETS", "get_preset"]

# Training values of each method, as in recipes/movielens-1m/<method>.yaml (besides the shared budget).
METHOD_TRAINING: dict[str, dict[str, Any]] = {
    "sft": {},
    "rwbc": {"weighting": "reward"},
    "asft": {"temperature": 1.0, "max_weight": 20.0, "baseline": "value", "reward_source": "observed",
             "normalize_weights": False},
    "dpo": {"loss_type": "sigmoid", "beta": 0.1, "num_candidates": 16, "include_logged_item": True,
            "confidence_z": 1.0, "contexts_per_sequence": 2},
    "ipo": {"loss_type": "ipo", "beta": 0.1, "num_candidates": 16, "include_logged_item": True,
            "confidence_z": 1.0, "contexts_per_sequence": 2},
    "cql": {"alpha": 10.0},  # chosen on ML-1M validation NDCG@10 among {1, 3, 10} (recipes/movielens-1m/cql.yaml)
    "ppo": {"ppo_epochs": 4, "cliprange": 0.2, "kl_coef": 0.05, "vf_coef": 0.1, "contexts_per_sequence": 2,
            "samples_per_context": 4, "whiten_advantages": True},
}
DEFAULT_METHODS = ("sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo")
REFERENCE_METHOD = "rwbc"

# recipes/movielens-1m/hstu.yaml
_HSTU_MODEL = {"hidden_size": 50, "num_hidden_layers": 2, "num_attention_heads": 1, "attention_dim": 50,
               "linear_dim": 50, "max_seq_len": 200, "max_position_embeddings": 211, "input_dropout": 0.2,
               "linear_dropout": 0.2, "similarity_temperature": 0.05, "loss_type": "sampled_softmax",
               "num_negatives": 128}
_HSTU_TRAINING = {"learning_rate": 1.0e-3, "adam_beta1": 0.9, "adam_beta2": 0.98, "weight_decay": 0.0,
                  "per_device_train_batch_size": 128, "per_device_eval_batch_size": 128, "num_train_epochs": 100,
                  "early_stopping_patience": 15, "bf16": True, "seed": 42}
# recipes/movielens-1m/reward.yaml
_REWARD_MODEL = {"reward_head_hidden_size": 64, "reward_min": 1.0, "reward_max": 5.0, "reward_loss_type": "mse",
                 "value_loss_weight": 1.0}
_REWARD_TRAINING = {"ensemble_size": 5, "bootstrap": True, "freeze_backbone": False, "next_item_loss_weight": 0.1,
                    "learning_rate": 1.0e-3, "adam_beta2": 0.98, "weight_decay": 0.0, "lr_scheduler_type": "cosine",
                    "per_device_train_batch_size": 128, "per_device_eval_batch_size": 512, "num_train_epochs": 6,
                    "bf16": True, "seed": 42, "logging_steps": 10}
# recipes/movielens-1m/sft.yaml (the budget every method shares there)
_POSTTRAIN_TRAINING = {"learning_rate": 1.0e-4, "per_device_train_batch_size": 128, "num_train_epochs": 1,
                       "bf16": True, "seed": 42, "logging_steps": 5}


@dataclass(frozen=True)
class BenchmarkPreset:
    """Everything a benchmark run trains and measures, besides the data and the methods.

    Attributes:
        name: the preset's name.
        synthetic: `generate_synthetic_interactions` arguments for the embedded data (no `--input`).
        pretrain: the pretraining recipe (`model`, `training`).
        reward: the recipe of the reward ensemble the methods train against (`model`, `training`).
        judge_training: training values that differ for the judge ensemble (e.g. `ensemble_size`).
        judge_seed: seed of judge member 0 (member k: + k); far from the training ensemble's seeds.
        posttrain: training values shared by every method (the budget).
        method_training: per-method training values (method flags).
        lambdas: A-SFT temperatures λ of the sweep.
        sweep_seeds: how many seeds the λ sweep runs (None: all of `--seeds`).
        horizon, gamma, time_gap: the judge rollout (see `hf_genrec.evaluation.judge`).
        eval_batch_size: users per evaluation pass.
        bootstrap_resamples: resamples of the bootstrap intervals.
    """

    name: str
    synthetic: dict[str, Any]
    pretrain: dict[str, Any]
    reward: dict[str, Any]
    judge_training: dict[str, Any]
    posttrain: dict[str, Any]
    method_training: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(METHOD_TRAINING))
    lambdas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    sweep_seeds: int | None = None
    judge_seed: int = 1000
    horizon: int = 3
    gamma: float = 0.9
    time_gap: int = 60
    eval_batch_size: int = 256
    bootstrap_resamples: int = 1000

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def method_recipe(self, method: str, split: str, **overrides: Any) -> dict[str, Any]:
        """The `posttrain` recipe of `method`: the shared budget, the method's values, then `overrides`."""
        training = {**self.posttrain, **self.method_training.get(method, {}), **overrides}
        if method == "ppo" and "max_steps" in training:  # same rows as the others: ppo_epochs steps per batch
            training["max_steps"] = training["max_steps"] * training.get("ppo_epochs", 4)
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


_TINY_MODEL = {"hidden_size": 32, "num_hidden_layers": 2, "attention_dim": 32, "linear_dim": 32, "max_seq_len": 64,
               "max_position_embeddings": 75, "num_negatives": 64}

PRESETS: dict[str, BenchmarkPreset] = {
    "tiny": BenchmarkPreset(
        name="tiny",
        synthetic={"num_users": 1000, "num_items": 400, "mean_events": 100, "seed": 0},
        pretrain={"model": _TINY_MODEL,
                  "training": {"num_train_epochs": 12, "per_device_train_batch_size": 64,
                               "per_device_eval_batch_size": 512, "bf16": True, "seed": 42, "logging_steps": 10}},
        reward={"model": {"reward_head_hidden_size": 32, "reward_min": 1.0, "reward_max": 5.0},
                "training": {"ensemble_size": 2, "bootstrap": True, "next_item_loss_weight": 0.1,
                             "learning_rate": 1.0e-3, "num_train_epochs": 2, "per_device_train_batch_size": 64,
                             "per_device_eval_batch_size": 512, "bf16": True, "seed": 42, "logging_steps": 10}},
        judge_training={"ensemble_size": 2},
        posttrain={"learning_rate": 1.0e-4, "per_device_train_batch_size": 64, "max_steps": 16, "bf16": True,
                   "seed": 42, "logging_steps": 4},
        method_training={**copy.deepcopy(METHOD_TRAINING),
                         "dpo": {**METHOD_TRAINING["dpo"], "num_candidates": 8},
                         "ipo": {**METHOD_TRAINING["ipo"], "num_candidates": 8}},
        lambdas=(0.5, 1.0, 2.0),
        eval_batch_size=512,
        bootstrap_resamples=500,
    ),
    "quick": BenchmarkPreset(
        name="quick",
        synthetic={"num_users": 6000, "num_items": 3000, "mean_events": 160, "seed": 0},
        pretrain={"model": _HSTU_MODEL,
                  "training": {**_HSTU_TRAINING, "num_train_epochs": 15, "early_stopping_patience": None}},
        reward={"model": _REWARD_MODEL,
                "training": {**_REWARD_TRAINING, "ensemble_size": 3, "num_train_epochs": 1}},
        judge_training={"ensemble_size": 3},
        posttrain={**_POSTTRAIN_TRAINING, "num_train_epochs": 1, "max_steps": 24},
        sweep_seeds=1,
    ),
    "full": BenchmarkPreset(
        name="full",
        synthetic={"num_users": 6000, "num_items": 3000, "mean_events": 160, "seed": 0},
        pretrain={"model": _HSTU_MODEL, "training": _HSTU_TRAINING},
        reward={"model": _REWARD_MODEL, "training": _REWARD_TRAINING},
        judge_training={},
        posttrain={**_POSTTRAIN_TRAINING, "num_train_epochs": 3},
        bootstrap_resamples=2000,
    ),
}


def get_preset(preset: str | BenchmarkPreset) -> BenchmarkPreset:
    """A preset by name (`tiny`, `quick`, `full`), or the given `BenchmarkPreset` itself."""
    if isinstance(preset, BenchmarkPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}.")
    return PRESETS[preset]
