"""The post-training benchmark as a sequence of resumable stages (`hf-genrec benchmark`).

    synthesize (without --input) -> prepare (and fix the protocol's split) -> pretrain (or --pretrained)
    -> reward (or --reward-model)
    -> judge (or --judge-model; other seeds, only for evaluation)
    -> tuning: posttrain every trial of every method's grid on the first `tuning_seeds` seeds, each run ranking the
       validation split after every epoch and keeping its best checkpoint; per method, the trial with the best
       mean validation score is chosen
    -> posttrain the chosen trials on every seed (the tuning seeds' runs are reused) -> evaluate the chosen models
    (full-catalogue ranks and the judge rollout on the test split, read once: losing trials are never evaluated on
    it) -> statistics, `results.json`, `results.md` and the figures.

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

from datasets import load_from_disk
from tqdm.auto import tqdm

from ..data import generate_synthetic_interactions, write_movielens_file
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
from ..evaluation.metrics import NUM_USERS
from ..recipes import build_training_config
from ..rewards import RewardEnsemble, format_reward_table, reward_table
from ..rewards.ensemble import ENSEMBLE_FILE
from ..trainers import RewardConfig
from ..utils.io import write_json
from ..workflows.common import CHECKPOINTS_DIR
from ..workflows.posttrain import METHODS, posttrain
from ..workflows.pretrain import pretrain
from ..workflows.reward import METRICS_FILE, reward, train_plus_validation, train_reward_ensemble
from .evaluation import evaluate_policy, load_evaluation
from .presets import DEFAULT_METHODS, FUTURE_SPLIT, REFERENCE_METHOD, BenchmarkPreset
from .report import (
    IMPROVEMENT_FIGURE,
    LAMBDA_FIGURE,
    METRICS,
    NUM_TARGETS,
    RESULTS_JSON,
    RESULTS_MD,
    SCHEMA_VERSION,
    BenchmarkRow,
    describe_hyperparameters,
    plot_improvements,
    plot_lambda_sweep,
    results_markdown,
    row_users,
    summarize,
    write_json_strict,
)
from .stages import Given, Stage, StageStore, stage

logger = logging.getLogger(__name__)

__all__ = ["JUDGE_DATA", "PROTOCOLS", "BenchmarkSpec", "needs_reward_model", "run_benchmark"]

# The evaluation protocols (`--protocol`), the post's first; `temporal` stays reachable through `--split`.
PROTOCOLS = ("future", "leave-one-out")

# The events the judge ensemble may train on (`--judge-data`).
JUDGE_DATA = ("train", "train+validation")
# Stages whose outputs every post-training seed shares.
SHARED_STAGES = ("prepare", "pretrain", "reward", "judge")


@dataclass(frozen=True)
class BenchmarkSpec:
    """What one benchmark run compares (the checked arguments of `hf-genrec benchmark`).

    Attributes:
        preset: the models, budgets and statistics settings.
        methods: post-training methods, `REFERENCE_METHOD` among them.
        seeds: number of post-training seeds.
        protocol: the split every stage reads: `future`, `leave-one-out` (or the older `temporal`).
        ratings: a ratings file (`None`: the preset's synthetic data) and `loader`, its `prepare_dataset` flags.
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


@stage("pretrain", output="model")
def pretrain_model(output: Path, *, data: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    report = pretrain(data, output, recipe=recipe, overwrite=True)
    return {"test": report["test"], "best_epoch": report["best_epoch"],
            "total_runtime_s": report["total_runtime_s"]}


@stage("reward", output="ensemble")
def train_reward_model(output: Path, *, data: Path, pretrained: Path, recipe: dict[str, Any]) -> dict[str, Any]:
    """The reward ensemble the methods train against, and its reward table on the test split."""
    report = reward(data, pretrained, output, recipe=recipe, overwrite=True)
    return {"table": report["table"], "markdown": report["markdown"],
            "train_runtime_s": report["train_runtime_s"], "seeds": report["seeds"]}


@stage("judge", output="ensemble")
def train_judge(output: Path, *, data: Path, pretrained: Path, recipe: dict[str, Any], judge_data: str) -> dict:
    """The judge: a separate ensemble (other seeds) on the training events, or on the training and
    validation events (the test targets stay held out; validation RMSE can then no longer pick an epoch, so
    every member trains its full epochs)."""
    if judge_data == "train":
        return train_reward_model(output, data=data, pretrained=pretrained, recipe=recipe)
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
    users = row_users(evaluation)
    # `ranking_metrics` counts rows; a `future` test user has H of them.
    metrics.update({NUM_USERS: int(users.max()) + 1 if users.size else 0, NUM_TARGETS: int(users.size)})
    return {"all": metrics, "judge": evaluation.judge.mean(), "judge_spread": evaluation.judge.spread()}


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
        if isinstance(ensemble, Given):
            ensemble = store.run(score_given_ensemble, ensemble=ensemble, data=data, split=split,
                                 label=f"{role} (given)")
        result = ensemble.result
        tables[role] = {"table": result["table"], "markdown": result["markdown"]} if "table" in result else None
    return reward_model, judge, tables


def select_trial(scores: list[float]) -> int:
    """The index of the best validation score (NaN, a subset without users, counts as the worst; ties: the first)."""
    ranked = [-math.inf if score is None or math.isnan(score) else score for score in scores]
    return max(range(len(ranked)), key=lambda i: (ranked[i], -i))


def _trial_run(stage: Stage, seed: int) -> dict[str, Any]:
    """What one tuning run records: its seed, best validation score, best step and epoch, steps and history."""
    result = stage.result
    selection = result.get("selection") or {}
    return {"seed": seed, "validation": selection.get("best_metric"), "best_step": selection.get("best_step"),
            "best_epoch": selection.get("best_epoch"), "global_steps": result.get("global_steps"),
            "epochs_trained": result.get("epochs_trained"), "history": selection.get("history", [])}


def _posttrain_run(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                   reward_model: Stage | Given, method: str, hyperparameters: dict[str, Any], seed: int,
                   label: str) -> Stage:
    recipe = spec.preset.trial_recipe(method, spec.protocol, **hyperparameters)
    uses_reward = needs_reward_model(method, recipe["training"])
    return store.run(posttrain_model, data=data, pretrained=pretrained, method=method, recipe=recipe, seed=seed,
                     reward_model=reward_model if uses_reward else None, label=label)


def _tune(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
          reward_model: Stage | Given) -> dict[str, dict[str, Any]]:
    """Every trial of every method on the tuning seeds, and the choice: per method `grid`, `trials` (each with its
    `hyperparameters`, `runs` per seed and `validation_mean`), `chosen` (its index) and `chosen_hyperparameters`.

    Only validation is read: the runs' best-checkpoint scores on the high-reward validation subset."""
    preset = spec.preset
    seeds = [preset.seed + i for i in range(min(preset.tuning_seeds, spec.seeds))]
    tuning = {}
    for method in spec.methods:
        trials = []
        for hyperparameters in preset.trials(method):
            runs = []
            for seed in seeds:
                label = f"{method} [{describe_hyperparameters(hyperparameters)}] seed {seed}"
                run = _posttrain_run(store, spec, data, pretrained, reward_model, method, hyperparameters, seed, label)
                runs.append(_trial_run(run, seed))
            scores = [run["validation"] for run in runs]
            mean = math.nan if any(v is None for v in scores) else float(sum(scores) / len(scores))
            trials.append({"hyperparameters": hyperparameters, "validation_mean": mean, "runs": runs})
        chosen = select_trial([trial["validation_mean"] for trial in trials])
        for i, trial in enumerate(trials):
            trial["chosen"] = i == chosen
        grid = {name: list(values) for name, values in preset.grids.get(method, {}).items()}
        best = trials[chosen]["hyperparameters"]
        tuning[method] = {"grid": grid, "trials": trials, "chosen": chosen, "chosen_hyperparameters": best}
        logger.info("%s: trial %d chosen on validation (%s)", method, chosen, describe_hyperparameters(best))
    return tuning


def _post_train(store: StageStore, spec: BenchmarkSpec, data: Stage, pretrained: Stage | Given,
                reward_model: Stage | Given, evaluate, tuning: dict[str, dict[str, Any]]) -> list[BenchmarkRow]:
    """Each method's chosen trial on every seed (the tuning seeds' runs reused), evaluated on the test split: one
    `BenchmarkRow` per method."""
    evaluations: dict[str, list] = {method: [] for method in spec.methods}
    # Seed-major order: every method for the first seed before the next seed, so that an interrupted run already
    # holds complete tables for its first seeds.
    for i in range(spec.seeds):
        seed = spec.preset.seed + i
        for method in spec.methods:
            chosen = tuning[method]["chosen_hyperparameters"]
            model = _posttrain_run(store, spec, data, pretrained, reward_model, method, chosen, seed,
                                   label=f"{method} [{describe_hyperparameters(chosen)}, chosen] seed {seed}")
            evaluated = evaluate(model=model, label=f"evaluate {method} seed {seed}")
            evaluations[method].append((seed, load_evaluation(evaluated.output)))
    rows = []
    for method in spec.methods:
        training = spec.preset.trial_recipe(method, spec.protocol, **tuning[method]["chosen_hyperparameters"])
        rows.append(BenchmarkRow(
            name=method, method=method, kind="method", evaluations=[e for _, e in evaluations[method]],
            seeds=[seed for seed, _ in evaluations[method]], hyperparameters=training["training"],
            temperature=training["training"].get("temperature") if method == "asft" else None,
        ))
    return rows


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
    num_stages = (spec.ratings is None) + 1 + (spec.pretrained is None) + judge_backbone + 2 + 1 + tuning_runs + \
        2 * len(spec.methods) * spec.seeds
    with tqdm(total=num_stages, desc="benchmark stages", unit="stage", disable=not show_progress) as bar:
        store = StageStore(output_dir, progress=bar)
        ratings = spec.ratings or store.run(synthesize, synthetic=preset.synthetic)
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
        tuning = _tune(store, spec, data, pretrained, reward_model)
        rows += _post_train(store, spec, data, pretrained, reward_model, evaluate, tuning)

    logger.info("computing statistics (%d bootstrap resamples)", preset.bootstrap_resamples)
    summary = summarize(rows, REFERENCE_METHOD, resamples=preset.bootstrap_resamples)
    models = {"pretrained": pretrained, "reward": reward_model, "judge": judge}
    results = _results(spec, summary, models, tables, store.history, data.result, tuning,
                       wall_time_s=time.time() - start)
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
    return "embedded synthetic data (" + ", ".join(f"{k}={v}" for k, v in spec.preset.synthetic.items()) + ")"


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
        # What the whole pipeline costs, reused stages counted at the time they took when they ran: a rerun's
        # wall time alone says nothing about it.
        "stage_time_s": round(sum(stage.get("seconds") or 0.0 for stage in history), 1),
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
    except ImportError:  # matplotlib is an optional dependency (the `dev` extra)
        logger.warning("matplotlib is not installed: no figures (pip install matplotlib); the tables are written")
    return markdown
