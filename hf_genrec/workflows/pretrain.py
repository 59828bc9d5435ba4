"""`hf-genrec pretrain`: next-item pretraining of HSTU, epoch chosen on validation, test reported."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..data import SequenceCollator
from ..data.prepared import load_prepared
from ..evaluation.metrics import SUBSETS
from ..models import HSTUConfig, HSTUForNextItemPrediction
from ..recipes import build_training_config, load_recipe
from ..trainers import PretrainConfig, PretrainTrainer
from ..trainers.base import last_complete_checkpoint
from ..utils.io import check_output_dir, peak_memory_mb
from ..utils.runtime import keep_cpu_heap_warm
from .common import (
    CHECKPOINTS_DIR,
    METRICS_FILE,
    RECIPE_FILE,
    EpochTimer,
    finish_run,
    is_main_process,
    write_recipe,
)

logger = logging.getLogger(__name__)



def _best_epoch(trainer) -> float | None:
    best_step = trainer.state.best_global_step
    for entry in trainer.state.log_history:
        if entry.get("step") == best_step and "epoch" in entry:
            return entry["epoch"]
    return None


def pretrain(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    recipe: str | os.PathLike | dict | None = None,
    epochs: float | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
    training_overrides: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    push_to_hub: str | None = None,
    hub_private: bool = False,
    hub_token: str | None = None,
    callbacks: list | None = None,
) -> dict[str, Any]:
    """Pretrain an HSTU recommender on a prepared dataset and save the validation-best checkpoint.

    Writes to `output_dir`: the model (`config.json`, `model.safetensors`), `item_vocabulary.json`,
    `recipe.yaml` (the recipe with every override applied), the model card `README.md`, `metrics.json`
    (validation and test metrics of the selected epoch on every subset, best epoch, seconds per epoch,
    peak memory) and `checkpoints/` (per-epoch checkpoints, for `resume`). With `push_to_hub` (a repo id),
    the directory minus `checkpoints/` is then uploaded with `hf_genrec.hub.push_run_to_hub`.

    Runs unchanged under `torchrun` / `accelerate launch` (data parallel); only rank 0 writes files.

    Returns the content of `metrics.json` (plus `hub_commit_url` when pushed).
    """
    start = time.time()
    keep_cpu_heap_warm()
    recipe = recipe if isinstance(recipe, dict) else load_recipe(recipe)
    output_dir = Path(output_dir)
    main_process = is_main_process()
    if not resume and main_process:  # the other ranks would see rank 0's fresh checkpoints/ directory
        check_output_dir(output_dir, METRICS_FILE, overwrite)
    split = recipe["data"].get("split", "leave-one-out")
    splits, vocabulary = load_prepared(data_dir, split)

    training = dict(recipe["training"])
    training.update(training_overrides or {})
    if epochs is not None:
        training["num_train_epochs"] = epochs
    if seed is not None:
        training["seed"] = seed
    if max_steps is not None:
        training["max_steps"] = max_steps
    training["output_dir"] = str(output_dir / CHECKPOINTS_DIR)
    args = build_training_config(PretrainConfig, training)

    # Seed before building the model so the seed also fixes the initial weights.
    set_seed(args.seed)
    model_kwargs = {**recipe["model"], **(model_overrides or {})}
    if main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        used = {key: recipe[key] for key in ("description",) if key in recipe}
        used.update(model=model_kwargs, training={k: v for k, v in training.items() if k != "output_dir"},
                    data={**recipe["data"], "split": split}, method=recipe.get("method") or {})
        write_recipe(output_dir / RECIPE_FILE, used)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **model_kwargs))
    timer = EpochTimer()
    trainer = PretrainTrainer(
        model=model,
        args=args,
        data_collator=SequenceCollator(max_seq_len=model.config.max_seq_len),
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        processing_class=vocabulary,
        callbacks=[timer, *(callbacks or [])],
    )
    resume_from = last_complete_checkpoint(args.output_dir) if resume else None
    if resume and resume_from is None:
        logger.warning("--resume: no complete checkpoint in %s, training from scratch", args.output_dir)
    train_output = trainer.train(resume_from_checkpoint=resume_from)

    trainer.args.eval_subsets = list(SUBSETS)
    validation = trainer.evaluate(splits["validation"], metric_key_prefix="validation")
    test = trainer.evaluate(splits["test"], metric_key_prefix="test")
    trainer.save_model(str(output_dir))

    def strip(metrics: dict, prefix: str) -> dict:
        # Timings are reported once, below; the metric dicts hold only what the model computed.
        return {k[len(prefix) + 1 :]: v for k, v in metrics.items() if k.startswith(prefix + "_") and not k.endswith("_runtime")}

    epoch_seconds = timer.seconds
    report = {
        "validation": strip(validation, "validation"),
        "test": strip(test, "test"),
        "best_epoch": _best_epoch(trainer),
        "epochs_trained": trainer.state.epoch,
        "seconds_per_epoch": sorted(epoch_seconds)[len(epoch_seconds) // 2] if epoch_seconds else None,
        "train_runtime_s": train_output.metrics.get("train_runtime"),
        "total_runtime_s": round(time.time() - start, 1),
        "peak_memory_mb": round(peak_memory_mb(), 1),
        "num_parameters": model.num_parameters(),
        "seed": args.seed,
        "num_processes": args.world_size,
        "split": split,
        "model_config": model.config.to_diff_dict(),
    }
    if not main_process:
        return report
    # save_model wrote a card already; name it after the run, not after its checkpoints/ folder.
    trainer.create_model_card(model_name=output_dir.name, output_dir=str(output_dir))
    report = finish_run(output_dir, METRICS_FILE, report, push_to_hub, hub_private=hub_private, hub_token=hub_token,
                        commit_message=f"hf-genrec pretrain: {output_dir.name}")
    return report
