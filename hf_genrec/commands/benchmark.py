"""`hf-genrec benchmark`: the Netflix post's results table as one resumable command.

prepare -> pretrain -> reward ensemble (the methods train against it) -> judge ensemble (other seeds; only
for evaluation) -> every post-training method x seed, plus A-SFT's λ sweep -> evaluation of each model
(full-catalogue ranks and the judge rollout on the test split) -> statistics, `results.json`,
`results.md` and the figures.

Every step is a stage of `hf_genrec.benchmark.stages.StageStore`, keyed by a hash of its inputs (its
arguments and the keys of the stages it reads), so a second run with the same arguments reuses what is
finished and a changed argument recomputes only the stages that depend on it.

Seeds (`seeds=N`) vary post-training only: post-training seed i is the preset's seed + i. The pretrained
model and both reward ensembles are shared across seeds (they are the fixed starting point and environment
every method is compared on, and sharing them keeps the run N times cheaper than repeating everything).
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..benchmark.evaluation import evaluate_policy, load_evaluation
from ..benchmark.presets import DEFAULT_METHODS, REFERENCE_METHOD, BenchmarkPreset, get_preset
from ..benchmark.report import (
    IMPROVEMENT_FIGURE,
    LAMBDA_FIGURE,
    METRICS,
    RESULTS_JSON,
    RESULTS_MD,
    SCHEMA_VERSION,
    BenchmarkRow,
    plot_improvements,
    plot_lambda_sweep,
    results_markdown,
    summarize,
    write_json_strict,
)
from ..benchmark.stages import Stage, StageStore, file_fingerprint
from ..data import generate_synthetic_interactions, write_movielens_file
from ..data.prepared import load_prepared
from ..evaluation.metrics import SUBSETS
from ..recipes import build_training_config
from ..rewards.ensemble import ENSEMBLE_FILE
from ..workflows.posttrain import METHODS

logger = logging.getLogger(__name__)

__all__ = ["JUDGE_DATA", "benchmark", "model_fingerprint"]

JUDGE_DATA = ("train", "train+validation")
_DATA_DIR, _MODEL_DIR, _ENSEMBLE_DIR = "data", "model", "ensemble"


def model_fingerprint(directory: str | os.PathLike) -> str:
    """Content hash of a saved model or ensemble directory: its JSON and safetensors files, not checkpoints."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{str(directory)!r} is not a directory.")
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in (".json", ".safetensors")
                   and "checkpoints" not in p.relative_to(directory).parts)
    if not files:
        raise FileNotFoundError(f"{str(directory)!r} holds no model files (config.json, *.safetensors).")
    return "-".join(file_fingerprint(f)[:8] for f in files)


def _needs_reward_model(method: str, training: dict[str, Any], scratch: Path) -> bool:
    config_class, trainer_class, implied = METHODS[method]
    args = build_training_config(config_class, {**implied, **training, "output_dir": str(scratch)})
    return trainer_class.needs_reward_model(args)


def _reward_table_result(ensemble_dir: Path, data_dir: Path, split: str) -> dict[str, Any]:
    """The reward table of an ensemble: its `reward_metrics.json` if any, else computed on the test split."""
    import json

    from ..rewards import RewardEnsemble, format_reward_table, reward_table
    from ..workflows.reward import METRICS_FILE

    metrics_file = ensemble_dir / METRICS_FILE
    if metrics_file.is_file():
        table = json.loads(metrics_file.read_text(encoding="utf-8"))["table"]
    else:
        splits, _ = load_prepared(data_dir, split)
        table = reward_table(RewardEnsemble.from_pretrained(ensemble_dir), splits)
    return {"table": table, "markdown": format_reward_table(table)}


