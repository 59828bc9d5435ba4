"""`hf-genrec reward`: train a reward-model ensemble on a pretrained HSTU and measure the reward table."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from transformers import set_seed

from ..data import ITEM_IDS, RATINGS, TIMESTAMPS, USER_ID, ItemVocabulary
from ..data.columns import WINDOW_POSITION
from ..models import HSTUConfig, HSTUForRewardModeling
from ..recipes import resolve_recipe
from ..rewards import RewardEnsemble, format_reward_table, reward_table, uncertainty_by_popularity
from ..rewards.ensemble import member_directory
from ..rewards.metrics import format_uncertainty
from ..trainers import RewardConfig, RewardTrainer
from ..utils.runtime import keep_cpu_heap_warm
from .common import RunOptions, TrainingRun

logger = logging.getLogger(__name__)

METRICS_FILE = "reward_metrics.json"


def bootstrap_users(dataset, seed: int):
    """A resample of `dataset`'s rows (users) with replacement, of the same size, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    return dataset.select(rng.integers(0, len(dataset), len(dataset)).tolist())


def train_plus_validation(splits, sequences=None, cutoff: int | None = None):
    """Training sequences that also hold the validation events, e.g. for a judge ensemble; never a test event.

    With leave-one-out or the temporal split they are the test rows' histories: each user's events but the last,
    or every event before the test period (users without a test event are left out). On the `future` split (test
    rows with a window) a test row's history holds the user's earlier test-window events, so the events come from
    `sequences` instead: every user's events before `cutoff`, the start of the test window (the training and
    validation windows), for the users with at least 2 of them.

    Args:
        splits: the `DatasetDict` of `split_sequences`.
        sequences: the chronological sequences that were split (`future` split only).
        cutoff: the `future` split's cutoff in Unix seconds (`future_cutoffs`; `future` split only).
    """
    if WINDOW_POSITION not in splits["test"].column_names:
        return splits["test"].select_columns([USER_ID, ITEM_IDS, RATINGS, TIMESTAMPS])
    if sequences is None or cutoff is None:
        raise ValueError(
            "train_plus_validation on the `future` split needs `sequences` and `cutoff`, as its test rows' histories "
            "hold test-window events. Fix: pass the split sequences and the cutoff of `future_cutoffs(sequences)`."
        )
    cutoff = int(cutoff)

    def before_cutoff(batch: dict[str, list]) -> dict[str, list]:
        # Sequences are chronological: the events before the cutoff are a prefix of each row.
        ends = [int(np.searchsorted(np.asarray(times), cutoff, side="left")) for times in batch[TIMESTAMPS]]
        return {column: [values[:end] for values, end in zip(batch[column], ends)]
                for column in (ITEM_IDS, RATINGS, TIMESTAMPS)}

    columns = sequences.select_columns([USER_ID, ITEM_IDS, RATINGS, TIMESTAMPS])
    prefixes = columns.map(before_cutoff, batched=True, keep_in_memory=True)  # never a cache file in the data folder
    return prefixes.filter(lambda lengths: [len(n) >= 2 for n in lengths], input_columns=[ITEM_IDS], batched=True,
                           keep_in_memory=True)


def _build_member(pretrained, model_overrides: dict[str, Any]) -> HSTUForRewardModeling:
    if isinstance(pretrained, HSTUConfig):
        config = copy.deepcopy(pretrained)
        for name, value in model_overrides.items():
            setattr(config, name, value)
        config.validate_hstu()
        return HSTUForRewardModeling(config)
    # A next-item or reward checkpoint: the backbone (and heads, if any) load; missing heads are initialised.
    return HSTUForRewardModeling.from_pretrained(pretrained, **model_overrides)


def train_reward_ensemble(
    pretrained: str | os.PathLike | HSTUConfig,
    train_dataset,
    eval_dataset,
    args: RewardConfig,
    *,
    vocabulary: ItemVocabulary | None = None,
    model_overrides: dict[str, Any] | None = None,
    trained_on: dict[str, Any] | None = None,
    callbacks=None,
    train: Callable[[RewardTrainer], Any] | None = None,
) -> RewardEnsemble:
    """Train `args.ensemble_size` reward models and return them as a `RewardEnsemble`.

    Member k is one `RewardTrainer` run with seed `args.seed + k` (which fixes the heads' initial weights,
    the batch order and the sampled negatives) on a bootstrap resample of the training users drawn with
    the same seed (when `args.bootstrap`), checkpointing under `args.output_dir/member-k`. The epoch of
    each member is chosen on `eval_dataset` RMSE.

    Args:
        pretrained: a checkpoint directory or Hub id (a pretrained `HSTUForNextItemPrediction`: its backbone
            is loaded and the heads are new), or an `HSTUConfig` to train from scratch.
        train_dataset: training sequences (`item_ids`, `ratings`, `timestamps`).
        eval_dataset: evaluation rows (history + `target_*`), e.g. the validation split.
        args: the `RewardConfig`, shared by every member except `seed` and `output_dir`.
        model_overrides: `HSTUConfig` fields to set on every member (e.g. `reward_head_hidden_size`).
        trained_on: what to record in `ensemble.json` about the data.
        callbacks: extra `TrainerCallback`s for every member's trainer.
        train: trains one member's trainer (default: `trainer.train()`); `reward` passes `TrainingRun.train`,
            which resumes each member from its own checkpoints.
    """
    model_overrides = dict(model_overrides or {})
    seeds = [args.seed + k for k in range(args.ensemble_size)]
    members = []
    for k, seed in enumerate(seeds):
        member_args = copy.deepcopy(args)
        member_args.seed = seed
        member_args.output_dir = os.path.join(args.output_dir, member_directory(k))
        # Seed before building the model so the seed also fixes the heads' initial weights.
        set_seed(seed)
        model = _build_member(pretrained, model_overrides)
        data = bootstrap_users(train_dataset, seed) if args.bootstrap else train_dataset
        logger.info("reward member %d/%d: seed %d, %d training users", k + 1, len(seeds), seed, len(data))
        trainer = RewardTrainer(
            model=model,
            args=member_args,
            train_dataset=data,
            eval_dataset=eval_dataset,
            processing_class=vocabulary,
            callbacks=callbacks,
        )
        if train is None:
            trainer.train()
        else:
            train(trainer)
        members.append(trainer.model)
    return RewardEnsemble(
        members, seeds=seeds, bootstrap=args.bootstrap, trained_on=trained_on, vocabulary=vocabulary
    )


