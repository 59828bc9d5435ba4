"""Model cards of trained recommenders, rendered from the one template `hf_genrec/templates/model_card.md`.

Every trainer writes its card through `GenRecTrainer.create_model_card`, which calls `build_model_card`:
the method (`_name`, `_paper` of the trainer class), its hyperparameters (the config's own fields plus the
main optimisation settings), the base model, the dataset and the evaluation metrics logged so far.
Trainer code writes no card prose. This module reads the trainer it is given and never imports the
trainers (the trainers import it).

The card's metadata is what the Hub indexes: `library_name`, `tags` (the trainer's, plus the task),
`pipeline_tag`, `base_model` and `datasets` (when they are Hub repo ids), and `model-index` (`eval_results`)
from the logged validation/test metrics.
"""

from __future__ import annotations

import dataclasses
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import TrainingArguments

from ..evaluation.metrics import RUNTIME, strip_metric_prefix

TEMPLATE_PATH = Path(__file__).resolve().parents[1] / "templates" / "model_card.md"
# Optimisation settings shown for every method, next to the method's own fields.
COMMON_HYPERPARAMETERS = (
    "learning_rate",
    "num_train_epochs",
    "max_steps",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "lr_scheduler_type",
    "weight_decay",
    "seed",
    "bf16",
)
# Prefixes of logged evaluation metrics, as `Trainer.evaluate(metric_key_prefix=...)` writes them.
METRIC_PREFIXES = ("validation", "test", "eval")
_NOT_METRICS = (RUNTIME, "samples_per_second", "steps_per_second", "loss")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# The task of `hf_genrec.pipeline_task.TASK` (not imported: importing it registers the pipeline).
TASK = "next-item-recommendation"
# The Hub refuses a README whose `pipeline_tag` is not one of its own tasks, and recommendation is none of them:
# cards say `other` (the Hub's tag for such models) and name the task in `tags` and in `model-index`.
PIPELINE_TAG = "other"
TASK_TAGS = ("recommendation", TASK)
# Counts logged beside the metrics, which are no results.
_NOT_RESULTS = ("num_users",)


def method_hyperparameters(
    args: TrainingArguments, common_config: type[TrainingArguments] = TrainingArguments
) -> dict[str, Any]:
    """The config's method fields (those `common_config`, the configs' shared base, does not have) plus
    `COMMON_HYPERPARAMETERS` (`max_steps` only when set)."""
    shared = {f.name for f in dataclasses.fields(common_config)}
    values = {name: getattr(args, name) for name in COMMON_HYPERPARAMETERS if hasattr(args, name)}
    if values.get("max_steps", -1) <= 0:
        values.pop("max_steps", None)
    for f in dataclasses.fields(args):
        if f.name not in shared:
            values[f.name] = getattr(args, f.name)
    return {name: value.value if isinstance(value, Enum) else value for name, value in values.items()}


