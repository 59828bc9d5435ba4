"""`hf-genrec posttrain`: post-train a pretrained recommender with one method (SFT, reward-weighted BC,
A-SFT, RS-DPO, RS-IPO, CQL, PPO) and report test ranking metrics on every subset."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..data import ItemVocabulary
from ..data.prepared import PREPARE_MANIFEST, check_same_vocabulary, load_prepared
from ..evaluation.metrics import SUBSETS
from ..models import AutoModelForNextItemPrediction
from ..recipes import RecipeError, build_training_config, load_recipe
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
from ..trainers.base import last_complete_checkpoint
from ..utils.io import check_output_dir, peak_memory_mb
from .common import CHECKPOINTS_DIR, METRICS_FILE, RECIPE_FILE, finish_run, is_main_process, write_recipe

logger = logging.getLogger(__name__)

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


def _dataset_name(data_dir: Path) -> str:
    manifest = data_dir / PREPARE_MANIFEST
    if manifest.is_file():
        source = json.loads(manifest.read_text(encoding="utf-8")).get("input")
        if source:
            return f"{Path(source).parent.name}/{Path(source).name} (prepared at {data_dir})"
    return str(data_dir)


def posttrain(
    data_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    method: str | None = None,
    reward_model: str | os.PathLike | Any | None = None,
    recipe: str | os.PathLike | dict | None = None,
    epochs: float | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    method_overrides: dict[str, Any] | None = None,
    training_overrides: dict[str, Any] | None = None,
    lora_r: int | None = None,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    hub_private: bool = False,
    hub_token: str | None = None,
    callbacks: list | None = None,
    evaluate: bool = True,
    resume: bool = False,
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
        training_overrides: any other config fields (e.g. `bf16`).
        lora_r: train a LoRA adapter of this rank on the HSTU projections instead of all weights.
        evaluate: rank the validation and test splits after training (`False`: skip it, e.g. when the caller
            evaluates the saved model itself, as `hf-genrec benchmark` does; `validation`/`test` are then empty).
        resume: continue from the newest complete checkpoint in `output_dir/checkpoints` (the recipe must
            checkpoint, e.g. `save_strategy: epoch`); the result equals an uninterrupted run's.

    Returns the content of `metrics.json` (plus `hub_commit_url` when pushed).
    """
    start = time.time()
    # No `keep_cpu_heap_warm()` here: with the full-catalogue (P, V) temporaries of varying P, a heap that is
    # never trimmed grows by gigabytes over a run on a shared machine.
    recipe = dict(recipe) if isinstance(recipe, dict) else load_recipe(recipe)
    for section in ("model", "training", "data", "method"):
        recipe.setdefault(section, {})
    method = resolve_method(method, recipe)
    config_class, trainer_class, implied = METHODS[method]
    check_method_overrides(method, config_class, method_overrides or {})

    output_dir, data_dir = Path(output_dir), Path(data_dir)
    training = {**implied, **recipe["training"], **(training_overrides or {}), **(method_overrides or {})}
    if epochs is not None:
        training["num_train_epochs"] = epochs
    if seed is not None:
        training["seed"] = seed
    if max_steps is not None:
        training["max_steps"] = max_steps
    training["output_dir"] = str(output_dir / CHECKPOINTS_DIR)
    args = build_training_config(config_class, training, source=f"recipe/flags of --method {method}")
    if implied.get("loss_type") and args.loss_type != implied["loss_type"]:
        raise ValueError(f"--method {method} means loss_type={implied['loss_type']!r}, but loss_type={args.loss_type!r} was set.")
    if reward_model is None and trainer_class.needs_reward_model(args):
        hint = " (or --baseline user_mean / zero with --reward-source observed)" if method == "asft" else ""
        raise ValueError(
            f"--method {method} with these settings queries a reward model: pass --reward-model DIR, a reward "
            f"ensemble written by `hf-genrec reward`{hint}."
        )

    main_process = is_main_process()
    if main_process and not resume:
        check_output_dir(output_dir, METRICS_FILE, overwrite)
    splits, vocabulary = load_prepared(data_dir, recipe["data"].get("split", "leave-one-out"))
    model_path = Path(model_dir)
    if (model_path / "item_vocabulary.json").is_file():
        check_same_vocabulary(ItemVocabulary.from_pretrained(model_path), vocabulary, model_dir)
    if main_process:
        used = {key: recipe[key] for key in ("description",) if key in recipe}
        used.update(model=dict(recipe["model"]), training={k: v for k, v in training.items() if k != "output_dir"},
                    data=dict(recipe["data"]), method={"name": method})
        write_recipe(output_dir / RECIPE_FILE, used)

    # Seed before loading so the seed also fixes any newly initialised weights (heads).
    set_seed(args.seed)
    model = AutoModelForNextItemPrediction.from_pretrained(model_dir, **recipe["model"])
    if model.config.num_items != vocabulary.num_items:
        raise ValueError(f"the model scores {model.config.num_items} items but the dataset has {vocabulary.num_items}.")
    peft_config = None
    if lora_r is not None:
        from peft import LoraConfig

        peft_config = LoraConfig(r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                 target_modules=LORA_TARGET_MODULES, task_type=None)
    trainer = trainer_class(
        model=model,
        reward_model=reward_model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=vocabulary,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.dataset_name = _dataset_name(data_dir)
    resume_from = last_complete_checkpoint(args.output_dir) if resume else None
    if resume and resume_from is None:
        logger.warning("--resume: no complete checkpoint in %s (set save_strategy to keep some); training from "
                       "scratch", args.output_dir)
    train_output = trainer.train(resume_from_checkpoint=resume_from)

    validation, test = {}, {}
    if evaluate:
        trainer.args.eval_subsets = list(SUBSETS)
        validation = trainer.evaluate(splits["validation"], metric_key_prefix="validation")
        test = trainer.evaluate(splits["test"], metric_key_prefix="test")
    trainer.save_model(str(output_dir))  # the model card is written here, with the metrics above

    def strip(metrics: dict, prefix: str) -> dict:
        return {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix + "_")}

    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    report = {
        "method": method,
        "trainer": trainer_class.__name__,
        "validation": strip(validation, "validation"),
        "test": strip(test, "test"),
        "base_model": str(model_dir),
        "reward_model": str(reward_model) if isinstance(reward_model, (str, os.PathLike)) else None,
        "hyperparameters": {k: v for k, v in training.items() if k != "output_dir"},
        "lora_r": lora_r,
        "global_steps": trainer.state.global_step,
        "epochs_trained": trainer.state.epoch,
        "last_train_log": train_logs[-1] if train_logs else None,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "total_runtime_s": round(time.time() - start, 1),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "seed": args.seed,
    }
    if not main_process:
        return report
    report = finish_run(output_dir, METRICS_FILE, report, push_to_hub, hub_private=hub_private, hub_token=hub_token,
                        commit_message=f"hf-genrec posttrain --method {method}: {output_dir.name}")
    return report


__all__ = ["METHODS", "posttrain", "resolve_method"]