def reward(
    data_dir: str | os.PathLike,
    model_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    ensemble_size: int | None = None,
    recipe: str | os.PathLike | dict | None = None,
    model_overrides: dict[str, Any] | None = None,
    options: RunOptions | None = None,
    **flags: Any,
) -> dict[str, Any]:
    """Train a reward ensemble on a prepared dataset, starting from the pretrained model in `model_dir`.

    Writes to `output_dir`: the ensemble (`member-k/`, `ensemble.json`, `item_vocabulary.json`),
    `reward_metrics.json` (the reward table on the test split, the ensemble std by item popularity, the
    settings and timings) and `checkpoints/member-k/` (per-epoch checkpoints, for `resume`).

    With `push_to_hub` (a repo id), the directory minus `checkpoints/` is then uploaded with
    `hf_genrec.hub.push_run_to_hub`; `RewardEnsemble.from_pretrained(repo_id)` loads it back.

    Args:
        ensemble_size: ensemble members K (default: the recipe's `ensemble_size`).
        recipe: a YAML recipe file, a recipe dict, or `None` for every default.
        model_overrides: `HSTUConfig` fields set on every member, on top of the recipe's `model` section.
        options, **flags: the `RunOptions` of the run (`seed` is member 0's; member k uses seed + k), as one
            object or as keywords. With `resume`, each member continues from its newest complete checkpoint
            (a finished member from its last one, so it trains no further), which must have been written with
            this run's recipe, flags, data and model.

    Returns the content of `reward_metrics.json` plus `markdown`, the table as printed by the CLI (and
    `hub_commit_url` when pushed).
    """
    run = TrainingRun("reward", output_dir, RunOptions.merge(options, flags, caller="reward"), METRICS_FILE)
    with run.lock():
        recipe = resolve_recipe(recipe)
        args, training = run.training_config(
            RewardConfig, recipe, overrides={"ensemble_size": ensemble_size} if ensemble_size is not None else None
        )
        split = recipe["data"].get("split", "leave-one-out")
        splits, vocabulary = run.load_data(data_dir, split, model_dir=model_dir)
        # After loading: the split's freed temporaries go back to the OS instead of staying in the warm heap.
        keep_cpu_heap_warm()
        model_kwargs = {**recipe["model"], **(model_overrides or {})}
        run.describe(recipe, training, model=model_kwargs, data={**recipe["data"], "split": split},
                     method=recipe["method"] or {}, write_recipe=False)

        trained_on = {
            "data": str(data_dir),
            "split": split,
            "training_split": "train",
            "num_users": len(splits["train"]),
            "pretrained_model": str(model_dir),
            "epochs": args.num_train_epochs,
            "freeze_backbone": args.freeze_backbone,
            "next_item_loss_weight": args.next_item_loss_weight,
            "model_overrides": model_kwargs,
        }
        train_start = time.time()
        ensemble = train_reward_ensemble(
            model_dir, splits["train"], splits["validation"], args, vocabulary=vocabulary,
            model_overrides=model_kwargs, trained_on=trained_on, callbacks=run.callbacks, train=run.train,
        )
        train_seconds = time.time() - train_start
        ensemble.save_pretrained(run.output_dir)
        report = _reward_report(run, ensemble, splits, args, trained_on, train_seconds)
        markdown = format_reward_table(report["table"]) + "\n\nEnsemble std by item popularity (test contexts):\n\n"
        markdown += format_uncertainty(report["std_by_item_popularity"])
        return {**run.finish(report), "markdown": markdown}


def _reward_report(run: TrainingRun, ensemble: RewardEnsemble, splits, args: RewardConfig,
                   trained_on: dict[str, Any], train_seconds: float) -> dict[str, Any]:
    """What `reward_metrics.json` holds: the reward table and the ensemble std by item popularity on the test
    split, the ensemble's settings and the timings."""
    evaluation_start = time.time()
    table = reward_table(ensemble, splits, batch_size=args.per_device_eval_batch_size)
    uncertainty = uncertainty_by_popularity(
        ensemble, splits["test"], splits["train"], batch_size=args.per_device_eval_batch_size, seed=args.seed
    )
    return {
        "table": table,
        "std_by_item_popularity": uncertainty,
        "ensemble_size": ensemble.num_members,
        "seeds": ensemble.seeds,
        "bootstrap": ensemble.bootstrap,
        "trained_on": trained_on,
        "train_runtime_s": round(train_seconds, 1),
        "evaluation_runtime_s": round(time.time() - evaluation_start, 1),
        **run.resources(),
        "model_config": ensemble.config.to_diff_dict(),
    }


__all__ = ["METRICS_FILE", "bootstrap_users", "reward", "train_plus_validation", "train_reward_ensemble"]
