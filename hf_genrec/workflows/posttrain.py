"""`hf-genrec posttrain`: post-train a pretrained recommender with one method (SFT, reward-weighted BC,
A-SFT, RS-DPO, RS-IPO, CQL, PPO) and report test ranking metrics on every subset."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from transformers import set_seed

from ..data.preferences import build_preference_dataset
from ..data.prepared import prepared_dataset_name
from ..evaluation.evaluator import dataset_subsets
from ..evaluation.metrics import ndcg_key, strip_metric_prefix
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
from ..trainers.policy import DEFAULT_LORA_TARGET_MODULES, recommender_peft_config
from .common import RunOptions, TrainingRun, best_epoch

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
# Fields of a PEFT config left out of the run's fingerprint: they do not change the trained weights.
PEFT_FINGERPRINT_IGNORED = ("peft_version", "base_model_name_or_path", "revision", "inference_mode")


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
                   reward_model, *, offline: bool = False) -> tuple[Any, dict[str, Any]]:
    """(config, training values) of `method`: what the method name implies < recipe < flags, checked."""
    config_class, trainer_class, implied = METHODS[method]
    check_method_overrides(method, config_class, method_overrides)
    args, training = run.training_config(config_class, recipe, implied=implied, overrides=method_overrides,
                                         source=f"recipe/flags of --method {method}")
    if implied.get("loss_type") and args.loss_type != [implied["loss_type"]]:  # DPOConfig keeps TRL's list form
        raise ValueError(f"--method {method} means loss_type={implied['loss_type']!r}, but loss_type={args.loss_type!r} was set.")
    if offline and trainer_class is not DPOTrainer:
        raise ValueError(f"--preferences logged trains on logged preference pairs, which only --method dpo and ipo "
                         f"read; --method {method} trains on the sequences. Fix: drop --preferences or use dpo/ipo.")
    if reward_model is None and not offline and trainer_class.needs_reward_model(args):
        hints = {"asft": " (or --baseline user_mean / zero with --reward-source observed)",
                 "dpo": " (or --preferences logged: DPO on logged pairs, no reward model)"}
        hint = hints.get("dpo" if method == "ipo" else method, "")
        raise ValueError(
            f"--method {method} with these settings queries a reward model: pass --reward-model DIR, a reward "
            f"ensemble written by `hf-genrec reward`{hint}."
        )
    return args, training


def _logged_pairs(train, preference_ratings: tuple[float, float], seed: int):
    """`--preferences logged`: the preference pairs `build_preference_dataset` finds in the training split."""
    high, low = preference_ratings
    pairs = build_preference_dataset(train, high_rating=high, low_rating=low, seed=seed)
    if len(pairs) == 0:
        raise ValueError(f"--preferences logged found no pair with ratings >= {high} and later <= {low} in the "
                         "training split. Fix: change --preference-ratings HIGH,LOW.")
    return pairs


def lora_arguments(*, use_peft: bool = False, lora_r: int | None = None, lora_alpha: int | None = None,
                   lora_dropout: float | None = None, lora_target_modules: list[str] | None = None) -> dict[str, Any]:
    """The `posttrain` keywords of the LoRA flags: `{"peft_config": trl.ModelConfig}` with `--use_peft` (TRL's
    defaults for the flags left out, the HSTU projections as targets unless named), `{"lora_r": r}` for
    `--lora-r` alone (hf-genrec's rank-only adapter), `{}` without LoRA."""
    trl_flags = {"lora_alpha": lora_alpha, "lora_dropout": lora_dropout, "lora_target_modules": lora_target_modules}
    given = {name: value for name, value in trl_flags.items() if value is not None}
    if not use_peft:
        if given:
            raise ValueError(
                f"--{next(iter(given))} applies only with --use_peft (TRL's LoRA flags); add --use_peft, or use "
                "--lora-r alone for a rank-r adapter with alpha 2r on the HSTU projections."
            )
        return {"lora_r": lora_r} if lora_r is not None else {}
    from trl import ModelConfig

    if lora_r is not None:
        given["lora_r"] = lora_r
    config = ModelConfig(use_peft=True, **given)
    if lora_target_modules is not None and len(lora_target_modules) == 1 and lora_target_modules[0] != "all-linear":
        # `ModelConfig` turns a single target into a string, which peft reads as a regular expression over full
        # module names (`uvqk` would match none): a single module name stays a name.
        config.lora_target_modules = list(lora_target_modules)
    return {"peft_config": config}


def resolve_peft_config(lora_r: int | None, peft_config: Any):
    """The `peft.LoraConfig` of a run (`recommender_peft_config`), or `None` to train every weight.

    `lora_r` is a rank-`lora_r` adapter with `lora_alpha = 2 * lora_r`, no dropout, on the HSTU projections,
    built through `trl.get_peft_config`; `peft_config` is a `peft.LoraConfig` or a `trl.ModelConfig`.
    """
    if lora_r is not None and peft_config is not None:
        raise ValueError(f"lora_r={lora_r} and peft_config were both given; pass one: lora_r for hf-genrec's rank-only "
                         "adapter, or peft_config (e.g. trl.ModelConfig(use_peft=True, lora_r=...)).")
    if lora_r is not None:
        from trl import ModelConfig

        peft_config = ModelConfig(use_peft=True, lora_r=lora_r, lora_alpha=2 * lora_r, lora_dropout=0.0,
                                  lora_target_modules=list(DEFAULT_LORA_TARGET_MODULES))
    return recommender_peft_config(peft_config)


def peft_description(peft_config) -> dict[str, Any] | None:
    """The fields of a resolved PEFT config that determine the trained weights, as JSON values (sets sorted)."""
    if peft_config is None:
        return None
    return {
        name: sorted(value) if isinstance(value, (set, frozenset)) else value
        for name, value in peft_config.to_dict().items() if name not in PEFT_FINGERPRINT_IGNORED
    }


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
    peft_config: Any = None,
    evaluate: bool = True,
    preferences: str = "sampled",
    preference_ratings: tuple[float, float] = (4.0, 2.0),
    options: RunOptions | None = None,
    **flags: Any,
) -> dict[str, Any]:
    """Post-train the recommender in `model_dir` with `method` on a prepared dataset and save it.

    Trains for the recipe's budget, then evaluates validation and test on every subset; with `eval_strategy`, each
    validation pass reports every subset (`metric_for_best_model` may name one). Writes to `output_dir`: the recommender
    (`config.json`, `model.safetensors`; extra heads as `<head>.safetensors`, a LoRA adapter under
    `adapter/`), `item_vocabulary.json`, the model card `README.md`, `recipe.yaml` (the recipe with every
    override applied) and `metrics.json`.

    Args:
        method: `sft`, `rwbc`, `asft`, `dpo`, `ipo`, `cql` or `ppo` (or the recipe's `method.name`).
        reward_model: a reward-ensemble directory (`hf-genrec reward`) or object; required by dpo, ipo, ppo
            and by asft with `baseline="value"` (its default) or `reward_source="model"`.
        method_overrides: config fields set from method flags (`temperature`, `beta`, ...).
        lora_r: train a LoRA adapter of this rank (alpha 2 · `lora_r`, no dropout) on the HSTU projections instead
            of all weights.
        peft_config: instead of `lora_r`, the adapter as a `peft.LoraConfig` or a `trl.ModelConfig(use_peft=True,
            ...)` (TRL's `task_type="CAUSAL_LM"` is dropped; targets default to the HSTU projections).
        preferences: for dpo/ipo, where the preference pairs come from: `"sampled"` (RS-DPO/IPO: items sampled
            from the reference policy, ranked by `reward_model`) or `"logged"` (TRL's offline DPO: pairs of logged
            items of the same user, built from the training split by
            `hf_genrec.data.preferences.build_preference_dataset`; no reward model needed).
        preference_ratings: with `preferences="logged"`, (high, low): a logged item rated >= high is chosen over a
            later item of the same user rated <= low.
        evaluate: rank the validation and test splits after training (`False`: skip it, e.g. when the caller
            evaluates the saved model itself, as `hf-genrec benchmark` does; `validation`/`test` are then empty).
        options, **flags: the `RunOptions` of the run (`epochs`, `seed`, `max_steps`, `training_overrides`
            for any other config field such as `bf16`, `overwrite`, `push_to_hub`, `hub_private`,
            `hub_token`, `callbacks`, and `resume`: continue from the newest complete checkpoint in
            `output_dir/checkpoints`, which needs a recipe that checkpoints, e.g. `save_strategy: epoch`, and the
            recipe, flags, data and models of the run that wrote it; the result equals an uninterrupted run's,
            LoRA adapters and extra heads included), as one object or as keywords.

    Returns the content of `metrics.json` (plus `hub_commit_url` when pushed; `selection` after validation passes).
    """
    # No `keep_cpu_heap_warm()` here: with the full-catalogue (P, V) temporaries of varying P, a heap that is
    # never trimmed grows by gigabytes over a run on a shared machine.
    options = RunOptions.merge(options, flags, caller="posttrain")
    recipe = resolve_recipe(recipe)
    method = resolve_method(method, recipe)
    lora = resolve_peft_config(lora_r, peft_config)
    run = TrainingRun(f"posttrain --method {method}", output_dir, options)
    if preferences not in ("sampled", "logged"):
        raise ValueError(f"preferences={preferences!r}: use 'sampled' (pairs ranked by the reward model) or 'logged'.")
    offline = preferences == "logged"
    with run.lock():
        args, training = _method_config(run, method, recipe, method_overrides or {}, reward_model, offline=offline)
        splits, vocabulary = run.load_data(data_dir, recipe["data"].get("split", "leave-one-out"), model_dir=model_dir)
        train_dataset = _logged_pairs(splits["train"], preference_ratings, args.seed) if offline else splits["train"]
        if args.eval_strategy != "no":  # every pass reports every subset, so the kept weights need no new pass
            args.eval_subsets = list(dataset_subsets(splits["validation"]))
        if reward_model is not None:
            run.add_input("reward_model", reward_model)
        # `lora_r` alone keeps the fingerprint of earlier runs (their checkpoints still resume); a PEFT config adds all
        # of its fields.
        identity = {"peft_config": peft_description(lora)} if peft_config is not None else {}
        if offline:  # runs with sampled pairs keep the fingerprint of earlier runs
            identity["preferences"] = {"source": preferences, "ratings": list(preference_ratings)}
        run.describe(recipe, training, model=dict(recipe["model"]), data=dict(recipe["data"]), method={"name": method},
                     lora_r=lora_r, **identity)

        # Seed before loading so the seed also fixes any newly initialised weights (heads).
        set_seed(args.seed)
        model = AutoModelForNextItemPrediction.from_pretrained(model_dir, **recipe["model"])
        if model.config.num_items != vocabulary.num_items:
            raise ValueError(f"the model scores {model.config.num_items} items but the dataset has {vocabulary.num_items}.")
        trainer = METHODS[method][1](
            model=model,
            reward_model=reward_model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=splits["validation"],
            processing_class=vocabulary,
            peft_config=lora,
            callbacks=run.callbacks,
        )
        trainer.dataset_name = prepared_dataset_name(data_dir)
        train_output = run.train(trainer)
        validation, test = run.evaluate(trainer, splits) if evaluate else ({}, {})
        trainer.save_model(str(run.output_dir))  # the model card is written here, with the metrics above
        return run.finish(_report(run, trainer, train_output, method=method, validation=validation, test=test,
                                  base_model=model_dir, reward_model=reward_model, training=training, lora=lora,
                                  preferences=identity.get("preferences"),
                                  num_preference_pairs=len(train_dataset) if offline else None))


