"""The `hf-genrec` command line. Each subcommand parses its flags and calls one library function."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import pickle
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .version import __version__

if TYPE_CHECKING:  # the workflows import torch and transformers: `--help` stays fast without them
    from .workflows import RunOptions

logger = logging.getLogger("hf_genrec")


def _float_pair(flag: str, form: str, example: str) -> Callable[[str], tuple[float, float]]:
    """An argparse `type` reading `A,B` as two floats, whose error names `flag` and its `form`."""
    def parse(text: str) -> tuple[float, float]:
        try:
            first, second = (float(x) for x in text.split(","))
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{flag} takes '{form}' (e.g. {example}), got {text!r}") from error
        return first, second

    return parse


_rating_scale = _float_pair("--rating-scale", "MIN,MAX", "1,5")
_rating_pair = _float_pair("--preference-ratings", "HIGH,LOW", "4,2")


def _add_prepare(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare",
        help="Turn a ratings file into a sequence dataset and an item vocabulary.",
        description="Read interactions (user, item, rating, timestamp), sort each user's events by time "
        "(stable for ties) and write DIR/sequences (datasets.save_to_disk), DIR/item_vocabulary.json and "
        "DIR/prepare.json.",
    )
    p.add_argument("--input", required=True, help="Ratings file: MovieLens '::' (plain or .gz) or delimited text.")
    p.add_argument("--format", choices=("movielens", "csv"), default="movielens", help="Input format.")
    p.add_argument("--sep", default=None, help="Field separator for --format csv (default ',').")
    p.add_argument(
        "--columns",
        default=None,
        help="csv columns in file order, e.g. 'user,item,rating,timestamp' ('_' skips one), or with "
        "--header 'user=reviewerID,item=asin,rating=overall,timestamp=unixReviewTime'.",
    )
    p.add_argument("--header", action="store_true", help="The csv file's first line is a header.")
    p.add_argument("--catalog", default=None, help="MovieLens movies.dat listing every catalogue item "
                   "(default: movies.dat beside --input, if any).")
    p.add_argument("--rating-scale", type=_rating_scale, default=None, help="MIN,MAX; ratings outside fail.")
    p.add_argument("--duplicates", choices=("keep", "drop", "error"), default="keep",
                   help="Repeated (user, item, timestamp) rows: keep them, drop repeats, or fail.")
    p.add_argument("--output", required=True, help="Output directory.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")
    p.add_argument("--push-to-hub", "--push_to_hub", metavar="REPO_ID", default=None,
                   help="Also upload the prepared dataset to this Hub dataset repo (sequences as Parquet, the "
                   "vocabulary, prepare.json), for training with --dataset_name REPO_ID.")
    p.add_argument("--hub-private", action="store_true", help="Create the Hub dataset repo as private.")


def _add_data_flags(p) -> None:
    """`--data DIR` or `--dataset_name REPO_ID`, one of them, for every training command."""
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", help="Directory written by `hf-genrec prepare`.")
    data.add_argument("--dataset_name", "--dataset-name", metavar="REPO_ID", default=None,
                      help="Instead of --data: a Hub dataset repo written by `hf-genrec prepare --push-to-hub` "
                      "(REPO_ID or REPO_ID@REVISION), read with datasets.load_dataset.")


def _data_source(args: argparse.Namespace) -> str:
    """What the workflows take as their data: `--data`, or `--dataset_name` as `hf://datasets/REPO[@REVISION]`."""
    if args.data is not None:
        return args.data
    from .data.prepared import dataset_name_path

    return dataset_name_path(args.dataset_name)


def _add_hub_flags(p) -> None:
    """`--push-to-hub REPO_ID`, shared by every command that writes a run directory."""
    p.add_argument("--push-to-hub", metavar="REPO_ID", default=None,
                   help="Upload the finished run (model, vocabulary, card, recipe, metrics; no checkpoints) to "
                   "this Hub repo. The token comes from HF_TOKEN or `hf auth login`.")
    p.add_argument("--hub-private", action="store_true", help="Create the Hub repo as private.")


_CONFIG_EPILOG = (
    "Every field of the trainer's config (a transformers.TrainingArguments subclass) and of HSTUConfig is also a "
    "flag, parsed by trl.TrlParser with its type: --learning_rate 1e-4 --gradient_accumulation_steps 2 --report_to "
    "tensorboard --bf16 false --num_hidden_layers 4 (dashes accepted); TRL's --push_to_hub --hub_model_id REPO "
    "works too. Later sources win: --recipe < --config < flags."
)


def _add_config_flags(p) -> None:
    """`--config FILE.yaml` (TRL's flat config) and the epilog on the trainer config flags (see commands/arguments.py)."""
    p.add_argument("--config", default=None, metavar="FILE.yaml",
                   help="A TRL-style flat config: top-level keys are this command's flags (data, model, output or "
                   "output_dir, ...), trainer config and HSTUConfig fields, split, method, and env: (environment "
                   "variables). A nested recipe (model/training/data/method sections) is accepted too.")
    p.epilog = _CONFIG_EPILOG


def _add_pretrain(subparsers) -> None:
    p = subparsers.add_parser(
        "pretrain",
        help="Pretrain an HSTU recommender by next-item prediction.",
        description="Train on the training split, evaluate on validation every epoch, keep the epoch with "
        "the best validation NDCG@10, then write the model, its vocabulary and metrics.json (validation and "
        "test metrics of that epoch).",
    )
    _add_data_flags(p)
    p.add_argument("--output", "--output_dir", "--output-dir", required=True,
                   help="Output directory for the model and metrics.json.")
    p.add_argument("--recipe", default=None, help="YAML recipe (e.g. recipes/movielens-1m/hstu.yaml).")
    _add_config_flags(p)
    p.add_argument("--epochs", type=float, default=None, help="Override the recipe's num_train_epochs.")
    p.add_argument("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
    p.add_argument("--seed", type=int, default=None, help="Override the recipe's seed.")
    p.add_argument("--resume", action="store_true", help="Continue from the last checkpoint in OUTPUT/checkpoints.")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")
    p.add_argument("--no-bf16", action="store_true", help="Train in fp32 even if the recipe asks for bf16.")
    _add_hub_flags(p)


def _add_evaluate(subparsers) -> None:
    from .data.splits import SPLITS
    from .evaluation.metrics import SUBSETS

    p = subparsers.add_parser(
        "evaluate",
        help="Full-catalogue ranking metrics (HR@k, NDCG@k, MRR) of a saved model.",
        description="Rank each evaluation case's held-out item among all catalogue items, excluding the "
        "items already in the user's history, and write the metrics as a flat JSON object.",
    )
    p.add_argument("--model", required=True, help="Model directory (or Hub repo id).")
    _add_data_flags(p)
    p.add_argument("--split", default="test", choices=("validation", "test"), help="Which split to rank.")
    p.add_argument("--subset", default="all", choices=SUBSETS,
                   help="Evaluation subset; high_reward_trajectory and trajectory_reward_q1..q4 need "
                   "--split-method future (they rank users by the accumulated reward of a future test window).")
    p.add_argument("--split-method", default="leave-one-out", choices=SPLITS,
                   help="How the prepared sequences are split.")
    p.add_argument("--batch-size", type=int, default=256, help="Histories per batch.")
    p.add_argument("--output", required=True, help="JSON file for the metrics.")


def _add_reward(subparsers) -> None:
    p = subparsers.add_parser(
        "reward",
        help="Train a reward-model ensemble on a pretrained HSTU and print the reward table.",
        description="Load the pretrained backbone of --model, train K reward models (reward head + value head; "
        "different seeds and bootstrap resamples of users; epoch chosen on validation RMSE), save them as one "
        "ensemble and write reward_metrics.json: RMSE, MAE, AUC and within-user pairwise accuracy on the test "
        "split for the reward head, the ensemble mean and the user-mean, item-mean and global-mean baselines, "
        "and the ensemble std by item popularity. For a judge ensemble, run it again with other seeds into "
        "another directory.",
    )
    _add_data_flags(p)
    p.add_argument("--model", "--model_name_or_path", required=True,
                   help="Pretrained model directory (or Hub repo id) whose backbone is used.")
    p.add_argument("--output", "--output_dir", "--output-dir", required=True,
                   help="Output directory for the ensemble and reward_metrics.json.")
    p.add_argument("--ensemble", type=int, default=None, help="Ensemble members K (default: the recipe's, or 5).")
    p.add_argument("--seed", type=int, default=None, help="Seed of member 0; member k uses seed + k.")
    p.add_argument("--epochs", type=float, default=None, help="Override the recipe's num_train_epochs.")
    p.add_argument("--max-steps", type=int, default=None, help="Stop each member after this many optimiser steps.")
    p.add_argument("--recipe", default=None, help="YAML recipe (e.g. recipes/movielens-1m/reward.yaml).")
    _add_config_flags(p)
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")
    _add_hub_flags(p)


def _optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


# `hf-genrec posttrain` method flags -> config fields; a flag that a method's config lacks is an error.
POSTTRAIN_METHOD_FLAGS = {
    "temperature": ("A-SFT: λ of w = min(exp(A/λ), w_max) (default 1.0; large = SFT).", float),
    "max_weight": ("A-SFT: clip w_max of the weights (default 20; 'none' for no clip).", _optional_float),
    "baseline": ("A-SFT: baseline b(x): value (reward model, default), user_mean or zero. PPO: value_head "
                 "(default) or group_mean (RLOO leave-one-out mean of the other samples of the context).", str),
    "reward_source": ("A-SFT: reward r: observed (default) or model (ensemble mean of the logged item).", str),
    "beta": ("DPO/IPO: β (default 0.1).", float),
    "confidence_z": ("DPO/IPO: z of the intervals mean ± z·std (default 1.0).", float),
    "num_candidates": ("DPO/IPO: items sampled from π_ref per context (default 16).", int),
    "contexts_per_sequence": ("DPO/IPO/PPO: contexts per training row (default 4).", int),
    "alpha": ("CQL: weight α of the conservative penalty (default 1.0).", float),
    "kl_coef": ("PPO: coefficient of KL(π_θ ‖ π_ref) (default 0.05).", float),
    "ppo_epochs": ("PPO: optimizer steps per rollout batch (default 4).", int),
    "cliprange": ("PPO: ε of the clipped ratio (default 0.2).", float),
}


def _add_posttrain(subparsers) -> None:
    from .workflows.posttrain import METHODS

    p = subparsers.add_parser(
        "posttrain",
        help="Post-train a pretrained recommender (sft, rwbc, asft, dpo, ipo, cql, ppo).",
        description="Load the pretrained recommender of --model, post-train it on the training split with one "
        "method for the recipe's budget, then write the model, its vocabulary, the model card, recipe.yaml "
        "and metrics.json (validation and test HR@k, NDCG@k, MRR on the subsets all, high_reward_target and "
        "long_history). dpo, ipo, ppo and asft with the value baseline need --reward-model.",
    )
    p.add_argument("--method", choices=tuple(METHODS), default=None,
                   help="Post-training method (default: the recipe's method.name).")
    _add_data_flags(p)
    p.add_argument("--model", "--model_name_or_path", required=True, help="Pretrained model directory (or Hub repo id).")
    p.add_argument("--reward-model", default=None, help="Reward ensemble directory written by `hf-genrec reward`.")
    p.add_argument("--output", "--output_dir", "--output-dir", required=True,
                   help="Output directory for the model and metrics.json.")
    p.add_argument("--recipe", default=None, help="YAML recipe (e.g. recipes/movielens-1m/asft.yaml).")
    _add_config_flags(p)
    p.add_argument("--seed", type=int, default=None, help="Override the recipe's seed.")
    p.add_argument("--epochs", type=float, default=None, help="Override the recipe's num_train_epochs.")
    p.add_argument("--max-steps", type=int, default=None, help="Stop after this many optimiser steps.")
    p.add_argument("--learning-rate", type=float, default=None, help="Override the learning rate.")
    p.add_argument("--batch-size", type=int, default=None, help="Override per_device_train_batch_size.")
    p.add_argument("--lora-r", "--lora_r", type=int, default=None,
                   help="Train a LoRA adapter of this rank on the HSTU projections (uvqk, o_proj) instead of all "
                   "weights; alone: alpha 2r, no dropout; with --use_peft: TRL's rank flag (default 16).")
    p.add_argument("--use_peft", "--use-peft", action="store_true",
                   help="Train a LoRA adapter built as TRL does (trl.ModelConfig + get_peft_config), with TRL's "
                   "defaults (r 16, alpha 32, dropout 0.05); targets default to the HSTU projections.")
    p.add_argument("--lora_alpha", "--lora-alpha", type=int, default=None, help="With --use_peft: LoRA alpha.")
    p.add_argument("--lora_dropout", "--lora-dropout", type=float, default=None, help="With --use_peft: LoRA dropout.")
    p.add_argument("--lora_target_modules", "--lora-target-modules", nargs="+", default=None,
                   help="With --use_peft: module names to adapt, or all-linear (default: uvqk o_proj).")
    p.add_argument("--preferences", choices=("sampled", "logged"), default="sampled",
                   help="dpo/ipo: sampled = RS-DPO/IPO, items sampled from the reference ranked by --reward-model "
                   "(default); logged = TRL's offline DPO on pairs of logged items of the same user (a chosen item "
                   "rated >= HIGH, a later one rated <= LOW; see --preference-ratings), no reward model needed.")
    p.add_argument("--preference-ratings", type=_rating_pair, default=(4.0, 2.0), metavar="HIGH,LOW",
                   help="With --preferences logged: the ratings that make a chosen and a rejected item (default 4,2).")
    p.add_argument("--normalize-weights", action="store_true", default=None,
                   help="A-SFT: divide the weights by their mean over each optimizer step.")
    for name, (help_text, kind) in POSTTRAIN_METHOD_FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None, help=help_text)
    p.add_argument("--resume", action="store_true",
                   help="Continue from the last complete checkpoint in OUTPUT/checkpoints (needs a recipe that checkpoints).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing output directory.")
    p.add_argument("--no-bf16", action="store_true", help="Train in fp32 even if the recipe asks for bf16.")
    _add_hub_flags(p)


def _add_quickstart(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="End-to-end demo on generated data: prepare, pretrain, evaluate (a few minutes on CPU).",
    )
    p.add_argument("--output", default="runs/quickstart", help="Output directory.")
    p.add_argument("--epochs", type=float, default=None, help="Override the number of epochs.")
    p.add_argument("--users", type=int, default=1000, help="Synthetic users.")
    p.add_argument("--items", type=int, default=300, help="Synthetic items.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the generated data.")


def _add_benchmark(subparsers) -> None:
    from .benchmark.pipeline import JUDGE_DATA, PROTOCOLS
    from .benchmark.presets import DEFAULT_METHODS, PRESETS
    from .data.splits import SPLITS
    from .workflows.posttrain import METHODS

    p = subparsers.add_parser(
        "benchmark",
        help="The post-training benchmark: every method, tuned on validation, vs reward-weighted BC, with intervals and judge.",
        description="prepare -> pretrain -> reward ensemble -> separate judge ensemble -> every post-training "
        "method's hyperparameter trials, chosen on validation, then (x seeds) -> test HR@k, NDCG@k, MRR and the reward-model-as-judge score on "
        "the subsets all, high_reward_target and long_history (high_reward_trajectory and the accumulated-reward "
        "quartiles on the future protocol's test windows; a user's targets averaged into one value), as % change vs "
        "reward-weighted BC with paired bootstrap 95% intervals over seeds and test users. Writes DIR/results.json, "
        "DIR/results.md, DIR/improvement_vs_rwbc.png, DIR/asft_lambda_sweep.png and DIR/judge_vs_ranking.png, with per-method "
        "diagnostics (paired differences by target rating and history length, ESS/N of the training weights, KL to "
        "the pretrained policy). Resumable: stages are keyed by their inputs, so running the same "
        "command again reuses finished stages and a changed flag recomputes only what depends on it. "
        "Without --input, the embedded synthetic data is generated.",
    )
    p.add_argument("--input", default=None, help="Ratings file (as for `prepare`); default: the embedded "
                   "synthetic data (~100k ratings for the tiny preset).")
    p.add_argument("--format", choices=("movielens", "csv"), default="movielens", help="Input format.")
    p.add_argument("--sep", default=None, help="Field separator for --format csv (default ',').")
    p.add_argument("--columns", default=None, help="csv columns, as for `prepare`.")
    p.add_argument("--header", action="store_true", help="The csv file's first line is a header.")
    p.add_argument("--catalog", default=None, help="MovieLens movies.dat (default: beside --input, if any).")
    p.add_argument("--rating-scale", type=_rating_scale, default=None, help="MIN,MAX; ratings outside fail.")
    p.add_argument("--duplicates", choices=("keep", "drop", "error"), default="keep",
                   help="Repeated (user, item, timestamp) rows: keep them, drop repeats, or fail.")
    p.add_argument("--output", default="runs/benchmark", help="Output directory (stages and results).")
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny",
                   help="tiny: ~1 min smoke test; quick: MovieLens-1M in about 30 minutes; full: the faithful recipes.")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(DEFAULT_METHODS),
                   help="Post-training methods (rwbc, the reference, is always run).")
    p.add_argument("--seeds", type=int, default=None, help="Post-training seeds (pretraining and reward models "
                   "are shared across seeds; default: the preset's, 5 for full, else 1).")
    p.add_argument("--reduced-seeds", type=int, default=None,
                   help="Seeds (the first N) of the methods besides A-SFT, RW-BC and the preset's focus methods (the "
                   "best others on validation); default: the preset's, 3 for full, else every seed.")
    p.add_argument("--ablation-seeds", type=int, default=None,
                   help="Seeds (the first N) of the A-SFT ablation rows; default: the preset's, 3 for full, else every "
                   "seed.")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="future (default, the post's): a global cutoff at the preset's time quantile; each test user's "
                   "first H events after it are H targets; every training and validation stage reads only earlier "
                   "events. leave-one-out: each user's last event (HSTU's protocol).")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="Deprecated: use --protocol (temporal: first event after a global cutoff, one per user).")
    p.add_argument("--cutoff-quantile", type=float, default=None,
                   help="future: the test window starts at this quantile of all event times (default: the preset's, "
                   "0.9; Amazon Musical Instruments: 0.7).")
    p.add_argument("--horizon", type=int, default=None,
                   help="future: H, the first H events after the cutoff of each test user, each a target (default: "
                   "the preset's, 10; Amazon: 3).")
    p.add_argument("--min-history", type=int, default=None,
                   help="future: the events a test or validation user needs before its window (default: the "
                   "preset's, 10; Amazon: 3).")
    p.add_argument("--validation-fraction", type=float, default=None,
                   help="future: about this share of the events before the cutoff form the validation window just "
                   "before it (default: the preset's, 0.1; Amazon: 0.3).")
    p.add_argument("--pretrained", default=None, help="Reuse this pretrained model directory (same data and "
                   "vocabulary) instead of pretraining.")
    p.add_argument("--reward-model", default=None, help="Reuse this reward ensemble (written by `hf-genrec "
                   "reward`) as the one the methods train against.")
    p.add_argument("--judge-model", default=None, help="Reuse this reward ensemble as the judge (must differ "
                   "from the training ensemble).")
    p.add_argument("--judge-data", choices=JUDGE_DATA, default="train+validation",
                   help="Events the judge ensemble trains on (default train+validation: more data, fixed epochs; "
                   "train: validation RMSE picks each member's epoch).")
    p.add_argument("--lambdas", nargs="*", type=float, default=None,
                   help="A-SFT's temperature grid, tried and chosen on validation (default: the preset's; as many "
                   "values as every method's grid).")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None,
                   help="A-SFT's ablations (baseline x reward source, and RW-BC with the tilt-matched reward power) at "
                   "A-SFT's chosen λ on every seed, as their own table (default: the preset's; on in full only).")
    p.add_argument("--world", action="store_true",
                   help="Without --input: draw the embedded data in a small simulated world whose true reward is "
                   "known, adding a true V* column (the expected true reward of each model's next recommendation).")


