"""`hf-genrec pretrain`: next-item pretraining of HSTU, epoch chosen on validation, test reported."""

from __future__ import annotations

import os
from typing import Any

from transformers import set_seed

from ..data import SequenceCollator
from ..evaluation.evaluator import dataset_subsets
from ..models import HSTUConfig, HSTUForNextItemPrediction
from ..recipes import resolve_recipe
from ..trainers import PretrainConfig, PretrainTrainer
from ..utils.runtime import keep_cpu_heap_warm
from .common import EpochTimer, RunOptions, TrainingRun, best_epoch

__all__ = ["pretrain"]


def pretrain(
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    recipe: str | os.PathLike | dict | None = None,
    model_overrides: dict[str, Any] | None = None,
    options: RunOptions | None = None,
    **flags: Any,
) -> dict[str, Any]:
    """Pretrain an HSTU recommender on a prepared dataset and save the validation-best checkpoint.

    Writes to `output_dir`: the model (`config.json`, `model.safetensors`), `item_vocabulary.json`,
    `recipe.yaml` (the recipe with every override applied), the model card `README.md`, `metrics.json`
    (validation and test metrics of the selected epoch on every subset, best epoch, seconds per epoch,
    peak memory) and `checkpoints/` (per-epoch checkpoints, for `resume`; each holds the run's fingerprint, and
    `resume` refuses one written with another recipe, data or seed). With `push_to_hub` (a repo id),
    the directory minus `checkpoints/` is then uploaded with `hf_genrec.hub.push_run_to_hub`.

    Runs unchanged under `torchrun` / `accelerate launch` (data parallel); only rank 0 writes files.

    Args:
        recipe: a YAML recipe file, a recipe dict, or `None` for every default.
        model_overrides: `HSTUConfig` fields set on top of the recipe's `model` section.
        options, **flags: the `RunOptions` of the run (`epochs`, `seed`, `max_steps`, `training_overrides`,
            `resume`, `overwrite`, `push_to_hub`, `hub_private`, `hub_token`, `callbacks`), as one object or
            as keywords.

    Returns the content of `metrics.json` (plus `hub_commit_url` when pushed).
    """
    run = TrainingRun("pretrain", output_dir, RunOptions.merge(options, flags, caller="pretrain"))
    with run.lock():
        recipe = resolve_recipe(recipe)
        args, training = run.training_config(PretrainConfig, recipe)
        split = recipe["data"].get("split", "leave-one-out")
        splits, vocabulary = run.load_data(data_dir, split)
        # After loading: the split's freed temporaries go back to the OS instead of staying in the warm heap.
        keep_cpu_heap_warm()

        # Seed before building the model so the seed also fixes the initial weights.
        set_seed(args.seed)
        model_kwargs = {**recipe["model"], **(model_overrides or {})}
        model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **model_kwargs))
        run.describe(recipe, training, model=model_kwargs, data={**recipe["data"], "split": split},
                     method=recipe["method"] or {})
        # Every epoch's validation pass reports every subset, so the selected epoch's metrics need no new pass.
        args.eval_subsets = list(dataset_subsets(splits["test"]))
        timer = EpochTimer()
        trainer = PretrainTrainer(
            model=model,
            args=args,
            data_collator=SequenceCollator(max_seq_len=model.config.max_seq_len),
            train_dataset=splits["train"],
            eval_dataset=splits["validation"],
            processing_class=vocabulary,
            callbacks=[timer, *run.callbacks],
        )
        train_output = run.train(trainer)
        # Timings are reported once, below; the metric dicts hold only what the model computed.
        validation, test = run.evaluate(trainer, splits, keep_runtime=False)
        trainer.save_model(str(run.output_dir))

        epoch_seconds = timer.seconds
        report = {
            "validation": validation,
            "test": test,
            "best_epoch": best_epoch(trainer),
            "epochs_trained": trainer.state.epoch,
            "seconds_per_epoch": sorted(epoch_seconds)[len(epoch_seconds) // 2] if epoch_seconds else None,
            "train_runtime_s": train_output.metrics.get("train_runtime"),
            **run.resources(),
            "num_parameters": model.num_parameters(),
            "seed": args.seed,
            "num_processes": args.world_size,
            "split": split,
            "model_config": model.config.to_diff_dict(),
        }
        return run.finish(report)
