"""The benchmark's statistics, `results.json` / `results.md` and figures, from saved per-row predictions.

Users, not rows: on the `future` protocol each test user has H evaluation rows (one per event of their test
window), on leave-one-out one. Every metric is first averaged over a user's rows in the subset into one per-user
value; `num_users` counts users and `num_targets` rows. Statistics, per row (method), test subset and metric:

- `value`: the metric's mean over the subset's users, averaged over seeds; `std`: its sample standard
  deviation across seeds (`ddof=1`; `None` with one seed); `per_seed`: each seed's value.
- `pct_vs_rwbc` and `ci95`: the % change against reward-weighted BC with a **paired** bootstrap 95% interval
  (`bootstrap_relative_change_ci` on the (seeds, users) values): each resample draws the seeds and the test users
  with replacement, so the interval includes the variance of training as well as that of the test users
  (`ci95_over` says which: `seeds x users`, or `users` with one seed). Seed i of a row is paired with seed i of
  reward-weighted BC (the same post-training seed). `pct_vs_rwbc_per_seed` (row seed i against reward-weighted
  BC seed i) and `pct_vs_rwbc_std` give the seeds' own variation. `ci95_kind` is `ratio` (the resampled relative
  change's percentiles) or, where some resample's reference mean is 0 (a sparse subset) and that interval is
  undefined, `difference / reference mean`: the percentiles of the same resamples' difference of means, in % of the
  reference's mean (`bootstrap_difference_ci`), an interval on the same side of 0 as the difference.
- the judge score additionally has `spread`: the standard deviation across judge members of their mean
  scores over the subset's rows (`JudgeScores.spread`), averaged over seeds, and `ci95_value`, the interval of
  its value (the same bootstrap).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..evaluation import bootstrap_difference_ci, bootstrap_mean_ci, bootstrap_relative_change_ci
from ..evaluation.diagnostics import case_users
from ..evaluation.metrics import (
    DEFAULT_KS,
    NUM_USERS,
    SUBSET_ALL,
    SUBSET_HIGH_REWARD_TARGET,
    SUBSET_HIGH_REWARD_TRAJECTORY,
    ranking_metric_names,
)
from ..utils.io import write_json
from .evaluation import PolicyEvaluation
from .formatting import format_pct
from .verdict import claims_markdown

__all__ = [
    "JUDGE",
    "METRICS",
    "RESULTS_JSON",
    "RESULTS_MD",
    "NUM_TARGETS",
    "TRUE_VALUE",
    "BenchmarkRow",
    "ablation_markdown",
    "diagnostics_markdown",
    "describe_hyperparameters",
    "per_user_values",
    "plot_improvements",
    "plot_lambda_sweep",
    "results_markdown",
    "seed_allocation_markdown",
    "summarize",
    "tuning_markdown",
    "world_markdown",
    "write_json_strict",
]

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
IMPROVEMENT_FIGURE = "improvement_vs_rwbc.png"
LAMBDA_FIGURE = "asft_lambda_sweep.png"
JUDGE_FIGURE = "judge_vs_ranking.png"
# 2: `tuning` (every trial's validation scores and the choice) replaced the test-split `lambda_sweep`.
SCHEMA_VERSION = 2
# Evaluation rows (targets) of a subset; `NUM_USERS` counts its users.
NUM_TARGETS = "num_targets"
JUDGE = "judge"
METRICS: tuple[str, ...] = (*ranking_metric_names(DEFAULT_KS), JUDGE)
# The world's true value V* of a model's policy at each test target (`world_value`): only on a simulated world.
TRUE_VALUE = "true_value"
LABELS = {**{name: name.upper() for name in ranking_metric_names(DEFAULT_KS)}, JUDGE: "judge", TRUE_VALUE: "true V*"}
METHOD_LABELS = {"pretrained": "pretrained (no post-training)", "sft": "SFT", "rwbc": "reward-weighted BC",
                 "asft": "A-SFT", "dpo": "RS-DPO", "ipo": "RS-IPO", "cql": "CQL", "ppo": "PPO"}


@dataclass
class BenchmarkRow:
    """One line of the results: a method (or the pretrained model) and its evaluations, one per seed."""

    name: str
    method: str
    kind: str  # "pretrained", "method" or "ablation"
    evaluations: list[PolicyEvaluation]
    seeds: list[int] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    temperature: float | None = None
    models: list[Any] = field(default_factory=list)  # the saved model of each seed (a stage), for the diagnostics
    recipe: dict[str, Any] | None = None  # the post-training recipe of its runs
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the tilt-matched control's reward power and tilt
    true_values: list[np.ndarray] = field(default_factory=list)  # per seed, V* at each test row (simulated world)


def per_user_values(evaluation: PolicyEvaluation, subset: str,
                    row_values: dict[str, np.ndarray] | None = None) -> tuple[dict[str, np.ndarray], int]:
    """(`{metric: (U_subset,) float64}`, number of rows): the ranking metrics and the judge score of each user of
    `subset`, each the mean over the user's rows in the subset (users in dataset order). `row_values`
    (`{name: (N,) values}`, one per test row in dataset order, e.g. `TRUE_VALUE`) are averaged the same way."""
    mask = evaluation.ranking.subset_mask(subset).numpy()
    rows = {name: v.numpy() for name, v in evaluation.ranking.per_user_metrics(subset, DEFAULT_KS).items()}
    rows[JUDGE] = evaluation.judge.scores[torch.from_numpy(mask)].double().numpy()
    rows.update({name: np.asarray(values, dtype=np.float64)[mask] for name, values in (row_values or {}).items()})
    _, users = np.unique(case_users(evaluation.ranking)[mask], return_inverse=True)  # (N_subset,) in 0..U_subset-1
    counts = np.bincount(users)
    values = {name: np.bincount(users, weights=v, minlength=counts.size) / counts for name, v in rows.items()}
    return values, int(mask.sum())


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _relative(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / reference if reference and not math.isnan(reference) else math.nan


def _std(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _row_values(row: BenchmarkRow, seed: int) -> dict[str, np.ndarray]:
    """The per-test-row values of seed index `seed` of `row` besides its evaluation (`TRUE_VALUE` when measured)."""
    return {TRUE_VALUE: row.true_values[seed]} if row.true_values else {}


def _summarize_row(row: BenchmarkRow, reference: BenchmarkRow, subset: str, resamples: int) -> dict[str, Any]:
    per_seed_values = [per_user_values(e, subset, _row_values(row, i)) for i, e in enumerate(row.evaluations)]
    arrays = [values for values, _ in per_seed_values]
    # Seed i of the row against seed i of the reference (the same post-training seed; a row with fewer seeds
    # runs the reference's first ones).
    references = [per_user_values(reference.evaluations[i % len(reference.evaluations)], subset,
                                  _row_values(reference, i % len(reference.evaluations)))[0]
                  for i in range(len(arrays))]
    masks = [e.ranking.subset_mask(subset) for e in row.evaluations]
    metrics: dict[str, Any] = {}
    for metric in (*METRICS, TRUE_VALUE) if row.true_values and reference.true_values else METRICS:
        values = np.stack([a[metric] for a in arrays])  # (S, U_subset)
        reference_values = np.stack([r[metric] for r in references])  # (S, U_subset)
        per_seed = [_mean(v) for v in values]
        change, low, high = bootstrap_relative_change_ci(values, reference_values, num_resamples=resamples)
        interval = "ratio"
        if math.isnan(low) and reference_values.size and reference_values.mean() > 0:
            # Some resample's reference mean is 0 (a sparse subset): the same resamples' difference, in % of the
            # reference's mean, which has the difference's sign.
            low, high = (100.0 * bound / reference_values.mean() for bound in bootstrap_difference_ci(
                values, reference_values, num_resamples=resamples)[1:])
            interval = "difference / reference mean"
        per_seed_change = [_relative(_mean(v), _mean(r)) for v, r in zip(values, reference_values)]
        entry = {"value": float(np.mean(per_seed)), "std": _std(per_seed), "per_seed": per_seed,
                 "pct_vs_rwbc": change, "ci95": [low, high],
                 "ci95_over": "seeds x users" if len(values) > 1 else "users", "ci95_kind": interval,
                 "pct_vs_rwbc_per_seed": per_seed_change, "pct_vs_rwbc_std": _std(per_seed_change)}
        if metric in (JUDGE, TRUE_VALUE):
            entry["ci95_value"] = list(bootstrap_mean_ci(values, num_resamples=resamples)[1:])
        if metric == JUDGE:
            spreads = [e.judge.spread(m) for e, m in zip(row.evaluations, masks)]
            entry["spread"] = float(np.mean(spreads))
            entry["spread_per_seed"] = spreads
        metrics[metric] = entry
    return {NUM_USERS: int(arrays[0][JUDGE].size), NUM_TARGETS: per_seed_values[0][1], "metrics": metrics}


def summarize(rows: list[BenchmarkRow], reference: str = "rwbc", *, resamples: int = 1000,
              subsets: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Per row, subset and metric: value, std across seeds, % vs `reference` with its paired bootstrap interval over
    seeds and users (see the module docstring).

    `subsets` defaults to those of the test rows (`RankingPredictions.default_subsets`: `high_reward_trajectory`
    and the accumulated-reward quartiles with test windows, `long_history` without).

    Returns `{"num_users": {subset: users}, "num_targets": {subset: rows}, "rows": {name: {...}}}`.
    """
    by_name = {row.name: row for row in rows}
    if reference not in by_name:
        raise ValueError(f"the reference method {reference!r} is not among the rows {list(by_name)}.")
    reference_row = by_name[reference]
    if subsets is None:
        subsets = reference_row.evaluations[0].ranking.default_subsets()
    sizes = {len(e.ranking) for row in rows for e in row.evaluations}
    if len(sizes) != 1:
        raise ValueError(f"the rows were evaluated on different numbers of test users: {sorted(sizes)}.")
    summary: dict[str, Any] = {"rows": {}}
    for row in rows:
        summary["rows"][row.name] = {
            "method": row.method, "kind": row.kind, "seeds": row.seeds, "temperature": row.temperature,
            "hyperparameters": row.hyperparameters, **row.details,
            "subsets": {subset: _summarize_row(row, reference_row, subset, resamples) for subset in subsets},
        }
        if row.true_values and reference_row.true_values and SUBSET_ALL in subsets:
            # The headline of a simulated world, on every test user (the subsets hold it per subset as well).
            entry = summary["rows"][row.name]
            entry[TRUE_VALUE] = entry["subsets"][SUBSET_ALL]["metrics"][TRUE_VALUE]
    for count in (NUM_USERS, NUM_TARGETS):
        summary[count] = {subset: summary["rows"][reference]["subsets"][subset][count] for subset in subsets}
    return summary