def _add_simulate(subparsers) -> None:
    from .simulation.logging_policy import PROPENSITY_MODES
    from .simulation.study import DEFAULT_METHODS, PRESETS
    from .workflows.posttrain import METHODS

    p = subparsers.add_parser(
        "simulate",
        help="Every post-training method on logs simulated in a world with a known true reward: true value, proxy "
        "value, hacking gap, KL, HR/NDCG.",
        description="For each world setting of the preset's sweep (noise x log size x coverage) and seed: simulate "
        "a log, prepare, pretrain, train the proxy reward ensemble, post-train every method (and PPO against the "
        "true reward), and evaluate each exactly in the world. Writes DIR/results.json and DIR/results.md. "
        "Resumable: stages are keyed by their inputs.",
    )
    p.add_argument("--preset", choices=tuple(PRESETS), default="tiny",
                   help="tiny: one setting in under a minute on 2 CPU cores; quick: 8 settings; full: 12 settings "
                   "(about 80 minutes with its 3 seeds).")
    p.add_argument("--seeds", type=int, default=None, help="Simulated logs per world setting (default: the "
                   "preset's, 1 for tiny, 3 for quick and full).")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS), default=list(DEFAULT_METHODS),
                   help="Post-training methods trained against the proxy (ppo_true, PPO against r*, is always run).")
    p.add_argument("--input", default=None, help="Ratings file (as for `prepare`): calibrate the world on it "
                   "(item effects, latent tastes, noise, popularity) instead of the synthetic world.")
    p.add_argument("--format", choices=("movielens", "csv"), default="movielens", help="Format of --input.")
    p.add_argument("--sep", default=None, help="Field separator for --format csv (default ',').")
    p.add_argument("--columns", default=None, help="csv columns, as for `prepare`.")
    p.add_argument("--header", action="store_true", help="The csv file's first line is a header.")
    p.add_argument("--propensities", choices=PROPENSITY_MODES, default=None,
                   help="What each simulated log carries of its logging propensities, in propensities.csv beside "
                   "the stage's ratings.dat: hidden (none, the presets' default), exported (the true ones) or "
                   "wrong (a misspecified logging policy's).")
    p.add_argument("--output", default="runs/simulate", help="Output directory (stages and results).")


