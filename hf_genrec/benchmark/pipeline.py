"""The post-training benchmark as a sequence of resumable stages (`hf-genrec benchmark`).

    synthesize or, when the preset has a `world`, simulate_world (without --input) -> prepare (and fix the
    protocol's split) -> pretrain (or --pretrained)
    -> reward (or --reward-model)
    -> judge (or --judge-model; other seeds, only for evaluation)
    -> tuning: posttrain every trial of every method's grid on the first `tuning_seeds` seeds, each run ranking the
       validation split after every epoch and keeping its best checkpoint; per method, the trial with the best
       mean validation score is chosen
    -> posttrain the chosen trials on their seeds (`seed_allocation`: every seed, or with the preset's
    `reduced_seeds` the first few for the methods outside the focus; the tuning seeds' runs are reused) -> evaluate
    the chosen models (full-catalogue ranks and the judge rollout on the test split, read once: losing trials are
    never evaluated on it) -> with `ablations`, A-SFT's ablation grid at its chosen λ on every seed (or the first
    `ablation_seeds`), evaluated the same way
    -> diagnostics (ESS/N of the training weights and KL to the pretrained policy as stages; paired differences by
    target rating and history length and the judge-vs-ranking points from the saved evaluations)
    -> with a simulated world, world_value (every evaluated model's true value V* at each test target) and
    world_references (the oracle's, the logging and the uniform policy's)
    -> statistics, `results.json`, `results.md` and the figures.

Each stage is a plain function below, declared with `@stage`. `StageStore.run(function, **inputs)` keys it
by a hash of the inputs it is given (an upstream stage by its key, a given file or model by its content),
so a second run with the same arguments reuses what is finished and a changed argument recomputes only the
stages downstream of it.

The protocol (`--protocol`) is one split for every stage: `future` (the Netflix post's: a global cutoff time;
every event at or after it is test-only, validation is the window just before it; each test user's first H events
from the cutoff on are H targets) or `leave-one-out` (HSTU's). The prepare stage fixes the split once: for
`future` it computes the cutoff and validation start from the preset's quantiles and records them with H and the
minimum history in the prepared folder's `prepare.json` (`split_options`), which `load_prepared` applies, so
pretraining, both reward ensembles, post-training and evaluation all read the same split and no event at or after
the cutoff reaches a training or validation stage (the judge's `train+validation` data included).

Seeds (`seeds=N`) vary post-training only: post-training seed i is the preset's seed + i. The pretrained
model and both reward ensembles are shared across seeds (they are the fixed starting point and environment
every method is compared on, and sharing them keeps the run N times cheaper than repeating everything).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from datasets import load_from_disk
from tqdm.auto import tqdm

from ..data import SequenceCollator, generate_synthetic_interactions, write_movielens_file
from ..data.columns import ITEM_IDS, USER_ID
from ..data.prepared import (
    PREPARE_MANIFEST,
    SEQUENCES_DIR,
    SPLIT_OPTIONS,
    load_prepared,
    prepare_dataset,
    prepared_split_options,
)
from ..data.splits import future_cutoffs
from ..evaluation import diagnostics
from ..evaluation.judge import history_lengths
from ..evaluation.metrics import NUM_USERS, SUBSET_ALL
from ..models import AutoModelForNextItemPrediction
from ..recipes import build_training_config
from ..rewards import RewardEnsemble, format_reward_table, reward_table
from ..rewards.ensemble import ENSEMBLE_FILE
from ..trainers import RewardConfig
from ..trainers.asft import TILT_MATCHED, asft_ablation_grid
from ..trainers.sft import SFTTrainer, tilt_matched_reward_power, weight_tilt
from ..utils.io import write_json
from ..workflows.common import CHECKPOINTS_DIR, resumable_checkpoint
from ..workflows.posttrain import METHODS, posttrain
from ..workflows.pretrain import pretrain
from ..workflows.reward import METRICS_FILE, reward, train_plus_validation, train_reward_ensemble
from .evaluation import evaluate_policy, load_evaluation
from .presets import DEFAULT_METHODS, FUTURE_SPLIT, REFERENCE_METHOD, BenchmarkPreset, selection_subset
from .report import (
    IMPROVEMENT_FIGURE,
    JUDGE_FIGURE,
    LAMBDA_FIGURE,
    METRICS,
    NUM_TARGETS,
    RESULTS_JSON,
    RESULTS_MD,
    SCHEMA_VERSION,
    TRUE_VALUE,
    BenchmarkRow,
    describe_hyperparameters,
    per_user_values,
    plot_improvements,
    plot_lambda_sweep,
    results_markdown,
    summarize,
    write_json_strict,
)
from .stages import Given, Stage, StageStore, stage, stage_seconds
from .verdict import VERDICT_REFERENCE, claim_verdicts, verdict_subsets
from .world_value import (
    load_reference_values,
    load_true_values,
    simulate_world,
    world_references,
    world_value,
)

logger = logging.getLogger(__name__)

__all__ = ["JUDGE_DATA", "PROTOCOLS", "BenchmarkSpec", "ablation_seed_count", "focus_methods", "needs_reward_model",
           "run_benchmark", "seed_allocation", "select_trial", "tune_methods"]

# The evaluation protocols (`--protocol`), the post's first; `temporal` stays reachable through `--split`.
PROTOCOLS = ("future", "leave-one-out")

# The events the judge ensemble may train on (`--judge-data`).
JUDGE_DATA = ("train", "train+validation")
# Stages whose outputs every post-training seed shares.
SHARED_STAGES = ("prepare", "pretrain", "reward", "judge")
# The claims' subject and their reference (`verdict.py`): they run every seed whatever the preset's `reduced_seeds`.
ALL_SEEDS_METHODS = (VERDICT_REFERENCE, REFERENCE_METHOD)


@dataclass(frozen=True)
class BenchmarkSpec:
    """What one benchmark run compares (the checked arguments of `hf-genrec benchmark`).

    Attributes:
        preset: the models, budgets and statistics settings.
        methods: post-training methods, `REFERENCE_METHOD` among them.
        seeds: number of post-training seeds.
        protocol: the split every stage reads: `future`, `leave-one-out` (or the older `temporal`).
        ratings: a ratings file (`None`: the preset's embedded data, a log of its `world` or else synthetic) and
            `loader`, its `prepare_dataset` flags.
        pretrained / reward_model / judge_model: given models used instead of training them.
        judge_data: one of `JUDGE_DATA`, the events the judge trains on.
        command: the command line recorded in the results.
    """

    preset: BenchmarkPreset
    methods: tuple[str, ...] = DEFAULT_METHODS
    seeds: int = 1
    protocol: str = "future"
    ratings: Given | None = None
    loader: dict[str, Any] = field(default_factory=dict)
    pretrained: Given | None = None
    reward_model: Given | None = None
    judge_model: Given | None = None
    judge_data: str = "train+validation"
    command: str = "(Python API)"


def needs_reward_model(method: str, training: dict[str, Any]) -> bool:
    """Whether `method` with these training values queries the reward ensemble: the trainer's own rule.

    The config dataclass is only built in memory (a `TrainingArguments` does not create its `output_dir`).
    """
    config_class, trainer_class, implied = METHODS[method]
    return trainer_class.needs_reward_model(build_training_config(config_class, {**implied, **training}))


# --------------------------------------------------------------------------------------------- stages
@stage("synthesize", output="ratings.dat")
def synthesize(output: Path, *, synthetic: dict[str, Any]) -> dict[str, Any]:
    """The embedded synthetic data (`generate_synthetic_interactions(**synthetic)`) as a MovieLens file."""
    interactions = generate_synthetic_interactions(**synthetic)
    write_movielens_file(interactions, output)
    return {"num_interactions": len(interactions)}


@stage("prepare", output="data")
def prepare_data(output: Path, *, ratings: Path, split: str, future: dict[str, Any] | None = None,
                 **loader: Any) -> dict[str, Any]:
    """`prepare_dataset` on the ratings file with the loader flags of `hf-genrec prepare`, then the split fixed.

    For `split="future"`, the cutoff and validation start (Unix seconds) computed from `future`'s quantiles, H
    and the minimum history are recorded in `prepare.json` (`split_options`), where `load_prepared`, and so every
    later stage, takes them. Returns the manifest plus `split_options` and `split_counts` (users and events of
    each split: train events, validation and test targets).
    """
    manifest = prepare_dataset(ratings, output, **loader)
    options: dict[str, Any] = {}
    if split == "future":
        future = {**FUTURE_SPLIT, **(future or {})}
        validation_start, cutoff = future_cutoffs(
            load_from_disk(str(output / SEQUENCES_DIR)), cutoff_quantile=future.pop("cutoff_quantile"),
            validation_fraction=future.pop("validation_fraction"))
        options = {"cutoff": cutoff, "validation_start": validation_start, **future}
        manifest[SPLIT_OPTIONS] = {split: options}
        write_json(output / PREPARE_MANIFEST, manifest)
    splits, _ = load_prepared(output, split)
    return {**manifest, "split_options": options, "split_counts": split_counts(splits)}


def split_counts(splits) -> dict[str, dict[str, int]]:
    """`{split: {"users": n, "events": n}}`: the training events, and the validation and test targets (rows)."""
    counts = {"train": {"users": len(splits["train"]), "events": sum(len(x) for x in splits["train"][ITEM_IDS])}}
    for name in ("validation", "test"):
        counts[name] = {"users": len(set(splits[name][USER_ID])), "events": len(splits[name])}
    return counts


@stage("pretrain", output="model", resumable=True)
def pretrain_model(output: Path, *, data: Path, recipe: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """The pretrained recommender; `resume` continues an interrupted run from its newest complete checkpoint."""
    report = pretrain(data, output, recipe=recipe, resume=resume, overwrite=not resume)
    return {"test": report["test"], "best_epoch": report["best_epoch"],
            "total_runtime_s": report["total_runtime_s"]}


@stage("reward", output="ensemble", resumable=True)
def train_reward_model(output: Path, *, data: Path, pretrained: Path, recipe: dict[str, Any],
                       resume: bool = False) -> dict[str, Any]:
    """The reward ensemble the methods train against, and its reward table on the test split; `resume` continues
    an interrupted run (each member from its newest complete checkpoint)."""
    report = reward(data, pretrained, output, recipe=recipe, resume=resume, overwrite=not resume)
    return {"table": report["table"], "markdown": report["markdown"],
            "train_runtime_s": report["train_runtime_s"], "seeds": report["seeds"]}


def _resume_member(trainer) -> Any:
    """Train one ensemble member from its newest complete checkpoint, if any (checked to be this member's run)."""
    return trainer.train(resume_from_checkpoint=resumable_checkpoint(trainer))


@stage("judge", output="ensemble", resumable=True)
def train_judge(output: Path, *, data: Path, pretrained: Path, recipe: dict[str, Any], judge_data: str,
                resume: bool = False) -> dict:
    """The judge: a separate ensemble (other seeds) on the training events, or on the training and
    validation events (the test targets stay held out; validation RMSE can then no longer pick an epoch, so
    every member trains its full epochs). `resume` continues an interrupted run, each member from its newest
    complete checkpoint."""
    if judge_data == "train":
        return train_reward_model(output, data=data, pretrained=pretrained, recipe=recipe, resume=resume)
    split = recipe["data"]["split"]
    splits, vocabulary = load_prepared(data, split)
    training = {**recipe["training"], "output_dir": str(output / "checkpoints"), "load_best_model_at_end": False}
    args = build_training_config(RewardConfig, training)
    # On `future` rows the test histories hold test-window events: every user's events before the cutoff instead.
    events = train_plus_validation(splits, load_from_disk(str(data / SEQUENCES_DIR)),
                                   prepared_split_options(data, split).get("cutoff"))
    ensemble = train_reward_ensemble(
        pretrained, events, splits["validation"], args, vocabulary=vocabulary,
        model_overrides=recipe["model"],
        trained_on={"data": str(data), "split": split, "training_split": judge_data, "judge": True,
                    "pretrained_model": str(pretrained)},
        train=_resume_member if resume else None,
    )
    ensemble.save_pretrained(output)
    return {"ensemble_size": ensemble.num_members, "seeds": ensemble.seeds}


@stage("reward_table")
def score_given_ensemble(output: Path, *, ensemble: Path, data: Path, split: str) -> dict[str, Any]:
    """The reward table of a given ensemble: its `reward_metrics.json` if any, else computed on the test split."""
    metrics_file = ensemble / METRICS_FILE
    if metrics_file.is_file():
        table = json.loads(metrics_file.read_text(encoding="utf-8"))["table"]
    else:
        splits, _ = load_prepared(data, split)
        table = reward_table(RewardEnsemble.from_pretrained(ensemble), splits)
    return {"table": table, "markdown": format_reward_table(table)}


@stage("posttrain", output="model")
def posttrain_model(output: Path, *, data: Path, pretrained: Path, method: str, recipe: dict[str, Any], seed: int,
                    reward_model: Path | None) -> dict[str, Any]:
    """One post-training run; with the preset's selection values, its validation passes and kept checkpoint are
    returned as `selection` (see `hf_genrec.workflows.posttrain`)."""
    report = posttrain(data, pretrained, output, method=method, reward_model=reward_model, recipe=recipe, seed=seed,
                       overwrite=True, evaluate=False)  # the evaluate stage ranks the test split
    # The kept weights are saved in the model folder: the checkpoints (optimizer states included) only take space.
    shutil.rmtree(output / CHECKPOINTS_DIR, ignore_errors=True)
    return {"global_steps": report["global_steps"], "epochs_trained": report["epochs_trained"],
            "train_runtime_s": report["train_runtime_s"], "last_train_log": report["last_train_log"],
            "selection": report.get("selection")}


@stage("evaluate", unkeyed=("show_progress",))
def evaluate_model(output: Path, *, model: Path, data: Path, split: str, judge: Path, horizon: int, gamma: float,
                   time_gap: int, batch_size: int, show_progress: bool = True) -> dict[str, Any]:
    """Full-catalogue ranks and the judge rollout of `model` on the test split, saved per user."""
    splits, _ = load_prepared(data, split)
    evaluation = evaluate_policy(model, RewardEnsemble.from_pretrained(judge), splits["test"],
                                 batch_size=batch_size, horizon=horizon, gamma=gamma, time_gap=time_gap,
                                 show_progress=show_progress)
    evaluation.save(output)
    metrics = evaluation.ranking.metrics(subsets=evaluation.ranking.default_subsets())["all"]
    users = diagnostics.case_users(evaluation.ranking)
    # `ranking_metrics` counts rows; a `future` test user has H of them.
    metrics.update({NUM_USERS: int(users.max()) + 1 if users.size else 0, NUM_TARGETS: int(users.size)})
    return {"all": metrics, "judge": evaluation.judge.mean(), "judge_spread": evaluation.judge.spread()}


# Training values that turn off `selection_training` (a trainer built only to read its training weights).
NO_SELECTION = {"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
                "early_stopping_patience": None}


def weighted_method(method: str) -> bool:
    """Whether `method` trains with per-position loss weights (SFT, RW-BC, A-SFT: `SFTTrainer.training_weights`)."""
    return issubclass(METHODS[method][1], SFTTrainer)


@stage("weights")
def measure_weights(output: Path, *, data: Path, pretrained: Path, method: str, recipe: dict[str, Any],
                    reward_model: Path | None) -> dict[str, Any]:
    """The training weights of `method` with `recipe` on the training split, as its trainer computes them (no
    training): their ESS/N (`effective_sample_size`), their tilt 5:3 (`weight_tilt`) and, for A-SFT, the RW-BC
    reward power with the same tilt (`tilt_matched_reward_power`; `None` with the reason when the tilt is <= 1)."""
    splits, vocabulary = load_prepared(data, recipe["data"]["split"])
    config_class, trainer_class, implied = METHODS[method]
    # Weights only, no training: the validation passes and checkpoints of the selection values have nothing to do.
    args = build_training_config(config_class, {**implied, **recipe["training"], **NO_SELECTION,
                                                "output_dir": str(output)})
    model = AutoModelForNextItemPrediction.from_pretrained(pretrained, **recipe["model"])
    trainer = trainer_class(model=model, reward_model=reward_model, args=args, train_dataset=splits["train"],
                            processing_class=vocabulary)
    weights = trainer.training_weights()
    ess = diagnostics.effective_sample_size(weights.weights)
    result: dict[str, Any] = {"ess": ess.ess, "ess_fraction": ess.fraction, "num_positions": ess.num_positions}
    try:
        result["tilt"] = weight_tilt(weights.weights, weights.rewards)
    except ValueError as error:  # e.g. a dataset without 3- or 5-rated positions
        result["tilt"], result["tilt_error"] = None, str(error)
    if method == "asft":
        try:
            result["reward_power"] = tilt_matched_reward_power(weights.weights, weights.rewards)
        except ValueError as error:
            result["reward_power"], result["reward_power_error"] = None, str(error)
    return result


@stage("kl")
def measure_kl(output: Path, *, model: Path, pretrained: Path, data: Path, split: str, batch_size: int) -> dict:
    """KL(post-trained ‖ pretrained) at every test context over the full catalogue minus the history
    (`diagnostics.policy_kl`), saved per row (`kl.npy`); returns the mean."""
    splits, _ = load_prepared(data, split)
    policy = AutoModelForNextItemPrediction.from_pretrained(model)
    reference = AutoModelForNextItemPrediction.from_pretrained(pretrained)
    kl = diagnostics.policy_kl(policy, reference, splits["test"],
                               SequenceCollator(max_seq_len=policy.config.max_seq_len), batch_size=batch_size)
    np.save(output / "kl.npy", kl.numpy())
    return {"mean": float(kl.mean()) if kl.numel() else math.nan, "num_rows": int(kl.numel())}


# ------------------------------------------------------------------------------------------ the run
def check_separate_ensembles(reward_dir: Path, judge_dir: Path) -> None:
    """The judge must not be the ensemble the methods trained against (nor share a member with it)."""
    if reward_dir.resolve() == judge_dir.resolve():
        raise ValueError("the judge ensemble is the training reward ensemble; pass a separate --judge-model.")
    manifests = [json.loads((d / ENSEMBLE_FILE).read_text(encoding="utf-8")) for d in (reward_dir, judge_dir)]
    same_data = manifests[0].get("trained_on", {}).get("data") == manifests[1].get("trained_on", {}).get("data")
    shared = set(manifests[0].get("seeds") or []) & set(manifests[1].get("seeds") or [])
    if same_data and shared:
        raise ValueError(
            f"the judge ensemble shares seeds {sorted(shared)} with the training reward ensemble on the same data; "
            "train the judge with other seeds (e.g. hf-genrec reward --seed 1000)."
        )


def _reward_ensembles(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given):
    """The ensemble the methods train against and the judge (trained, or given), and their reward tables."""
    preset, split = spec.preset, spec.protocol
    reward_model = spec.reward_model or store.run(
        train_reward_model, data=data, pretrained=pretrained, recipe=preset.reward_recipe(split))
    judge = spec.judge_model
    if judge is None:
        # The judge's own backbone (another seed), so that it shares no weights or initialisation with the policies.
        backbone_recipe = preset.judge_pretrain_recipe(split)
        backbone = pretrained if backbone_recipe is None else store.run(
            pretrain_model, data=data, recipe=backbone_recipe, label="pretrain (judge backbone)")
        judge = store.run(train_judge, data=data, pretrained=backbone, recipe=preset.reward_recipe(split, judge=True),
                          judge_data=spec.judge_data)
    check_separate_ensembles(reward_model.output, judge.output)
    tables = {}
    for role, ensemble in (("reward", reward_model), ("judge", judge)):
        if isinstance(ensemble, Given) or "table" not in ensemble.result:
            # A given ensemble, or a judge trained on train+validation (its training reports no table): scored on
            # the held-out test targets here.
            ensemble = store.run(score_given_ensemble, ensemble=ensemble, data=data, split=split,
                                 label=f"{role} (given)" if isinstance(ensemble, Given) else f"{role} table")
        result = ensemble.result
        tables[role] = {"table": result["table"], "markdown": result["markdown"]} if "table" in result else None
    return reward_model, judge, tables


def _ranked_score(score: float | None) -> float:
    """A validation score to rank by: None or NaN (a subset without users) counts as the worst."""
    return -math.inf if score is None or math.isnan(score) else score


def select_trial(scores: list[float]) -> int:
    """The index of the best validation score (NaN, a subset without users, counts as the worst; ties: the first)."""
    ranked = [_ranked_score(score) for score in scores]
    return max(range(len(ranked)), key=lambda i: (ranked[i], -i))


def focus_methods(spec: BenchmarkSpec, tuning: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The methods besides A-SFT and RW-BC that run every seed under `reduced_seeds`: the preset's `focus_methods`
    best by the validation score of their chosen trial (`tuning`, validation only; ties: method order). Without
    `tuning` (the stage-count estimate made before tuning), the first ones in method order: as many."""
    others = [method for method in spec.methods if method not in ALL_SEEDS_METHODS]
    if tuning is not None:
        chosen = {method: tuning[method]["trials"][tuning[method]["chosen"]]["validation_mean"] for method in others}
        others.sort(key=lambda method: -_ranked_score(chosen[method]))  # stable: equal scores keep the method order
    return others[:spec.preset.focus_methods]


def seed_allocation(spec: BenchmarkSpec, tuning: dict[str, dict[str, Any]] | None = None) -> dict[str, int]:
    """`{method: n}`, the post-training seeds of each method (it runs the first n: the preset's seed + i, i < n).

    Seeds go where they decide the verdict (issue 13 item 10): A-SFT and RW-BC (the claims' subject and reference)
    and the `focus_methods` run every seed; the others, whose comparisons are decided by wider margins, the first
    `reduced_seeds`. Without `reduced_seeds`, or with as many as `spec.seeds`, every method runs every seed. A
    row's runs are a prefix of the reference's, so `summarize` pairs them seed by seed.
    """
    reduced = spec.preset.reduced_seeds
    if reduced is None or reduced >= spec.seeds:
        return {method: spec.seeds for method in spec.methods}
    everything = {*ALL_SEEDS_METHODS, *focus_methods(spec, tuning)}
    return {method: spec.seeds if method in everything else reduced for method in spec.methods}


def ablation_seed_count(spec: BenchmarkSpec) -> int:
    """The post-training seeds of every A-SFT ablation row (the first n): the preset's `ablation_seeds`, at most
    `spec.seeds` (`None`: every seed)."""
    return min(spec.preset.ablation_seeds or spec.seeds, spec.seeds)


def _trial_run(stage: Stage, seed: int) -> dict[str, Any]:
    """What one tuning run records: its seed, best validation score, best step and epoch, steps and history."""
    result = stage.result
    selection = result.get("selection") or {}
    return {"seed": seed, "validation": selection.get("best_metric"), "best_step": selection.get("best_step"),
            "best_epoch": selection.get("best_epoch"), "global_steps": result.get("global_steps"),
            "epochs_trained": result.get("epochs_trained"), "history": selection.get("history", [])}


def posttrain_run(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                   reward_model: Stage | Given, method: str, hyperparameters: dict[str, Any], seed: int,
                   label: str) -> Stage:
    recipe = spec.preset.trial_recipe(method, spec.protocol, **hyperparameters)
    uses_reward = needs_reward_model(method, recipe["training"])
    return store.run(posttrain_model, data=data, pretrained=pretrained, method=method, recipe=recipe, seed=seed,
                     reward_model=reward_model if uses_reward else None, label=label)


def tune_methods(
    store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given, reward_model: Stage | Given,
    context: str | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, list[list[Stage]]]]:
    """Every trial of every method on the tuning seeds, and the choice.

    Only validation is read: the runs' best-checkpoint scores on the high-reward validation subset. `context`, when
    given, ends every run's label in logs and `store.history` (the simulation study: its setting and seed).

    Returns:
        `(tuning, trial_stages)`. `tuning` is what `results.json` records under `tuning.methods`: per method `grid`,
        `trials` (each with its `hyperparameters`, `runs` per seed and `validation_mean`), `chosen` (its index) and
        `chosen_hyperparameters`. `trial_stages[method][trial][i]` is the `posttrain` stage of that trial (in
        `trials` order) on the i-th tuning seed: the trained models, for callers that use them without looking
        the stages up again.
    """
    preset = spec.preset
    seeds = [preset.seed + i for i in range(min(preset.tuning_seeds, spec.seeds))]
    tuning, trial_stages = {}, {}
    for method in spec.methods:
        trials, trial_stages[method] = [], []
        for hyperparameters in preset.trials(method):
            runs, stages = [], []
            for seed in seeds:
                label = f"{method} [{describe_hyperparameters(hyperparameters)}] seed {seed}"
                label += f" ({context})" if context else ""
                stages.append(posttrain_run(store, spec, data, pretrained, reward_model, method, hyperparameters,
                                            seed, label))
                runs.append(_trial_run(stages[-1], seed))
            scores = [run["validation"] for run in runs]
            mean = math.nan if any(v is None for v in scores) else float(sum(scores) / len(scores))
            trials.append({"hyperparameters": hyperparameters, "validation_mean": mean, "runs": runs})
            trial_stages[method].append(stages)
        chosen = select_trial([trial["validation_mean"] for trial in trials])
        for i, trial in enumerate(trials):
            trial["chosen"] = i == chosen
        grid = {name: list(values) for name, values in preset.grids.get(method, {}).items()}
        best = trials[chosen]["hyperparameters"]
        tuning[method] = {"grid": grid, "trials": trials, "chosen": chosen, "chosen_hyperparameters": best}
        logger.info("%s: trial %d chosen on validation (%s)", method, chosen, describe_hyperparameters(best))
    return tuning, trial_stages


def _post_train(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                reward_model: Stage | Given, evaluate, tuning: dict[str, dict[str, Any]]) -> list[BenchmarkRow]:
    """Each method's chosen trial on its seeds (`seed_allocation`; the tuning seeds' runs reused), evaluated on the
    test split: one `BenchmarkRow` per method."""
    evaluations: dict[str, list] = {method: [] for method in spec.methods}
    models: dict[str, list] = {method: [] for method in spec.methods}
    allocation = seed_allocation(spec, tuning)
    # Seed-major order: every method for the first seed before the next seed, so that an interrupted run already
    # holds complete tables for its first seeds.
    for i in range(spec.seeds):
        seed = spec.preset.seed + i
        for method in spec.methods:
            if i >= allocation[method]:
                continue
            chosen = tuning[method]["chosen_hyperparameters"]
            model = posttrain_run(store, spec, data, pretrained, reward_model, method, chosen, seed,
                                   label=f"{method} [{describe_hyperparameters(chosen)}, chosen] seed {seed}")
            evaluated = evaluate(model=model, label=f"evaluate {method} seed {seed}")
            evaluations[method].append((seed, load_evaluation(evaluated.output)))
            models[method].append(model)
    rows = []
    for method in spec.methods:
        training = spec.preset.trial_recipe(method, spec.protocol, **tuning[method]["chosen_hyperparameters"])
        rows.append(BenchmarkRow(
            name=method, method=method, kind="method", evaluations=[e for _, e in evaluations[method]],
            seeds=[seed for seed, _ in evaluations[method]], hyperparameters=training["training"],
            temperature=training["training"].get("temperature") if method == "asft" else None,
            models=models[method], recipe=training,
        ))
    return rows


def _weights(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
             reward_model: Stage | Given, method: str, recipe: dict[str, Any], label: str) -> Stage:
    """The `measure_weights` stage of `method` with the training `recipe` (the reward ensemble iff it uses one)."""
    uses_reward = needs_reward_model(method, recipe["training"])
    return store.run(measure_weights, data=data, pretrained=pretrained, method=method, recipe=recipe,
                     reward_model=reward_model if uses_reward else None, label=label)


def _ablations(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
               reward_model: Stage | Given, evaluate, tuning: dict[str, dict[str, Any]]) -> list[BenchmarkRow]:
    """A-SFT's ablation grid (`asft_ablation_grid`) at A-SFT's chosen trial (its λ; no λ of their own), every variant
    on the first `ablation_seed_count(spec)` seeds with A-SFT's budget and selection rules, evaluated on the test
    split: rows of kind `ablation`.

    The tilt-matched control is RW-BC (with A-SFT's learning rate) with w = r^p, p from the chosen A-SFT trial's
    training weights (`measure_weights`); it is left out, with a warning, when those weights have a tilt <= 1."""
    chosen = tuning["asft"]["chosen_hyperparameters"]
    headline = spec.preset.trial_recipe("asft", spec.protocol, **chosen)
    seeds = [spec.preset.seed + i for i in range(ablation_seed_count(spec))]
    rows = []
    for name, (method, overrides) in asft_ablation_grid().items():
        details: dict[str, Any] = {}
        if overrides.get("reward_power") == TILT_MATCHED:
            measured = _weights(store, spec, data, pretrained, reward_model, "asft", headline,
                                label="weights asft (chosen)").result
            if measured.get("reward_power") is None:
                logger.warning("%s left out: %s", name, measured.get("reward_power_error"))
                continue
            overrides = {"reward_power": measured["reward_power"],
                         "learning_rate": headline["training"]["learning_rate"]}
            details = {"reward_power": measured["reward_power"], "asft_tilt": measured["tilt"]}
        hyperparameters = {**chosen, **overrides} if method == "asft" else overrides
        evaluations, models = [], []
        for seed in seeds:
            model = posttrain_run(store, spec, data, pretrained, reward_model, method, hyperparameters, seed,
                                   label=f"ablation {name} seed {seed}")
            evaluated = evaluate(model=model, label=f"evaluate ablation {name} seed {seed}")
            evaluations.append(load_evaluation(evaluated.output))
            models.append(model)
        recipe = spec.preset.trial_recipe(method, spec.protocol, **hyperparameters)
        rows.append(BenchmarkRow(
            name=name, method=method, kind="ablation", evaluations=evaluations,
            seeds=list(seeds), hyperparameters=recipe["training"],
            temperature=recipe["training"].get("temperature") if method == "asft" else None, models=models,
            recipe=recipe, details=details,
        ))
    return rows


def _row_diagnostics(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                     reward_model: Stage | Given, row: BenchmarkRow, reference: BenchmarkRow,
                     lengths: np.ndarray) -> dict[str, Any]:
    """One row's diagnostics: paired NDCG@10 differences vs RW-BC by target rating and by history length (subsets
    `all` and the high-reward one), the ESS/N of its training weights (None without), its mean KL to the pretrained
    policy on the test contexts (per seed and mean) and its judge-vs-ranking point."""
    preset, high = spec.preset, selection_subset(spec.protocol)
    method_preds = [e.ranking for e in row.evaluations]
    reference_preds = [reference.evaluations[i % len(reference.evaluations)].ranking for i in range(len(method_preds))]
    options = {"num_resamples": preset.bootstrap_resamples}
    by_rating, by_length = {}, {}
    for subset in (SUBSET_ALL, high):
        by_rating[subset] = {f"{bucket:g}": dataclasses.asdict(value) for bucket, value in
                             diagnostics.paired_differences_by_target_rating(
                                 method_preds, reference_preds, subset=subset, **options).items()}
        by_length[subset] = {bucket: dataclasses.asdict(value) for bucket, value in
                             diagnostics.paired_differences_by_history_length(
                                 method_preds, reference_preds, lengths, subset=subset, **options).items()}
    ess = None
    if weighted_method(row.method):
        ess = _weights(store, spec, data, pretrained, reward_model, row.method, row.recipe,
                       label=f"weights {row.name}").result
    kl = [store.run(measure_kl, model=model, pretrained=pretrained, data=data, split=spec.protocol,
                    batch_size=preset.eval_batch_size, label=f"kl {row.name} seed {seed}").result["mean"]
          for model, seed in zip(row.models, row.seeds)]
    point = diagnostics.judge_ranking_point(method_preds, [e.judge for e in row.evaluations], ranking_subset=high,
                                            **options)
    return {"kind": row.kind, "paired_ndcg@10_vs_rwbc": {"by_target_rating": by_rating, "by_history_length": by_length},
            "ess": ess, "kl_to_pretrained": {"mean": float(np.mean(kl)), "per_seed": kl},
            "judge_vs_ranking": dataclasses.asdict(point)}


def _diagnostics(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                 reward_model: Stage | Given, rows: list[BenchmarkRow]) -> dict[str, Any]:
    """`results.json`'s `diagnostics`: per post-trained row `_row_diagnostics`; the pretrained model has only its
    judge-vs-ranking point."""
    splits, _ = load_prepared(data.output, spec.protocol)
    lengths = history_lengths(splits["test"])
    reference = next(row for row in rows if row.name == REFERENCE_METHOD)
    high = selection_subset(spec.protocol)
    section: dict[str, Any] = {"metric": "ndcg@10", "reference": REFERENCE_METHOD, "subsets": [SUBSET_ALL, high],
                               "history_length_edges": list(diagnostics.DEFAULT_HISTORY_LENGTH_EDGES), "rows": {}}
    for row in rows:
        if row.kind == "pretrained":
            point = diagnostics.judge_ranking_point([e.ranking for e in row.evaluations],
                                                    [e.judge for e in row.evaluations], ranking_subset=high,
                                                    num_resamples=spec.preset.bootstrap_resamples)
            section["rows"][row.name] = {"kind": row.kind, "judge_vs_ranking": dataclasses.asdict(point)}
        else:
            section["rows"][row.name] = _row_diagnostics(store, spec, data, pretrained, reward_model, row,
                                                         reference, lengths)
    return section


def _true_values(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                 rows: list[BenchmarkRow], world: dict[str, Any]) -> dict[str, Any]:
    """Every row's true value V* at each test target, per seed (`world_value`, set on `row.true_values` for the
    statistics), and `results.json`'s `world` section: the spec and the reference policies' V* per subset (a
    user's targets averaged first, on the pretrained row's test users and subsets)."""
    for row in rows:
        models = row.models or [pretrained]  # the pretrained row evaluates the pretrained model itself
        seeds = row.seeds or [None] * len(models)
        row.true_values = [load_true_values(store.run(
            world_value, model=model, data=data, split=spec.protocol, world=world,
            label=f"true value {row.name}" + (f" seed {seed}" if seed is not None else "")).output)
            for model, seed in zip(models, seeds)]
    references = load_reference_values(store.run(world_references, data=data, split=spec.protocol, world=world,
                                                  label="true value oracle, logging, uniform").output)
    evaluation = rows[0].evaluations[0]  # any row: they all hold the same test rows
    subsets = evaluation.ranking.default_subsets()
    section = {"spec": world, "reference_policies": {}, "num_targets": int(len(references["oracle"])),
               "column": "true_value: V* = Σ_i π(i | context) r*(context, i) at each test target's world state"}
    for name, values in references.items():
        users = {subset: per_user_values(evaluation, subset, {TRUE_VALUE: values})[0][TRUE_VALUE] for subset in subsets}
        section["reference_policies"][name] = {subset: float(v.mean()) if v.size else None for subset, v in users.items()}
    return section


def run_benchmark(output_dir: str | os.PathLike, spec: BenchmarkSpec, *, show_progress: bool = True) -> dict:
    """Run (or resume) the benchmark `spec` under `output_dir`; write `results.json`, `results.md`, figures.

    Stages live under `output_dir/stages/<stage>-<key>/`. Returns the content of `results.json` plus
    `markdown`.
    """
    start = time.time()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    preset = spec.preset
    tuning_runs = len(spec.methods) * preset.trials_per_method * min(preset.tuning_seeds, spec.seeds)
    judge_backbone = spec.judge_model is None and preset.judge_pretraining is not None
    ablations = len(asft_ablation_grid()) if preset.ablations and "asft" in spec.methods else 0
    weighted = sum(weighted_method(method) for method in spec.methods) + ablations
    world = preset.world if spec.ratings is None else None  # the truth exists only for the embedded world's log
    # The chosen runs: the allocation's counts are known before tuning (only which methods get them is not).
    runs = sum(seed_allocation(spec).values()) + ablations * ablation_seed_count(spec)
    num_stages = (spec.ratings is None) + 1 + (spec.pretrained is None) + judge_backbone + 2 + 1 + tuning_runs + \
        3 * runs + weighted + (2 + runs if world else 0)
    with tqdm(total=num_stages, desc="benchmark stages", unit="stage", disable=not show_progress) as bar:
        store = StageStore(output_dir, progress=bar)
        if spec.ratings is not None:
            ratings = spec.ratings
        else:
            ratings = store.run(simulate_world, world=world) if world else store.run(synthesize,
                                                                                    synthetic=preset.synthetic)
        data = store.run(prepare_data, ratings=ratings, split=spec.protocol,
                         future=preset.future if spec.protocol == "future" else None, **spec.loader)
        pretrained = spec.pretrained or store.run(pretrain_model, data=data,
                                                  recipe=preset.pretrain_recipe(spec.protocol))
        reward_model, judge, tables = _reward_ensembles(store, spec, data, pretrained)
        evaluate = functools.partial(
            store.run, evaluate_model, data=data, split=spec.protocol, judge=judge, horizon=preset.horizon,
            gamma=preset.gamma, time_gap=preset.time_gap, batch_size=preset.eval_batch_size,
            show_progress=show_progress)
        evaluated = evaluate(model=pretrained, label="evaluate pretrained")
        rows = [BenchmarkRow(name="pretrained", method="pretrained", kind="pretrained",
                             evaluations=[load_evaluation(evaluated.output)])]
        # Its stages unused: `_post_train` runs the chosen trials on every seed (the tuning seeds' stages reused).
        tuning, _ = tune_methods(store, spec, data, pretrained, reward_model)
        rows += _post_train(store, spec, data, pretrained, reward_model, evaluate, tuning)
        if ablations:
            rows += _ablations(store, spec, data, pretrained, reward_model, evaluate, tuning)
        diagnostics_section = _diagnostics(store, spec, data, pretrained, reward_model, rows)
        world_section = _true_values(store, spec, data, pretrained, rows, world) if world else None

    logger.info("computing statistics (%d bootstrap resamples)", preset.bootstrap_resamples)
    summary = summarize(rows, REFERENCE_METHOD, resamples=preset.bootstrap_resamples)
    models = {"pretrained": pretrained, "reward": reward_model, "judge": judge}
    results = _results(spec, summary, models, tables, store.history, data.result, tuning,
                       wall_time_s=time.time() - start)
    results["diagnostics"] = diagnostics_section
    if world_section is not None:
        results["world"] = world_section
    results["verdict"] = claim_verdicts(results, summarize(  # the same bootstrap, A-SFT as the reference
        [row for row in rows if row.kind == "method"], VERDICT_REFERENCE, resamples=preset.bootstrap_resamples,
        subsets=verdict_subsets(spec.protocol)) if VERDICT_REFERENCE in spec.methods else None)
    markdown = _write_outputs(output_dir, results)
    logger.info("benchmark finished in %.1f min: %s", results["wall_time_s"] / 60, output_dir / RESULTS_MD)
    return {**results, "markdown": markdown}


# ------------------------------------------------------------------------------------------ results
def _describe_ensemble(ensemble: Stage | Given, data: str) -> str:
    manifest = json.loads((ensemble.output / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    seeds = manifest.get("seeds") or []
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds}"
    origin = f"given ({ensemble.output})" if isinstance(ensemble, Given) else f"trained on {data} events"
    backbone = (manifest.get("trained_on") or {}).get("pretrained_model")
    # The stage folder's name says which pretraining run it is (the policies' or the judge's own).
    backbone_text = f", from the pretrained model {Path(backbone).parent.name}" if backbone else ""
    return f"{manifest['num_members']}-member ensemble, {seed_text}, {origin}{backbone_text}"


def _describe_split(options: dict[str, Any]) -> dict[str, Any]:
    """The split's recorded arguments, the cutoff times also as UTC dates."""
    described = dict(options)
    for name in ("cutoff", "validation_start"):
        if name in options:
            described[f"{name}_utc"] = datetime.fromtimestamp(options[name], tz=UTC).strftime("%Y-%m-%d %H:%M")
    return described


def _dataset_name(spec: BenchmarkSpec) -> str:
    if spec.ratings is not None:
        return str(spec.ratings.path)
    if spec.preset.world:
        return "embedded simulated world (" + ", ".join(
            f"{k}={v}" for k, v in {**spec.preset.world["world"], **spec.preset.world["setting"]}.items()) + ")"
    return "embedded synthetic data (" + ", ".join(f"{k}={v}" for k, v in spec.preset.synthetic.items()) + ")"


def _allocation_section(spec: BenchmarkSpec, tuning: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`results.json`'s `tuning.seed_allocation`: each method's seeds (`seed_allocation`), the focus methods, the
    ablation rows' seeds and the rule in words."""
    preset, allocation = spec.preset, seed_allocation(spec, tuning)
    reduced = [method for method, n in allocation.items() if n < spec.seeds]
    focus = focus_methods(spec, tuning) if reduced else []
    rule = "every method runs every seed"
    if reduced:
        rule = (f"seeds go where they decide the verdict: A-SFT and RW-BC (the claims' subject and reference) and "
                f"the {len(focus)} other method(s) with the best validation score of their chosen trial "
                f"({', '.join(focus) or 'none'}) run all {spec.seeds} seeds, the others the first "
                f"{preset.reduced_seeds} (`reduced_seeds`)")
    ablation_seeds = ablation_seed_count(spec) if preset.ablations and "asft" in spec.methods else None
    if ablation_seeds is not None and ablation_seeds < spec.seeds:
        rule += f"; the A-SFT ablation rows run the first {ablation_seeds} (`ablation_seeds`)"
    return {"num_seeds": spec.seeds, "seeds": allocation, "focus_methods": focus,
            "reduced_seeds": preset.reduced_seeds, "ablation_seeds": ablation_seeds, "rule": rule + "."}


def _results(spec: BenchmarkSpec, summary: dict[str, Any], models: dict[str, Stage | Given],
             tables: dict[str, Any], history: list[dict[str, Any]], prepared: dict[str, Any],
             tuning: dict[str, dict[str, Any]], wall_time_s: float) -> dict[str, Any]:
    """The content of `results.json` (see docs/benchmark.md)."""
    preset = spec.preset
    config = {
        "dataset": _dataset_name(spec),
        "command": spec.command,
        "preset": preset.name,
        "preset_settings": preset.to_dict(),
        "methods": list(spec.methods),
        "seeds": [preset.seed + i for i in range(spec.seeds)],
        "protocol": spec.protocol,
        "split": spec.protocol,
        "split_options": _describe_split(prepared.get("split_options") or {}),
        "split_counts": prepared.get("split_counts"),
        "reference": REFERENCE_METHOD,
        "pretrained": str(models["pretrained"].output),
        "reward_model": str(models["reward"].output),
        "judge_model": str(models["judge"].output),
        "judge": _describe_ensemble(models["judge"], spec.judge_data),
        "training_ensemble": _describe_ensemble(models["reward"], "train"),
        "judge_data": spec.judge_data,
        "horizon": preset.horizon,
        "gamma": preset.gamma,
        "time_gap_s": preset.time_gap,
        "shared_across_seeds": list(SHARED_STAGES),
    }
    selection = preset.selection_training(spec.protocol)
    tuning_section = {
        "split": "validation",
        "metric": selection["metric_for_best_model"],
        "trials_per_method": preset.trials_per_method,
        "seeds": [preset.seed + i for i in range(min(preset.tuning_seeds, spec.seeds))],
        "max_epochs": preset.posttrain[REFERENCE_METHOD].get("num_train_epochs"),
        "max_steps": preset.posttrain[REFERENCE_METHOD].get("max_steps"),  # a step budget, if any, wins
        "eval_strategy": selection["eval_strategy"],
        "eval_steps": preset.eval_steps,
        "patience": preset.patience,
        "methods": tuning,
        "seed_allocation": _allocation_section(spec, tuning),
    }
    return {
        "schema_version": SCHEMA_VERSION,
        "config": config,
        "subsets": list(summary[NUM_USERS]),
        "metrics": list(METRICS),
        "num_users": summary[NUM_USERS],
        "num_targets": summary[NUM_TARGETS],
        "methods": summary["rows"],
        "tuning": tuning_section,
        "reward_table": tables["reward"],
        "judge_reward_table": tables["judge"],
        "stages": history,
        "wall_time_s": round(wall_time_s, 1),
        # What the whole pipeline costs, reused stages counted at the time they took when they ran (each once): a
        # rerun's wall time alone says nothing about it.
        "stage_time_s": stage_seconds(history),
    }


def _write_outputs(output_dir: Path, results: dict[str, Any]) -> str:
    """`results.json`, `results.md` and the figures (when matplotlib is installed); returns the markdown."""
    markdown = results_markdown(results)
    write_json_strict(output_dir / RESULTS_JSON, results)
    (output_dir / RESULTS_MD).write_text(markdown, encoding="utf-8")
    try:
        plot_improvements(results, output_dir / IMPROVEMENT_FIGURE)
        if "temperature" in results["tuning"]["methods"].get("asft", {}).get("grid", {}):
            plot_lambda_sweep(results, output_dir / LAMBDA_FIGURE)
        points = {name: diagnostics.JudgeRankingPoint(**row["judge_vs_ranking"])
                  for name, row in results.get("diagnostics", {}).get("rows", {}).items()}
        if points:
            # The points' ranking axis is the protocol's high-reward subset: leave-one-out has no trajectories.
            subset = selection_subset(results["config"]["protocol"])
            diagnostics.plot_judge_vs_ranking(points, output_dir / JUDGE_FIGURE, xlabel=f"NDCG@10 ({subset})")
    except ImportError:  # matplotlib is an optional dependency (the `dev` extra)
        logger.warning("matplotlib is not installed: no figures (pip install matplotlib); the tables are written")
    return markdown