def _report(run: TrainingRun, trainer, train_output, *, method: str, validation: dict[str, Any],
            test: dict[str, Any], base_model, reward_model, training: dict[str, Any], lora,
            preferences: dict[str, Any] | None = None, num_preference_pairs: int | None = None) -> dict[str, Any]:
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
        "lora_r": getattr(lora, "r", None),
        "peft_config": peft_description(lora),
        "preferences": preferences or ({"source": "sampled"} if isinstance(trainer, DPOTrainer) else None),
        "num_preference_pairs": num_preference_pairs,
        "global_steps": trainer.state.global_step,
        "epochs_trained": trainer.state.epoch,
        "last_train_log": train_logs[-1] if train_logs else None,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        **run.resources(),
        "seed": trainer.args.seed,
        **({"selection": _selection(trainer)} if trainer.args.eval_strategy != "no" else {}),
    }


def _selection(trainer) -> dict[str, Any]:
    """What the validation passes during training found: `metric` (the `metric_for_best_model` key without the
    `eval_` prefix), `best_metric`, `best_step`, `best_epoch` and `history` (step, epoch and metric of each)."""
    state, args = trainer.state, trainer.args
    name = args.metric_for_best_model or ndcg_key(10)
    name = name[len("eval_"):] if name.startswith("eval_") else name
    history = []
    for entry in state.log_history:
        metrics = strip_metric_prefix(entry, "eval")
        if name in metrics:
            history.append({"step": entry.get("step"), "epoch": entry.get("epoch"), "metric": metrics[name]})
    return {"metric": name, "best_metric": state.best_metric, "best_step": state.best_global_step,
            "best_epoch": best_epoch(trainer), "history": history}


__all__ = ["METHODS", "lora_arguments", "peft_description", "posttrain", "resolve_method", "resolve_peft_config"]