def _run_options(args: argparse.Namespace, config_flags: dict[str, Any] | None = None, **training: Any) -> RunOptions:
    """The shared run flags of a training subcommand as `RunOptions` (flags a subcommand lacks keep their defaults).

    `config_flags` are the trainer config fields given as TRL-style flags (`--learning_rate`); `training` holds
    subcommand-specific config fields, which win over them; unset ones (`None`) are left to the recipe.
    """
    from .workflows import RunOptions

    training["bf16"] = False if getattr(args, "no_bf16", False) else None
    overrides = {**(config_flags or {}), **{name: value for name, value in training.items() if value is not None}}
    return RunOptions(
        epochs=args.epochs, seed=args.seed, max_steps=args.max_steps, training_overrides=overrides or None,
        overwrite=args.overwrite, resume=getattr(args, "resume", False), push_to_hub=args.push_to_hub,
        hub_private=args.hub_private,
    )


def _training_arguments(args: argparse.Namespace, config_class: type) -> tuple[Any, dict[str, Any]]:
    """(recipe, trainer config flags) of a training command: the `--recipe` file with a flat `--config` file laid
    over it (plus `HSTUConfig` fields given as flags), and the trainer config fields given as flags."""
    from .commands.arguments import apply_run_owned_fields, parse_config_flags, recipe_from_config
    from .recipes import resolve_recipe

    recipe = recipe_from_config(args.recipe, args.config_values, config_class=config_class,
                                script_dests=args.own_dests, source=f"--config {args.config}")
    training, model = parse_config_flags(config_class, args.config_tokens, args.own_flags)
    training = apply_run_owned_fields(training, args)
    if model:
        recipe = resolve_recipe(recipe)
        recipe["model"].update(model)
    return recipe, training