def logged_metrics(log_history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """`{split: {metric: value}}` from the latest logged `validation_*`, `test_*` and `eval_*` values."""
    metrics: dict[str, dict[str, float]] = {}
    for entry in log_history:
        for prefix in METRIC_PREFIXES:
            for name, value in strip_metric_prefix(entry, prefix).items():
                if name.endswith(_NOT_METRICS) or not isinstance(value, (int, float)):
                    continue
                metrics.setdefault(prefix, {})[name] = round(float(value), 4) if isinstance(value, float) else value
    return metrics


def hub_repo_id(name: str | None) -> str | None:
    """`name` if it is a Hub repo id (`namespace/name`, no local path of that name), else `None`: only those are
    valid card metadata; a local path is named in the card's text instead."""
    return name if name and _REPO_ID.match(name) and not os.path.exists(name) else None


def eval_results(
    metrics: dict[str, dict[str, float]], *, dataset_id: str | None, dataset_name: str | None
) -> list[EvalResult]:
    """The card's `model-index`: one `EvalResult` per split and metric of `metrics` (`logged_metrics`), on the
    Hub dataset `dataset_id` (`custom` when the data was a local folder)."""
    results = []
    for split in METRIC_PREFIXES:
        for name, value in metrics.get(split, {}).items():
            if name.endswith(_NOT_RESULTS):
                continue
            results.append(EvalResult(
                task_type=TASK, task_name="Next-item recommendation", dataset_type=dataset_id or "custom",
                dataset_name=dataset_id or dataset_name or "prepared dataset", dataset_split=split,
                metric_type=name, metric_name=name, metric_value=value,
            ))
    return results


def _versions() -> dict[str, str]:
    import datasets
    import peft
    import torch
    import transformers

    from ..version import __version__

    return {"hf_genrec": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "datasets": datasets.__version__, "peft": peft.__version__}


def build_model_card(
    trainer,
    model_name: str | None = None,
    dataset_name: str | None = None,
    base_model: str | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
    extra_files: list[str] | None = None,
    common_config: type[TrainingArguments] = TrainingArguments,
) -> ModelCard:
    """Render the card of `trainer`'s model.

    Args:
        trainer: a `GenRecTrainer` (its class attributes `_name`, `_paper`, `_tag_names`, its `args`, model
            and `state.log_history` fill the card).
        model_name: title of the card (default: the output directory's name).
        dataset_name: what the model was trained on (default: `trainer.dataset_name` if set).
        base_model: the checkpoint training started from (default: the model config's `_name_or_path`).
        tags: more Hub tags.
        license: a license identifier for the metadata.
        extra_files: files saved beside the model worth naming (e.g. extra heads).
        common_config: the config class every method's config extends (`GenRecConfig`); only the fields it
            lacks are shown as the method's hyperparameters.
    """
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    config = getattr(model, "config", None)
    base_model = base_model or (getattr(config, "_name_or_path", "") or None)
    dataset_name = dataset_name or getattr(trainer, "dataset_name", None)
    model_name = model_name or Path(args.output_dir).name
    all_tags = list(dict.fromkeys([*trainer._tag_names, *TASK_TAGS, *(tags or [])]))
    dataset_id = hub_repo_id(dataset_name)
    if extra_files is None:
        extra_files = [f"{name}.safetensors" for name in getattr(trainer, "_head_names", ())]
        if getattr(trainer, "is_peft", False):
            extra_files.append("adapter/ (the LoRA adapter; the directory holds the merged model)")

    peft = None
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        adapter = next(iter(peft_config.values()))
        targets = sorted(adapter.target_modules) if adapter.target_modules else []
        peft = f"{adapter.peft_type.value} (r = {getattr(adapter, 'r', '?')}, target modules {targets})"

    metrics = logged_metrics(trainer.state.log_history)
    metric_splits = [split for split in METRIC_PREFIXES if split in metrics]
    metric_names = list(dict.fromkeys(name for split in metric_splits for name in metrics[split]))

    card_data = ModelCardData(
        library_name="hf_genrec",
        pipeline_tag=PIPELINE_TAG,
        tags=all_tags,
        license=license,
        base_model=hub_repo_id(base_model),
        datasets=[dataset_id] if dataset_id else None,
        model_name=model_name,
        eval_results=eval_results(metrics, dataset_id=dataset_id, dataset_name=dataset_name) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        repo_id=args.hub_model_id or model_name,
        method=trainer._name,
        paper=trainer._paper,
        trainer_class=type(trainer).__name__,
        config_class=type(args).__name__,
        base_model=base_model,
        dataset_name=dataset_name,
        dataset_id=dataset_id,
        peft=peft,
        extra_files=", ".join(f"`{name}`" for name in extra_files) if extra_files else None,
        hyperparameters=method_hyperparameters(args, common_config),
        metrics=metrics,
        metric_splits=metric_splits,
        metric_names=metric_names,
        versions=_versions(),
    )


__all__ = [
    "PIPELINE_TAG",
    "TASK",
    "TASK_TAGS",
    "TEMPLATE_PATH",
    "build_model_card",
    "eval_results",
    "hub_repo_id",
    "logged_metrics",
    "method_hyperparameters",
]