# ------------------------------------------------------------------------------------------------ output
def _clean(value: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_strict(path: str | os.PathLike, payload: dict[str, Any]) -> str:
    """Write `payload` as strict JSON (NaN as null), atomically (`write_json`)."""
    return write_json(path, _clean(payload))


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _label(row_name: str, row: dict[str, Any]) -> str:
    label = METHOD_LABELS.get(row["method"], row["method"])
    if row["method"] == "asft" and row.get("temperature") is not None:
        label += f" (λ={row['temperature']:g})"
    return label


def _value_cell(entry: dict[str, Any], metric: str) -> str:
    cell = _fmt(entry["value"])
    if entry.get("std") is not None:
        cell += f" ± {_fmt(entry['std'])}"
    if metric == JUDGE and entry.get("spread") is not None:
        cell += f" (spread {_fmt(entry['spread'], 3)})"
    return cell


def _pct_cell(entry: dict[str, Any]) -> str:
    low, high = entry["ci95"]
    cell = f"{format_pct(entry['pct_vs_rwbc'])}% [{format_pct(low)}, {format_pct(high)}]"
    if entry.get("ci95_kind", "ratio") != "ratio":
        cell += "†"
    if entry.get("pct_vs_rwbc_std") is not None:
        cell += f" (seeds ± {entry['pct_vs_rwbc_std']:.1f})"
    return cell


def _table(rows: dict[str, Any], subset: str, cell, metrics: tuple[str, ...] | None = None) -> list[str]:
    if metrics is None:  # the true-value column when every row has it (a simulated world's run)
        measured = rows and all(TRUE_VALUE in row["subsets"][subset]["metrics"] for row in rows.values())
        metrics = (*METRICS, TRUE_VALUE) if measured else METRICS
    lines = ["| method | " + " | ".join(LABELS[m] for m in metrics) + " |", "|---|" + "---:|" * len(metrics)]
    for name, row in rows.items():
        entries = row["subsets"][subset]["metrics"]
        lines.append(f"| {_label(name, row)} | " + " | ".join(cell(entries[m], m) for m in metrics) + " |")
    return lines


def _split_lines(config: dict[str, Any]) -> list[str]:
    """The protocol's parameters and the user and event counts of each split (when recorded)."""
    lines = []
    options = config.get("split_options") or {}
    if options:
        lines.append("Split: " + ", ".join(f"{name} {value}" for name, value in options.items()) + ".")
    counts = config.get("split_counts") or {}
    if counts:
        lines.append("Counts: " + "; ".join(
            f"{split} {entry['users']} users, {entry['events']} {'events' if split == 'train' else 'targets'}"
            for split, entry in counts.items()) + ".")
    return lines + [""] if lines else []


def describe_hyperparameters(hyperparameters: dict[str, Any]) -> str:
    """`name=value, ...` of a trial's hyperparameters (`recipe values` for none)."""
    return ", ".join(f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                     for name, value in hyperparameters.items()) or "recipe values"


def tuning_markdown(tuning: dict[str, Any] | None) -> list[str]:
    """The hyperparameter selection as a table: per method and trial, the validation score of its kept checkpoint
    (mean and per tuning seed), that checkpoint's epoch (and step), the epochs run, and the choice."""
    if not tuning:
        return []
    seeds = tuning["seeds"]
    passes = f"every {tuning['eval_steps']} steps" if tuning.get("eval_steps") else "every epoch"
    budget = (f"{tuning['max_steps']} steps" if (tuning.get("max_steps") or 0) > 0
              else f"{_fmt(tuning.get('max_epochs'), 0)} epoch(s)")
    lines = ["## Hyperparameter selection (validation only)", "",
             f"Every method: {tuning['trials_per_method']} trial(s), up to {budget}, a validation pass {passes}, "
             f"patience {tuning.get('patience')}. Score: validation "
             f"`{tuning['metric']}` of the kept (best) checkpoint, mean over tuning seed(s) {seeds}; the chosen "
             "trial then runs on the method's seeds. Only chosen runs are evaluated on the test split.", "",
             "| method | trial | validation" + (" (per seed)" if len(seeds) > 1 else "") +
             " | best epoch (step) | epochs run | chosen |", "|---|---|---:|---|---:|:---:|"]
    for method, entry in tuning["methods"].items():
        for trial in entry["trials"]:
            runs = trial["runs"]
            score = _fmt(trial["validation_mean"])
            if len(runs) > 1:
                score += " (" + ", ".join(_fmt(run["validation"]) for run in runs) + ")"
            best = ", ".join(f"{_fmt(run['best_epoch'], 2)} ({run['best_step']})" for run in runs)
            ran = ", ".join(_fmt(run["epochs_trained"], 2) for run in runs)
            lines.append(f"| {METHOD_LABELS.get(method, method)} | {describe_hyperparameters(trial['hyperparameters'])} "
                         f"| {score} | {best} | {ran} | {'✓' if trial['chosen'] else ''} |")
    return lines + [""]


def seed_allocation_markdown(tuning: dict[str, Any] | None) -> list[str]:
    """One line naming the rows that ran fewer post-training seeds than `--seeds`, and why (`tuning.seed_allocation`;
    nothing when every row ran every seed)."""
    allocation = (tuning or {}).get("seed_allocation")
    if not allocation:
        return []
    total = allocation["num_seeds"]
    fewer = [f"{METHOD_LABELS.get(method, method)} {n}" for method, n in allocation["seeds"].items() if n < total]
    if allocation.get("ablation_seeds") is not None and allocation["ablation_seeds"] < total:
        fewer.append(f"the A-SFT ablations {allocation['ablation_seeds']}")
    if not fewer:
        return []
    return [f"Fewer seeds (the first n of {total}): {', '.join(fewer)}. Why: {allocation['rule']}", ""]


def ablation_markdown(results: dict[str, Any]) -> list[str]:
    """The A-SFT ablation rows (kind `ablation`) as their own tables: value and % vs reward-weighted BC with the same
    intervals as the methods, on `all` and the high-reward subset (nothing without ablation rows)."""
    rows = {name: row for name, row in results["methods"].items() if row["kind"] == "ablation"}
    if not rows:
        return []
    lines = ["## A-SFT ablations", "",
             "Each variant of `asft_ablation_grid` with A-SFT's budget, selection rules and chosen λ (no λ tuning of "
             "its own), on every seed (or the first `ablation_seeds`). `rwbc[reward_power=tilt_matched]`: RW-BC "
             "with w = r^p, p matching the tilt mean(w | r=5) / mean(w | r=3) of the chosen A-SFT trial's training "
             "weights.", ""]
    for name, row in rows.items():
        if row.get("reward_power") is not None:
            lines += [f"`{name}`: p = {row['reward_power']:.4f} (A-SFT tilt {_fmt(row.get('asft_tilt'), 3)}).", ""]
    labelled = {name: {**row, "method": name} for name, row in rows.items()}  # the variant's name as its label
    for subset in _diagnostic_subsets(results["subsets"]):
        lines += [f"### `{subset}`", ""] + _table(labelled, subset, _value_cell) + [""]
        lines += _table(labelled, subset, lambda entry, metric: _pct_cell(entry)) + [""]
    return lines


def _diagnostic_subsets(subsets: list[str]) -> list[str]:
    """`all` and the high-reward subset (trajectory on `future`, target otherwise) among `subsets`."""
    high = next((s for s in (SUBSET_HIGH_REWARD_TRAJECTORY, SUBSET_HIGH_REWARD_TARGET) if s in subsets), None)
    return [s for s in (SUBSET_ALL, high) if s in subsets]


def _difference_table(rows: dict[str, Any], by: str, subset: str) -> list[str]:
    """Rows x buckets of the paired NDCG@10 difference vs reward-weighted BC, `difference [low, high]`."""
    buckets: list[str] = []
    for row in rows.values():
        for bucket in row["paired_ndcg@10_vs_rwbc"][by].get(subset, {}):
            if bucket not in buckets:
                buckets.append(bucket)
    lines = ["| method | " + " | ".join(buckets) + " |", "|---|" + "---:|" * len(buckets)]
    for name, row in rows.items():
        cells = row["paired_ndcg@10_vs_rwbc"][by].get(subset, {})
        lines.append(f"| {name} | " + " | ".join(
            f"{_fmt(cells[b]['difference'])} [{_fmt(cells[b]['low'])}, {_fmt(cells[b]['high'])}]" if b in cells
            else "–" for b in buckets) + " |")
    return lines


def diagnostics_markdown(section: dict[str, Any] | None) -> list[str]:
    """The per-method diagnostics: ESS/N of the training weights, mean KL to the pretrained policy, the judge-vs-
    ranking point, and the paired NDCG@10 differences vs reward-weighted BC by target rating and history length."""
    if not section:
        return []
    lines = ["## Diagnostics", "",
             "ESS/N: effective sample size of the training weights over the training positions (— : no per-position "
             "weights). KL: mean KL(post-trained ‖ pretrained) over the test contexts (full catalogue minus the "
             "history), mean over seeds. Judge vs ranking (`judge_vs_ranking.png`): NDCG@10 of the high-reward "
             "subset and the judge reward, 95% intervals.", "",
             "| method | ESS/N | KL to pretrained | NDCG@10 (high reward) | judge |", "|---|---:|---:|---:|---:|"]
    for name, row in section["rows"].items():
        ess = row.get("ess")
        kl = row.get("kl_to_pretrained")
        point = row["judge_vs_ranking"]
        lines.append(f"| {name} | {_fmt(ess['ess_fraction'], 3) if ess else '—'} | "
                     f"{_fmt(kl['mean']) if kl else '—'} | {_fmt(point['ranking'])} "
                     f"[{_fmt(point['ranking_low'])}, {_fmt(point['ranking_high'])}] | {_fmt(point['judge'], 3)} "
                     f"[{_fmt(point['judge_low'], 3)}, {_fmt(point['judge_high'], 3)}] |")
    lines.append("")
    rows = {name: row for name, row in section["rows"].items() if "paired_ndcg@10_vs_rwbc" in row}
    for by, title in (("by_target_rating", "target rating"), ("by_history_length", "history length (events)")):
        for subset in section["subsets"]:
            lines += [f"Paired NDCG@10 difference vs reward-weighted BC by {title}, `{subset}` "
                      "[bootstrap 95% interval over seeds and users]:", ""]
            lines += _difference_table(rows, by, subset) + [""]
    return lines


def world_markdown(world: dict[str, Any] | None) -> list[str]:
    """What the `true V*` column is, and the reference policies' V* on `all` (nothing on real data)."""
    if not world:
        return []
    references = world["reference_policies"]
    values = ", ".join(f"{name} {_fmt(references[name].get(SUBSET_ALL))}" for name in references)
    return ["The data is a log drawn in a simulated world whose true reward r* of every item is known. `true V*`: "
            "the expected r* of the model's next recommendation, Σ_i π(i | context) r*(context, i) over the whole "
            "catalogue, at the world's state before each test target (everything the user consumed before it, "
            "observed or not), a user's targets averaged first: what offline metrics cannot see.", "",
            f"Reference policies' true V* (`all`): {values}.", ""]


def results_markdown(results: dict[str, Any]) -> str:
    """The tables a person reads: metric values and % vs reward-weighted BC per subset, λ sweep, reward table."""
    config = results["config"]
    seeds = config["seeds"]
    lines = [f"# Post-training benchmark ({config['dataset']})", ""]
    lines += [f"Command: `{config['command']}`", "",
              f"Preset `{config['preset']}`, protocol `{config.get('protocol', config['split'])}`, {len(seeds)} "
              "post-training seed(s) "
              f"{seeds} (pretrained model and reward ensembles shared across seeds). Reward ensemble the methods "
              f"train against: {config.get('training_ensemble', '?')}. Judge: {config['judge']}; rollout "
              f"H={config['horizon']}, γ={config['gamma']}. Wall time {results['wall_time_s'] / 60:.1f} min "
              f"(this invocation); all stages, reused ones at the time they took when they ran: "
              f"{results.get('stage_time_s', results['wall_time_s']) / 60:.1f} min.",
              ""]
    lines += seed_allocation_markdown(results.get("tuning"))
    lines += _split_lines(config) + ["Test users (targets) per subset: " + ", ".join(
        f"`{s}` {n}" + (f" ({results[NUM_TARGETS][s]})" if NUM_TARGETS in results else "")
        for s, n in results[NUM_USERS].items()) + ".", ""]
    lines += world_markdown(results.get("world"))
    main_rows = {name: row for name, row in results["methods"].items() if row["kind"] != "ablation"}
    over = "seeds and test users" if len(seeds) > 1 else "test users"
    for subset in results["subsets"]:
        n = results[NUM_USERS][subset]
        targets = f", {results[NUM_TARGETS][subset]} targets" if NUM_TARGETS in results else ""
        lines += [f"## `{subset}` ({n} test users{targets})", "",
                  "Values: mean over test users (a user's targets averaged first)" +
                  (", ± std across seeds" if len(seeds) > 1 else "") +
                  "; judge: discounted judge-ensemble reward (spread = std across judge members).", ""]
        lines += _table(main_rows, subset, _value_cell) + [""]
        lines += [f"% change vs reward-weighted BC, [paired bootstrap 95% interval over {over}] († where some "
                  "resample of reward-weighted BC scored 0: the interval of the difference, in % of its mean):", ""]
        lines += _table({k: v for k, v in main_rows.items() if v["method"] != config["reference"]}, subset,
                        lambda entry, metric: _pct_cell(entry)) + [""]
    lines += claims_markdown(results.get("verdict"))
    lines += ablation_markdown(results)
    lines += diagnostics_markdown(results.get("diagnostics"))
    lines += tuning_markdown(results.get("tuning"))
    for key, title in (("reward_table", "Reward ensemble the methods train against"),
                       ("judge_reward_table", "Judge ensemble")):
        if results.get(key):
            lines += [f"## {title}", "", results[key]["markdown"], ""]
    lines += ["## Stages", "", "| stage | key | reused | seconds |", "|---|---|---|---:|"]
    for stage in results["stages"]:
        lines.append(f"| {stage['label']} | {stage['key']} | {'yes' if stage['cached'] else 'no'} | "
                     f"{_fmt(stage.get('seconds'), 1)} |")
    lines.append("")
    lines.append(f"Figures: `{IMPROVEMENT_FIGURE}`, `{LAMBDA_FIGURE}`, `{JUDGE_FIGURE}`.")
    return "\n".join(lines) + "\n"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_improvements(results: dict[str, Any], path: str | os.PathLike) -> str:
    """Grouped bars: % change vs reward-weighted BC per method and metric, one panel per subset, 95% intervals."""
    plt = _pyplot()
    reference = results["config"]["reference"]
    rows = {k: v for k, v in results["methods"].items() if v["method"] != reference and v["kind"] != "ablation"}
    subsets = results["subsets"]
    fig, axes = plt.subplots(len(subsets), 1, figsize=(12, 3.6 * len(subsets)), squeeze=False)
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(METRICS))
    for ax, subset in zip(axes[:, 0], subsets):
        for i, (name, row) in enumerate(rows.items()):
            entries = row["subsets"][subset]["metrics"]
            values = np.array([entries[m]["pct_vs_rwbc"] if entries[m]["pct_vs_rwbc"] is not None else np.nan
                               for m in METRICS], dtype=float)
            lows = np.array([entries[m]["ci95"][0] if entries[m]["ci95"][0] is not None else np.nan
                             for m in METRICS], dtype=float)
            highs = np.array([entries[m]["ci95"][1] if entries[m]["ci95"][1] is not None else np.nan
                              for m in METRICS], dtype=float)
            errors = np.nan_to_num(np.vstack([values - lows, highs - values]).clip(min=0))
            ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, yerr=errors, capsize=2,
                   label=_label(name, row))
        ax.axhline(0.0, color="black", linewidth=0.8)
        ax.set_xticks(x, [LABELS[m] for m in METRICS])
        ax.set_ylabel("% vs reward-weighted BC")
        ax.set_title(f"{subset} ({results['num_users'][subset]} test users)")
    axes[0, 0].legend(ncol=min(len(rows), 4), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def plot_lambda_sweep(results: dict[str, Any], path: str | os.PathLike) -> str:
    """A-SFT's temperature grid as tuning saw it: the validation score of each λ's kept checkpoint (mean over tuning
    seeds, each seed a dot, the chosen λ circled), beside the chosen SFT and reward-weighted BC trials' scores.
    Validation only: the test split is never read for a losing trial."""
    plt = _pyplot()
    tuning = results["tuning"]
    trials = sorted(tuning["methods"]["asft"]["trials"], key=lambda trial: trial["hyperparameters"]["temperature"])
    lambdas = [trial["hyperparameters"]["temperature"] for trial in trials]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(lambdas, [trial["validation_mean"] for trial in trials], marker="o", label="A-SFT (mean over seeds)")
    for lam, trial in zip(lambdas, trials):
        ax.scatter([lam] * len(trial["runs"]), [run["validation"] for run in trial["runs"]], color="gray", s=12)
        if trial["chosen"]:
            ax.scatter([lam], [trial["validation_mean"]], s=160, facecolors="none", edgecolors="red", label="chosen")
    for reference, style in (("rwbc", "--"), ("sft", ":")):
        entry = tuning["methods"].get(reference)
        if entry:
            chosen = entry["trials"][entry["chosen"]]
            ax.axhline(chosen["validation_mean"], linestyle=style, color="gray", linewidth=0.9,
                       label=f"{METHOD_LABELS[reference]} ({describe_hyperparameters(chosen['hyperparameters'])})")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("λ (A-SFT temperature)")
    ax.set_ylabel(f"validation {tuning['metric']}")
    ax.set_title("A-SFT λ on validation (kept checkpoint of each run)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)