def _print_written(what: str, args: argparse.Namespace, report: dict[str, Any]) -> None:
    print(f"{what} written to {args.output}")
    if report.get("hub_commit_url"):
        print(f"Pushed to the Hub: {report['hub_commit_url']}")


def _run_prepare(args: argparse.Namespace) -> None:
    from .data.prepared import prepare_dataset

    manifest = prepare_dataset(
        args.input, args.output, format=args.format, sep=args.sep, columns=args.columns, header=args.header,
        catalog=args.catalog, rating_scale=args.rating_scale, duplicates=args.duplicates, overwrite=args.overwrite,
    )
    print(json.dumps(manifest, indent=2))
    print(f"Prepared dataset written to {args.output}")
    if args.push_to_hub:
        from .data.prepared import push_prepared_to_hub

        name = os.path.basename(os.path.normpath(args.output))
        commit = push_prepared_to_hub(args.output, args.push_to_hub, private=args.hub_private,
                                      commit_message=f"hf-genrec prepare: {name}")
        print(f"Pushed to the Hub: {commit.commit_url}")


def _run_pretrain(args: argparse.Namespace) -> None:
    from .trainers import PretrainConfig
    from .workflows import pretrain

    recipe, config_flags = _training_arguments(args, PretrainConfig)
    report = pretrain(_data_source(args), args.output, recipe=recipe, options=_run_options(args, config_flags))
    print(json.dumps({key: report[key] for key in ("validation", "test", "best_epoch", "seconds_per_epoch")},
                     indent=2))
    _print_written("Model, vocabulary, model card, recipe.yaml and metrics.json", args, report)