def _train_judge_on_train_validation(data_dir: Path, pretrained_dir: Path, output: Path, recipe: dict[str, Any],
                                     split: str) -> dict[str, Any]:
    """A judge ensemble trained on the training and validation events (the test targets stay held out).

    Validation RMSE can then no longer pick an epoch, so every member trains its full epochs.
    """
    from ..trainers import RewardConfig
    from ..workflows.reward import train_plus_validation, train_reward_ensemble

    splits, vocabulary = load_prepared(data_dir, split)
    training = {**recipe["training"], "output_dir": str(output / "checkpoints"), "load_best_model_at_end": False}
    args = build_training_config(RewardConfig, training)
    ensemble = train_reward_ensemble(
        pretrained_dir, train_plus_validation(splits), splits["validation"], args, vocabulary=vocabulary,
        model_overrides=recipe["model"],
        trained_on={"data": str(data_dir), "split": split, "training_split": "train+validation", "judge": True,
                    "pretrained_model": str(pretrained_dir)},
    )
    ensemble.save_pretrained(output / _ENSEMBLE_DIR)
    return {"ensemble_size": ensemble.num_members, "seeds": ensemble.seeds}


def _check_separate(reward_dir: Path, judge_dir: Path) -> None:
    """The judge must not be the ensemble the methods trained against (nor share a member with it)."""
    import json

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


def _describe_ensemble(directory: Path, data: str, given: bool) -> str:
    import json

    manifest = json.loads((directory / ENSEMBLE_FILE).read_text(encoding="utf-8"))
    seeds = manifest.get("seeds") or []
    seed_text = f"seeds {seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds}"
    origin = f"given ({directory})" if given else f"trained on {data} events"
    return f"{manifest['num_members']}-member ensemble, {seed_text}, {origin}"


