"""`hf-genrec posttrain`: post-train a pretrained recommender with one method (SFT, reward-weighted BC,
A-SFT, RS-DPO, RS-IPO, CQL, PPO) and report test ranking metrics on every subset."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from transformers import set_seed

from ..data.prepared import prepared_dataset_name
from ..models import AutoModelForNextItemPrediction
from ..recipes import RecipeError, resolve_recipe
from ..trainers import (
    ASFTConfig,
    ASFTTrainer,
    CQLConfig,
    CQLTrainer,
    DPOConfig,
    DPOTrainer,
    PPOConfig,
    PPOTrainer,
    RWBCConfig,
    RWBCTrainer,
    SFTConfig,
    SFTTrainer,
)
from .common import RunOptions, TrainingRun

# method name -> (config class, trainer class, config values the method name implies)
METHODS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "sft": (SFTConfig, SFTTrainer, {}),
    "rwbc": (RWBCConfig, RWBCTrainer, {}),
    "asft": (ASFTConfig, ASFTTrainer, {}),
    "dpo": (DPOConfig, DPOTrainer, {"loss_type": "sigmoid"}),
    "ipo": (DPOConfig, DPOTrainer, {"loss_type": "ipo"}),
    "cql": (CQLConfig, CQLTrainer, {}),
    "ppo": (PPOConfig, PPOTrainer, {}),
}
# The keys a recipe's `method` section may hold.
METHOD_FIELDS = ("name",)
# LoRA on the HSTU projections (`--lora-r`).
LORA_TARGET_MODULES = ["uvqk", "o_proj"]


def resolve_method(method: str | None, recipe: dict[str, Any]) -> str:
    """The method from `--method` or the recipe's `method: {name: ...}` (they must agree when both are set)."""
    unknown = [key for key in recipe.get("method", {}) if key not in METHOD_FIELDS]
    if unknown:
        raise RecipeError(f"unknown key(s) {unknown} in the recipe's 'method' section; valid keys: {list(METHOD_FIELDS)}.")
    from_recipe = recipe.get("method", {}).get("name")
    if method and from_recipe and method != from_recipe:
        raise ValueError(f"--method {method} contradicts the recipe's method '{from_recipe}'; drop one of them.")
    method = method or from_recipe
    if method is None:
        raise ValueError(f"no method: pass --method (one of {', '.join(METHODS)}) or a recipe with `method: {{name: ...}}`.")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid methods: {', '.join(METHODS)}.")
    return method


def check_method_overrides(method: str, config_class: type, overrides: dict[str, Any]) -> None:
    """Method flags must name fields of the method's config (`--beta` means nothing to A-SFT)."""
    valid = {f.name for f in dataclasses.fields(config_class)}
    for name in overrides:
        if name not in valid:
            raise ValueError(
                f"--{name.replace('_', '-')} does not apply to --method {method} ({config_class.__name__} has no "
                f"field {name!r})."
            )


def _method_config(run: TrainingRun, method: str, recipe: dict[str, Any], method_overrides: dict[str, Any],
                   reward_model) -> tuple[Any, dict[str, Any]]:
    """(config, training values) of `method`: what the method name implies < recipe < flags, checked."""
    config_class, trainer_class, implied = METHODS[method]
    check_method_overrides(method, config_class, method_overrides)
    args, training = run.training_config(config_class, recipe, implied=implied, overrides=method_overrides,
                                         source=f"recipe/flags of --method {method}")
    if implied.get("loss_type") and args.loss_type != implied["loss_type"]:
        raise ValueError(f"--method {method} means loss_type={implied['loss_type']!r}, but loss_type={args.loss_type!r} was set.")
    if reward_model is None and trainer_class.needs_reward_model(args):
        hint = " (or --baseline user_mean / zero with --reward-source observed)" if method == "asft" else ""
        raise ValueError(
            f"--method {method} with these settings queries a reward model: pass --reward-model DIR, a reward "
            f"ensemble written by `hf-genrec reward`{hint}."
        )
    return args, training


def _lora_config(lora_r: int | None):
    """A LoRA adapter of rank `lora_r` on the HSTU projections, or `None` to train every weight."""
    if lora_r is None:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0, target_modules=LORA_TARGET_MODULES,
                      task_type=None)