def _run_evaluate(args: argparse.Namespace) -> None:
    from .workflows import evaluate_model

    metrics = evaluate_model(args.model, _data_source(args), split=args.split, subset=args.subset,
                             split_method=args.split_method, batch_size=args.batch_size, output=args.output)
    print(json.dumps(metrics, indent=2))
    print(f"Metrics written to {args.output}")


def _run_reward(args: argparse.Namespace) -> None:
    from .trainers import RewardConfig
    from .workflows import reward
    from .workflows.reward import METRICS_FILE

    recipe, config_flags = _training_arguments(args, RewardConfig)
    report = reward(_data_source(args), args.model, args.output, ensemble_size=args.ensemble, recipe=recipe,
                    options=_run_options(args, config_flags))
    print(report["markdown"])
    _print_written(f"Ensemble ({report['ensemble_size']} members) and {METRICS_FILE}", args, report)


def _run_posttrain(args: argparse.Namespace) -> None:
    from .recipes import load_recipe
    from .workflows import posttrain
    from .workflows.posttrain import METHODS, lora_arguments, resolve_method

    # The method picks the config class whose fields the TRL-style flags may set.
    method = resolve_method(args.method, {"method": dict(load_recipe(args.recipe)["method"])} if args.recipe else {})
    recipe, config_flags = _training_arguments(args, METHODS[method][0])
    method_overrides = {name: getattr(args, name) for name in [*POSTTRAIN_METHOD_FLAGS, "normalize_weights"]
                        if getattr(args, name) is not None}
    options = _run_options(args, config_flags, learning_rate=args.learning_rate,
                           per_device_train_batch_size=args.batch_size)
    report = posttrain(_data_source(args), args.model, args.output, method=method,
                       reward_model=args.reward_model, recipe=recipe, method_overrides=method_overrides, options=options,
                       preferences=args.preferences, preference_ratings=args.preference_ratings,
                       **lora_arguments(use_peft=args.use_peft, lora_r=args.lora_r, lora_alpha=args.lora_alpha,
                                        lora_dropout=args.lora_dropout, lora_target_modules=args.lora_target_modules))
    print(json.dumps({key: report[key] for key in ("method", "test", "train_runtime_s")}, indent=2))
    _print_written("Model, vocabulary, model card, recipe.yaml and metrics.json", args, report)