def benchmark(
    output_dir: str | os.PathLike = "runs/benchmark",
    *,
    input_path: str | os.PathLike | None = None,
    format: str = "movielens",
    sep: str | None = None,
    columns: str | None = None,
    header: bool = False,
    catalog: str | os.PathLike | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: str = "keep",
    preset: str | BenchmarkPreset = "tiny",
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    seeds: int = 1,
    split: str = "leave-one-out",
    pretrained: str | os.PathLike | None = None,
    reward_model: str | os.PathLike | None = None,
    judge_model: str | os.PathLike | None = None,
    judge_data: str = "train",
    lambdas: tuple[float, ...] | list[float] | None = None,
    command: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the post-training benchmark and write `results.json`, `results.md` and the figures.

    Args:
        output_dir: DIR; stages live under `DIR/stages/<stage>-<key>/`, results at the top.
        input_path: a ratings file (`--format movielens` or `csv` with the loader flags of `prepare`); without
            it, the preset's synthetic data is generated into DIR.
        preset: `tiny`, `quick`, `full` (see `hf_genrec.benchmark.presets`) or a `BenchmarkPreset`.
        methods: post-training methods; reward-weighted BC, the reference, is always run.
        seeds: post-training seeds (the pretrained model and reward ensembles are shared).
        split: `leave-one-out` or `temporal`.
        pretrained: reuse this pretrained recommender instead of pretraining (same item vocabulary).
        reward_model / judge_model: reuse these reward ensembles instead of training them (they must differ).
        judge_data: `train` or `train+validation`: the events the judge ensemble trains on.
        lambdas: A-SFT temperatures of the λ sweep (default: the preset's; empty: no sweep).
        command: the command line recorded in the results (default: this process's).

    Returns:
        The content of `results.json` (plus `markdown`).
    """
    start = time.time()
    preset = get_preset(preset)
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}.")
    if REFERENCE_METHOD not in methods:
        logger.info("adding %s: every result is reported against it", REFERENCE_METHOD)
        methods.insert(0, REFERENCE_METHOD)
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}.")
    if judge_data not in JUDGE_DATA:
        raise ValueError(f"--judge-data must be one of {JUDGE_DATA}, got {judge_data!r}.")
    lambdas = tuple(preset.lambdas if lambdas is None else lambdas) if "asft" in methods else ()
    if any(not lam > 0 for lam in lambdas):
        raise ValueError(f"λ values must be > 0, got {list(lambdas)}.")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if command is None:
        command = "hf-genrec " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "hf-genrec" else "(Python API)"
    store = StageStore(output_dir)
    sweep_seeds = min(preset.sweep_seeds or seeds, seeds)
    main_temperature = preset.method_training.get("asft", {}).get("temperature", 1.0)
    extra_sweep = [lam for lam in lambdas if lam != main_temperature]
    num_runs = seeds * len(methods) + sweep_seeds * len(extra_sweep)
    bar = tqdm(total=4 + 2 * num_runs + 1, desc="benchmark stages", unit="stage", disable=not show_progress)

    def run(name: str, inputs: dict[str, Any], function, label: str = "") -> Stage:
        bar.set_postfix_str(label or name)
        stage = store.run(name, inputs, function, label)
        bar.update(1)
        return stage

    # 1. data ------------------------------------------------------------------------------------------
    from ..data.prepared import prepare_dataset

    if input_path is not None:
        input_path = Path(input_path)
        if not input_path.is_file():
            raise FileNotFoundError(f"--input {str(input_path)!r} does not exist.")
        if catalog is None and format == "movielens" and (input_path.parent / "movies.dat").is_file():
            catalog = input_path.parent / "movies.dat"
        data_inputs = {"input": str(input_path.resolve()), "input_sha256": file_fingerprint(input_path),
                       "format": format, "sep": sep, "columns": columns, "header": header,
                       "catalog_sha256": file_fingerprint(catalog) if catalog else None,
                       "rating_scale": list(rating_scale) if rating_scale else None, "duplicates": duplicates}
        dataset_name = str(input_path)

        def prepare(path: Path):
            return prepare_dataset(input_path, path / _DATA_DIR, format=format, sep=sep, columns=columns,
                                   header=header, catalog=catalog, rating_scale=rating_scale, duplicates=duplicates)
    else:
        data_inputs = {"synthetic": preset.synthetic}
        dataset_name = "embedded synthetic data (" + ", ".join(f"{k}={v}" for k, v in preset.synthetic.items()) + ")"

        def prepare(path: Path):
            ratings = write_movielens_file(generate_synthetic_interactions(**preset.synthetic),
                                           path / "raw" / "ratings.dat")
            return prepare_dataset(ratings, path / _DATA_DIR, format="movielens")

    data = run("prepare", data_inputs, prepare)
    data_dir = data.path / _DATA_DIR

    # 2. pretrained model ------------------------------------------------------------------------------
    from ..workflows.pretrain import pretrain

    if pretrained is not None:
        pretrained_dir = Path(pretrained).resolve()
        if not (pretrained_dir / "config.json").is_file():
            raise FileNotFoundError(f"--pretrained {str(pretrained_dir)!r} holds no config.json (not a saved model).")
        pre = run("pretrained", {"external": str(pretrained_dir), "fingerprint": model_fingerprint(pretrained_dir)},
                  lambda path: {"model_dir": str(pretrained_dir)}, label="pretrained (given)")
    else:
        pretrain_recipe = preset.pretrain_recipe(split)

        def do_pretrain(path: Path):
            report = pretrain(data_dir, path / _MODEL_DIR, recipe=pretrain_recipe, overwrite=True)
            return {"test": report["test"], "best_epoch": report["best_epoch"],
                    "total_runtime_s": report["total_runtime_s"]}

        pre = run("pretrain", {"data": data.key, "recipe": pretrain_recipe}, do_pretrain)
        pretrained_dir = pre.path / _MODEL_DIR

    # 3./4. the training reward ensemble and the judge ---------------------------------------------------
    from ..workflows.reward import reward

    def ensemble_stage(name: str, given, recipe: dict[str, Any], training_split: str) -> tuple[Stage, Path]:
        if given is not None:
            given = Path(given).resolve()
            stage = run(name, {"external": str(given), "fingerprint": model_fingerprint(given)},
                        lambda path: _reward_table_result(given, data_dir, split), label=f"{name} (given)")
            return stage, given

        def train(path: Path):
            if training_split == "train+validation":
                return _train_judge_on_train_validation(data_dir, pretrained_dir, path, recipe, split)
            report = reward(data_dir, pretrained_dir, path / _ENSEMBLE_DIR, recipe=recipe, overwrite=True)
            return {"table": report["table"], "markdown": report["markdown"],
                    "train_runtime_s": report["train_runtime_s"], "seeds": report["seeds"]}

        inputs = {"data": data.key, "pretrained": pre.key, "recipe": recipe, "training_split": training_split}
        stage = run(name, inputs, train)
        return stage, stage.path / _ENSEMBLE_DIR

    reward_stage, reward_dir = ensemble_stage("reward", reward_model, preset.reward_recipe(split), "train")
    judge_stage, judge_dir = ensemble_stage("judge", judge_model, preset.reward_recipe(split, judge=True), judge_data)
    _check_separate(reward_dir, judge_dir)

    # 5./6. post-training runs and their evaluations ---------------------------------------------------------
    from ..rewards import RewardEnsemble
    from ..workflows.posttrain import posttrain

    splits, _ = load_prepared(data_dir, split)
    judge = None
    eval_settings = {"data": data.key, "split": split, "judge": judge_stage.key, "horizon": preset.horizon,
                     "gamma": preset.gamma, "time_gap": preset.time_gap}

    def evaluate(model_stage: Stage, model_dir: Path, label: str) -> Stage:
        def do_evaluate(path: Path):
            nonlocal judge
            if judge is None:
                judge = RewardEnsemble.from_pretrained(judge_dir)
            evaluation = evaluate_policy(model_dir, judge, splits["test"], batch_size=preset.eval_batch_size,
                                         horizon=preset.horizon, gamma=preset.gamma, time_gap=preset.time_gap,
                                         show_progress=show_progress)
            evaluation.save(path)
            metrics = evaluation.ranking.metrics(subsets=SUBSETS)
            return {"all": metrics["all"], "judge": evaluation.judge.mean(),
                    "judge_spread": evaluation.judge.spread()}

        return run("evaluate", {**eval_settings, "model": model_stage.key}, do_evaluate, label=f"evaluate {label}")

    rows: list[BenchmarkRow] = []
    pre_eval = evaluate(pre, pretrained_dir, "pretrained")
    rows.append(BenchmarkRow(name="pretrained", method="pretrained", kind="pretrained",
                             evaluations=[load_evaluation(pre_eval.path)]))

    scratch = output_dir / "stages" / ".config-check"
    base_seed = int(preset.posttrain.get("seed", 42))

    def post_train(method: str, recipe: dict[str, Any], seed: int, label: str) -> Stage:
        uses_reward = _needs_reward_model(method, recipe["training"], scratch)
        inputs = {"data": data.key, "pretrained": pre.key, "method": method, "recipe": recipe, "seed": seed,
                  "reward": reward_stage.key if uses_reward else None}

        def do_posttrain(path: Path):
            report = posttrain(data_dir, pretrained_dir, path / _MODEL_DIR, method=method,
                               reward_model=str(reward_dir) if uses_reward else None, recipe=recipe, seed=seed,
                               overwrite=True, evaluate=False)  # the evaluate stage ranks the test split
            return {"global_steps": report["global_steps"],
                    "train_runtime_s": report["train_runtime_s"], "last_train_log": report["last_train_log"]}

        stage = run("posttrain", inputs, do_posttrain, label=label)
        return evaluate(stage, stage.path / _MODEL_DIR, label)

    # Seed-major order: every method (and the sweep) for the first seed before the next seed, so that an
    # interrupted run already holds complete tables for its first seeds.
    plan = [(method, method, "method", {}) for method in methods]
    plan += [(f"asft@{lam:g}", "asft", "sweep", {"temperature": lam}) for lam in extra_sweep]
    evaluations: dict[str, list] = {name: [] for name, *_ in plan}
    for i in range(seeds):
        seed = base_seed + i
        for name, method, kind, overrides in plan:
            if kind == "sweep" and i >= sweep_seeds:
                continue
            recipe = preset.method_recipe(method, split, **overrides)
            evaluations[name].append((seed, load_evaluation(post_train(method, recipe, seed, f"{name} seed {seed}").path)))
    for name, method, kind, overrides in plan:
        recipe = preset.method_recipe(method, split, **overrides)
        rows.append(BenchmarkRow(
            name=name, method=method, kind=kind, evaluations=[e for _, e in evaluations[name]],
            seeds=[seed for seed, _ in evaluations[name]], hyperparameters=recipe["training"],
            temperature=recipe["training"].get("temperature") if method == "asft" else None,
        ))
    bar.close()

    # 7. statistics and outputs --------------------------------------------------------------------------
    logger.info("computing statistics (%d bootstrap resamples)", preset.bootstrap_resamples)
    summary = summarize(rows, REFERENCE_METHOD, resamples=preset.bootstrap_resamples)
    table_rows = {name: row for name, row in summary["rows"].items() if row["kind"] != "sweep"}
    sweep = sorted(
        [{"temperature": row["temperature"], "row": name, "seeds": row["seeds"], "subsets": row["subsets"]}
         for name, row in summary["rows"].items()
         if row["method"] == "asft" and row["temperature"] in lambdas],
        key=lambda entry: entry["temperature"],
    )
    reward_result = reward_stage.result
    judge_result = judge_stage.result
    results = {
        "schema_version": SCHEMA_VERSION,
        "config": {
            "dataset": dataset_name,
            "command": command,
            "preset": preset.name,
            "preset_settings": preset.to_dict(),
            "methods": methods,
            "seeds": [base_seed + i for i in range(seeds)],
            "split": split,
            "reference": REFERENCE_METHOD,
            "pretrained": str(pretrained_dir),
            "reward_model": str(reward_dir),
            "judge_model": str(judge_dir),
            "judge": _describe_ensemble(judge_dir, judge_data, given=judge_model is not None),
            "training_ensemble": _describe_ensemble(reward_dir, "train", given=reward_model is not None),
            "judge_data": judge_data,
            "horizon": preset.horizon,
            "gamma": preset.gamma,
            "time_gap_s": preset.time_gap,
            "lambdas": list(lambdas),
            "shared_across_seeds": ["prepare", "pretrain", "reward", "judge"],
        },
        "subsets": list(SUBSETS),
        "metrics": list(METRICS),
        "num_users": summary["num_users"],
        "methods": table_rows,
        "lambda_sweep": sweep,
        "reward_table": {"table": reward_result["table"], "markdown": reward_result["markdown"]}
        if "table" in reward_result else None,
        "judge_reward_table": {"table": judge_result["table"], "markdown": judge_result["markdown"]}
        if "table" in judge_result else None,
        "stages": store.history,
        "wall_time_s": round(time.time() - start, 1),
        # What the whole pipeline costs, reused stages counted at the time they took when they ran: a rerun's
        # wall time alone says nothing about it.
        "stage_time_s": round(sum(stage.get("seconds") or 0.0 for stage in store.history), 1),
    }
    markdown = results_markdown(results)
    write_json_strict(output_dir / RESULTS_JSON, results)
    (output_dir / RESULTS_MD).write_text(markdown, encoding="utf-8")
    try:
        plot_improvements(results, output_dir / IMPROVEMENT_FIGURE)
        if sweep:
            plot_lambda_sweep(results, output_dir / LAMBDA_FIGURE)
    except ImportError:  # matplotlib is an optional dependency (the `dev` extra)
        logger.warning("matplotlib is not installed: no figures (pip install matplotlib); the tables are written")
    logger.info("benchmark finished in %.1f min: %s", results["wall_time_s"] / 60, output_dir / RESULTS_MD)
    return {**results, "markdown": markdown}