def posttrain(
    data_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method: str | None = None,
    reward_model: str | os.PathLike | Any | None = None,
    recipe: str | os.PathLike | dict | None = None,
    method_overrides: dict[str, Any] | None = None,
    lora_r: int | None = None,
    evaluate: bool = True,
    options: RunOptions | None = None,
    **flags: Any,
) -> dict[str, Any]:
    """Post-train the recommender in `model_dir` with `method` on a prepared dataset and save it.

    Trains for the recipe's budget (no epoch selection), then evaluates validation and test on every
    subset (`all`, `high_reward_target`, `high_reward_trajectory`). Writes to `output_dir`: the recommender
    (`config.json`, `model.safetensors`; extra heads as `<head>.safetensors`, a LoRA adapter under
    `adapter/`), `item_vocabulary.json`, the model card `README.md`, `recipe.yaml` (the recipe with every
    override applied) and `metrics.json`.

    Args:
        method: `sft`, `rwbc`, `asft`, `dpo`, `ipo`, `cql` or `ppo` (or the recipe's `method.name`).
        reward_model: a reward-ensemble directory (`hf-genrec reward`) or object; required by dpo, ipo, ppo
            and by asft with `baseline="value"` (its default) or `reward_source="model"`.
        method_overrides: config fields set from method flags (`temperature`, `beta`, ...).
        lora_r: train a LoRA adapter of this rank on the HSTU projections instead of all weights.
        evaluate: rank the validation and test splits after training (`False`: skip it, e.g. when the caller
            evaluates the saved model itself, as `hf-genrec benchmark` does; `validation`/`test` are then empty).
        options, **flags: the `RunOptions` of the run (`epochs`, `seed`, `max_steps`, `training_overrides`
            for any other config field such as `bf16`, `overwrite`, `push_to_hub`, `hub_private`,
            `hub_token`, `callbacks`, and `resume`: continue from the newest complete checkpoint in
            `output_dir/checkpoints`, which needs a recipe that checkpoints, e.g. `save_strategy: epoch`, and the
            recipe, flags, data and models of the run that wrote it; the result equals an uninterrupted run's,
            LoRA adapters and extra heads included), as one object or as keywords.

    Returns the content of `metrics.json` (plus `hub_commit_url` when pushed).
    """
    # No `keep_cpu_heap_warm()` here: with the full-catalogue (P, V) temporaries of varying P, a heap that is
    # never trimmed grows by gigabytes over a run on a shared machine.
    options = RunOptions.merge(options, flags, caller="posttrain")
    recipe = resolve_recipe(recipe)
    method = resolve_method(method, recipe)
    run = TrainingRun(f"posttrain --method {method}", output_dir, options)
    args, training = _method_config(run, method, recipe, method_overrides or {}, reward_model)
    splits, vocabulary = run.load_data(data_dir, recipe["data"].get("split", "leave-one-out"), model_dir=model_dir)
    if reward_model is not None:
        run.add_input("reward_model", reward_model)
    run.describe(recipe, training, model=dict(recipe["model"]), data=dict(recipe["data"]), method={"name": method},
                 lora_r=lora_r)

    # Seed before loading so the seed also fixes any newly initialised weights (heads).
    set_seed(args.seed)
    model = AutoModelForNextItemPrediction.from_pretrained(model_dir, **recipe["model"])
    if model.config.num_items != vocabulary.num_items:
        raise ValueError(f"the model scores {model.config.num_items} items but the dataset has {vocabulary.num_items}.")
    trainer = METHODS[method][1](
        model=model,
        reward_model=reward_model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=vocabulary,
        peft_config=_lora_config(lora_r),
        callbacks=run.callbacks,
    )
    trainer.dataset_name = prepared_dataset_name(data_dir)
    train_output = run.train(trainer)
    validation, test = run.evaluate(trainer, splits) if evaluate else ({}, {})
    trainer.save_model(str(run.output_dir))  # the model card is written here, with the metrics above
    return run.finish(_report(run, trainer, train_output, method=method, validation=validation, test=test,
                              base_model=model_dir, reward_model=reward_model, training=training, lora_r=lora_r))


def _report(run: TrainingRun, trainer, train_output, *, method: str, validation: dict[str, Any],
            test: dict[str, Any], base_model, reward_model, training: dict[str, Any], lora_r: int | None) -> dict[str, Any]:
    """What `metrics.json` of a post-training run holds."""
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    return {
        "method": method,
        "trainer": type(trainer).__name__,
        "validation": validation,
        "test": test,
        "base_model": str(base_model),
        "reward_model": str(reward_model) if isinstance(reward_model, (str, os.PathLike)) else None,
        "hyperparameters": training,
        "lora_r": lora_r,
        "global_steps": trainer.state.global_step,
        "epochs_trained": trainer.state.epoch,
        "last_train_log": train_logs[-1] if train_logs else None,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        **run.resources(),
        "seed": trainer.args.seed,
    }


__all__ = ["METHODS", "posttrain", "resolve_method"]