def _run_quickstart(args: argparse.Namespace) -> None:
    from .commands.quickstart import quickstart

    summary = quickstart(args.output, num_users=args.users, num_items=args.items, epochs=args.epochs, seed=args.seed)
    print(summary["table"])
    print(f"Outputs written to {args.output}")


def _run_benchmark(args: argparse.Namespace) -> None:
    from .commands.benchmark import benchmark

    results = benchmark(
        args.output, input_path=args.input, format=args.format, sep=args.sep, columns=args.columns,
        header=args.header, catalog=args.catalog, rating_scale=args.rating_scale, duplicates=args.duplicates,
        preset=args.preset, methods=args.methods, seeds=args.seeds, reduced_seeds=args.reduced_seeds,
        ablation_seeds=args.ablation_seeds, protocol=args.protocol, split=args.split,
        cutoff_quantile=args.cutoff_quantile, horizon=args.horizon, min_history=args.min_history,
        validation_fraction=args.validation_fraction, pretrained=args.pretrained,
        reward_model=args.reward_model, judge_model=args.judge_model, judge_data=args.judge_data,
        lambdas=args.lambdas, ablations=args.ablations, world=args.world,
        command="hf-genrec " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
    )
    print(results["markdown"])
    print(f"results.json, results.md and figures written to {args.output}")


def _run_simulate(args: argparse.Namespace) -> None:
    from .commands.simulate import simulate

    results = simulate(args.output, preset=args.preset, seeds=args.seeds, methods=args.methods,
                       command="hf-genrec " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
                       input_path=args.input, format=args.format, sep=args.sep, columns=args.columns,
                       header=args.header, propensities=args.propensities)
    print(results["markdown"])
    print(f"results.json and results.md written to {args.output}")


# subcommand -> (adds its parser and flags, runs it: one library call and what it prints), in `--help` order.
SUBCOMMANDS: dict[str, tuple[Callable, Callable[[argparse.Namespace], None]]] = {
    "prepare": (_add_prepare, _run_prepare),
    "pretrain": (_add_pretrain, _run_pretrain),
    "evaluate": (_add_evaluate, _run_evaluate),
    "reward": (_add_reward, _run_reward),
    "posttrain": (_add_posttrain, _run_posttrain),
    "quickstart": (_add_quickstart, _run_quickstart),
    "benchmark": (_add_benchmark, _run_benchmark),
    "simulate": (_add_simulate, _run_simulate),
}


# The commands that train: they take `--config` and every trainer config field as a flag (commands/arguments.py).
TRAINING_COMMANDS = ("pretrain", "reward", "posttrain")
# The flags that name files or folders, so an OS error can say which flag its path came from.
_PATH_FLAGS = ("input", "output", "data", "recipe", "catalog", "model", "reward_model", "pretrained", "judge_model")
# The flags that name a model: a value that is no local path is looked up on the Hub, whose errors do not name it.
_MODEL_FLAGS = ("model", "reward_model", "pretrained", "judge_model")
_WRONG_KIND = "a file is in the way of a folder (or the reverse). Fix: pass a path of the right kind, or move what is there"
_NOT_ALLOWED = "no permission there. Fix: choose a location you may write to (or read), or change its permissions"
_OS_ERROR_FIXES = {
    errno.ENOENT: "Fix: check the path",
    errno.ENOTDIR: _WRONG_KIND,
    errno.EEXIST: _WRONG_KIND,
    errno.EISDIR: _WRONG_KIND,
    errno.EACCES: _NOT_ALLOWED,
    errno.EPERM: _NOT_ALLOWED,
    errno.EROFS: "a read-only file system. Fix: choose a writable location",
    errno.ENOSPC: "the disk is full. Fix: free space or choose another location",
}


def _one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _path_flag(path: str | os.PathLike, args: argparse.Namespace) -> str:
    """`" (--output)"` when `path` is a path flag's value, lies inside it or is one of its parent folders."""
    target = os.path.abspath(path)
    for name in _PATH_FLAGS:
        value = getattr(args, name, None)
        if isinstance(value, (str, os.PathLike)) and value:
            given = os.path.abspath(value)
            if target == given or given.startswith(target + os.sep) or target.startswith(given + os.sep):
                return f" ({_flag(name)})"
    return ""


def _model_flags(args: argparse.Namespace, *, local: bool) -> list[str]:
    """`--model 'x'` for each model flag given whose value is (`local`) or is not a local path."""
    return [f"{_flag(name)} {value!r}" for name in _MODEL_FLAGS
            if isinstance(value := getattr(args, name, None), str) and os.path.exists(value) == local]


def _describe_os_error(error: OSError, args: argparse.Namespace) -> str:
    if error.filename is not None and error.errno in _OS_ERROR_FIXES:
        return f"{error.strerror}: {str(error.filename)!r}{_path_flag(error.filename, args)}: {_OS_ERROR_FIXES[error.errno]}."
    message = _one_line(error)
    remote = [flag for flag in _model_flags(args, local=False) if flag not in message]
    if error.filename is None and remote:
        # The Hub client's errors name a URL or nothing; say which flag was taken for a repo id.
        message += (f" ({', '.join(remote)} is no local path, so it was looked up as a Hub repo id. Fix: check the "
                    "path, or the repo id and your connection.)")
    return message


def _describe_load_error(error: Exception, args: argparse.Namespace) -> str | None:
    """Failures that torch, safetensors or pickle raise on a damaged or mismatched file, else `None`."""
    text = str(error)
    reading = ", ".join(_model_flags(args, local=True))
    reading = f" while reading {reading}" if reading else ""
    safetensors = sys.modules.get("safetensors")
    if safetensors is not None and isinstance(error, safetensors.SafetensorError):
        return (f"a .safetensors file is truncated or corrupt{reading} ({_one_line(text)}). Fix: save or download "
                "the model again.")
    if isinstance(error, (EOFError, pickle.UnpicklingError)):
        return (f"a file ended early or is corrupt{reading} ({type(error).__name__}: {_one_line(text)}). Fix: "
                "re-create or re-download it (for a checkpoint, delete that checkpoint folder).")
    if isinstance(error, RuntimeError) and text.startswith("Error(s) in loading state_dict"):
        first = next((line.strip() for line in text.splitlines()[1:] if line.strip()), "")
        return (f"saved weights do not fit the model built from the settings{reading} ({first}). Fix: use the "
                "model settings they were saved with (for --resume, the run's recipe.yaml), or start over with "
                "--overwrite.")
    if isinstance(error, IndexError) and text == "index out of range in self":
        return ("an item index is outside the model's item table (IndexError: index out of range in self): the "
                "prepared data holds items that its item_vocabulary.json or the model does not. Fix: prepare the "
                "data again with `hf-genrec prepare` and use a model trained on it.")
    torch = sys.modules.get("torch")
    if isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.OutOfMemoryError)):
        return (f"out of memory ({_one_line(text.splitlines()[0] if text else type(error).__name__)}). Fix: lower "
                "per_device_train_batch_size / per_device_eval_batch_size (posttrain: --batch-size; evaluate: "
                "--batch-size) or the model's size.")
    return None


def _describe_expected_error(error: Exception, args: argparse.Namespace) -> str | None:
    """The one-line message (what, where, how to fix) of an expected failure, or `None` for a bug.

    Expected: bad values (`ValueError`, which includes `RecipeError` and `DataFormatError`), file-system and Hub
    errors (`OSError`), the library's own lookup errors (a `KeyError`/`IndexError` whose message is a sentence;
    a bare key is a bug), and damaged or mismatched weight files (see `_describe_load_error`).
    """
    loaded = _describe_load_error(error, args)
    if loaded is not None:
        return loaded
    if isinstance(error, OSError):
        return _describe_os_error(error, args)
    if isinstance(error, ValueError):
        return _one_line(error)
    if isinstance(error, LookupError) and error.args and " " in str(error.args[0]).strip():
        return _one_line(error.args[0])  # str(KeyError) would quote the message
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with the error line of every other expected failure: `hf-genrec CMD: error: ...`, exit 2."""

    subcommands: dict[str, argparse.ArgumentParser] = {}

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")


def _add_debug_flag(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="On an error, show the full traceback instead of the one-line message.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hf-genrec",
        description="Pretrain, post-train and evaluate generative recommenders (HSTU) on Hugging Face.",
    )
    parser.add_argument("--version", action="version", version=f"hf_genrec {__version__}")
    _add_debug_flag(parser, default=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add_subcommand, _ in SUBCOMMANDS.values():
        add_subcommand(subparsers)
    parser.subcommands = subparsers.choices
    for subparser in subparsers.choices.values():
        # Also accepted after the command; SUPPRESS keeps a `--debug` given before it.
        _add_debug_flag(subparser, default=argparse.SUPPRESS)
    return parser


def _check_model_flags(args: argparse.Namespace) -> None:
    """Refuse a model flag that is neither a local path nor a well-formed Hub repo id, before anything loads (the
    Hub client would only say that the repo id is malformed)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    for name in _MODEL_FLAGS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or os.path.exists(value):
            continue
        try:
            validate_repo_id(value)
        except HFValidationError:
            raise FileNotFoundError(
                f"{_flag(name)} {value!r} does not exist: no such local folder, and not a Hub repo id (name or "
                "namespace/name). Fix: pass a folder written by an hf-genrec command, or a Hub repo id."
            ) from None


def parse_args(parser: _Parser, argv: list[str]) -> argparse.Namespace:
    """Parse `argv`. A training command also gets: its `--config` file read (a flat config's entries become the
    defaults of its flags; a nested recipe is taken as `--recipe`) and the tokens left for the trainer config flags
    (`config_tokens`, parsed once the config class is known; see commands/arguments.py)."""
    from .commands import arguments
    from .recipes import RecipeError

    command = next((token for token in argv if not token.startswith("-")), None)
    config_path = arguments.find_config_file(argv) if command in TRAINING_COMMANDS else None
    values, nested_recipe = None, None
    if config_path is not None:
        try:
            values = arguments.read_config_file(config_path)
        except RecipeError as error:
            parser.subcommands[command].error(_one_line(error).rstrip("."))
        if arguments.is_nested_recipe(values):
            values, nested_recipe = None, config_path  # taken as --recipe below
        else:
            arguments.set_config_defaults(parser.subcommands[command], values)
    args, extras = parser.parse_known_args(argv)
    if args.command not in TRAINING_COMMANDS:
        if extras:
            parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
        return args
    if nested_recipe is not None:
        if args.recipe not in (None, nested_recipe):
            parser.subcommands[command].error(
                f"--config {nested_recipe} is a nested recipe; pass it or --recipe {args.recipe}, not both")
        args.recipe = nested_recipe
    own = parser.subcommands[args.command]._actions
    args.config_values, args.config_tokens = values, extras
    args.own_dests = [action.dest for action in own]
    args.own_flags = [option for action in own for option in action.option_strings]
    return args


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; returns the exit status."""
    _check_model_flags(args)
    SUBCOMMANDS[args.command][1](args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The `hf-genrec` entry point: parse, run, and turn every failure into one line on stderr.

    Exit status: 0 on success; 2 for an expected failure (bad input, flag, recipe, file or path: see
    `_describe_expected_error`), printed as `hf-genrec CMD: error: <what, where, how to fix>`; 1 for anything
    else, which is a bug in hf_genrec and is printed as one line that says so. `--debug` lets the exception
    through with its traceback instead. `KeyboardInterrupt` and `SystemExit` always pass through.
    """
    parser = build_parser()
    args = parse_args(parser, list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.debug:
        return run(args)
    try:
        return run(args)
    except Exception as error:  # the one boundary: every failure becomes one line (KeyboardInterrupt passes)
        message = _describe_expected_error(error, args)
        if message is not None:
            print(f"hf-genrec {args.command}: error: {message}", file=sys.stderr)
            return 2
        what = _one_line(f"{type(error).__name__}: {error}").rstrip(".")
        print(f"hf-genrec {args.command}: internal error: {what}. This is a bug in hf_genrec, not in your input: run "
              "again with --debug for the traceback and report it.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
