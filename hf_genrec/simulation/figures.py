"""What `hf-genrec simulate` draws from its `results.json`: gold and proxy value against sqrt(KL), the true-value gain
against the proxy's accuracy (the post's Figure 1, measured) and the winner map over the world knobs.

The winner of a world setting is the post-training method (or the pretrained policy itself: post-training may not
pay) with the highest true value V* averaged over seeds. `ppo_true`, PPO against r* itself, is left out: it is the
reference for what the truth allows, not a method a user can run on logs. A winner is `clear` when its lead over
the runner-up exceeds twice the standard error of their mean per-seed difference: seed i of a setting is one log and
one proxy that every method trains on, so the comparison is paired seed by seed and a log that is easier for all
methods alike does not blur it; with one seed nothing is clear.
"""

from __future__ import annotations

import math
import os
from typing import Any

from ..benchmark.presets import REFERENCE_METHOD
from .true_reward import TRUE_PPO
from .verdict import ACCURACY, ACCURACY_LABEL, gain_by_accuracy

__all__ = ["overoptimisation", "plot_gain_against_proxy_accuracy", "plot_value_against_kl", "plot_winner_map",
           "winner_map"]

CANDIDATE_EXCLUDED = (TRUE_PPO,)  # the truth's reference, not a competitor


def _seed_values(results: dict[str, Any], name: str, method: str) -> dict[int, float]:
    """`{seed: V*}` of `method` in setting `name` (seeds where it ran)."""
    return {run["seed"]: run["methods"][method]["true_value"] for run in results["runs"]
            if run["name"] == name and method in run["methods"] and run["methods"][method]["true_value"] is not None}


def _mean_and_se(values: list[float]) -> tuple[float, float | None]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def winner_map(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per world setting of a `hf-genrec simulate` result: the method with the highest mean true value and its lead.

    Args:
        results: the content of `results.json` (`runs`, each with `name`, `setting` and per-method `true_value`).

    Returns:
        `{setting name: {"setting", "winner", "runner_up", "true_value", "runner_up_true_value", "margin",
        "margin_se", "clear", "ranking"}}`: `ranking` lists every candidate as `[method, mean V*]`, best first;
        `margin_se` is the standard error of the mean per-seed difference winner − runner-up (paired by seed),
        None and `clear` False with one seed.
    """
    table: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(run["name"] for run in results["runs"]):
        run = next(run for run in results["runs"] if run["name"] == name)
        per_seed = {method: values for method in run["methods"] if method not in CANDIDATE_EXCLUDED
                    for values in [_seed_values(results, name, method)] if values}
        means = {method: sum(values.values()) / len(values) for method, values in per_seed.items()}
        ranking = sorted(means, key=lambda method: -means[method])
        if not ranking:
            continue
        winner = ranking[0]
        runner_up = ranking[1] if len(ranking) > 1 else None
        entry = {"setting": run["setting"], "winner": winner, "true_value": means[winner], "runner_up": runner_up,
                 "runner_up_true_value": None, "margin": None, "margin_se": None, "clear": False,
                 "ranking": [[method, means[method]] for method in ranking]}
        if runner_up is not None:
            entry["runner_up_true_value"] = means[runner_up]
            entry["margin"] = means[winner] - means[runner_up]
            shared = sorted(per_seed[winner].keys() & per_seed[runner_up].keys())
            _, entry["margin_se"] = _mean_and_se([per_seed[winner][seed] - per_seed[runner_up][seed]
                                                  for seed in shared]) if shared else (None, None)
            if entry["margin_se"] is not None:
                entry["clear"] = entry["margin"] > 2 * entry["margin_se"]
        table[name] = entry
    return table


def plot_winner_map(results: dict[str, Any], path: str | os.PathLike) -> str:
    """The winner map: one panel per logging coverage, observation noise across, log size (users) up; each cell
    names the setting's winner and its lead over the runner-up in V* (bold when clear, see `winner_map`)."""
    from ..benchmark.report import _pyplot

    plt = _pyplot()
    table = winner_map(results)
    coverages = sorted({entry["setting"]["coverage"] for entry in table.values()})
    noises = sorted({entry["setting"]["noise_std"] for entry in table.values()})
    sizes = sorted({entry["setting"]["num_users"] for entry in table.values()})
    methods = sorted({entry["winner"] for entry in table.values()})
    colors = {method: f"C{index % 10}" for index, method in enumerate(methods)}
    figure, axes = plt.subplots(1, max(len(coverages), 1), figsize=(3.2 * max(len(coverages), 1) + 1, 3.2),
                                squeeze=False)
    for axis, coverage in zip(axes[0], coverages):
        for entry in table.values():
            setting = entry["setting"]
            if setting["coverage"] != coverage:
                continue
            x, y = noises.index(setting["noise_std"]), sizes.index(setting["num_users"])
            axis.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, color=colors[entry["winner"]], alpha=0.35))
            lead = "" if entry["margin"] is None else f"\n+{entry['margin']:.3f}"
            axis.text(x, y, entry["winner"] + lead, ha="center", va="center", fontsize=8,
                      fontweight="bold" if entry["clear"] else "normal")
        axis.set_xlim(-0.5, len(noises) - 0.5)
        axis.set_ylim(-0.5, len(sizes) - 0.5)
        axis.set_xticks(range(len(noises)), [f"{noise:g}" for noise in noises])
        axis.set_yticks(range(len(sizes)), [str(size) for size in sizes])
        axis.set_xlabel("observation noise std")
        axis.set_title(f"logging coverage {coverage:g}", fontsize=9)
    axes[0][0].set_ylabel("users in the log")
    figure.suptitle("highest true value V* per world setting (lead over the runner-up; bold: > 2 s.e.)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return str(path)


def overoptimisation(results: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per tuned method, the reward-overoptimisation curve: its trials (one grid value each, the same grid in every
    run) as mean over runs of sqrt(KL to the pretrained policy), proxy value V̂ and true value V*, from the pretrained
    policy (sqrt(KL) 0) outwards, sorted by sqrt(KL). A method that over-optimises the proxy shows V̂ rising with
    sqrt(KL) while V* falls.

    Returns:
        `{method: [{"trial", "sqrt_kl", "proxy_value", "true_value", "true_value_se", "num_runs"}]}`: `trial` is
        `pretrained` or the trial's hyperparameters (`describe_hyperparameters`); `true_value_se` is the standard
        error over runs (None from one run). Empty when no run recorded its trials' world metrics.
    """
    from ..benchmark.report import describe_hyperparameters

    runs = [run for run in results["runs"] if run.get("tuning")]
    curves: dict[str, list[dict[str, Any]]] = {}
    if not runs:
        return curves

    def point(trial: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
        true_value, true_value_se = _mean_and_se([row["true_value"] for row in rows])
        return {"trial": trial, "num_runs": len(rows), "true_value": true_value, "true_value_se": true_value_se,
                "sqrt_kl": sum(math.sqrt(max(row["kl_to_pretrained"], 0.0)) for row in rows) / len(rows),
                "proxy_value": sum(row["proxy_value"] for row in rows) / len(rows)}

    origin = point("pretrained", [run["methods"]["pretrained"] for run in runs])
    for method, tuned in runs[0]["tuning"].items():
        points = []
        for index, trial in enumerate(tuned["trials"]):
            rows = [run["tuning"][method]["trials"][index] for run in runs if method in run["tuning"]]
            if all("kl_to_pretrained" in row and "proxy_value" in row for row in rows):
                points.append(point(describe_hyperparameters(trial["hyperparameters"]), rows))
        if points:
            curves[method] = [origin, *sorted(points, key=lambda entry: entry["sqrt_kl"])]
    return curves


def plot_value_against_kl(results: dict[str, Any], path: str | os.PathLike) -> str:
    """Gold (true) and proxy value against sqrt(KL to the pretrained policy): per tuned method one panel with its
    trials' curves (`overoptimisation`: mean over runs, from the pretrained policy outwards; solid true, dashed
    proxy) and the chosen models of every run as faint points (o true, x proxy): the reward-overoptimisation plot."""
    from ..benchmark.report import _pyplot

    plt = _pyplot()
    curves = overoptimisation(results)
    methods = [method for method in results["config"]["methods"] if method != "pretrained"]
    figure, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods) + 1, 3.4), sharey=True, squeeze=False)
    for index, (axis, method) in enumerate(zip(axes[0], methods)):
        color = f"C{index % 10}"
        rows = [run["methods"][method] for run in results["runs"] if method in run["methods"]]
        x = [math.sqrt(max(row["kl_to_pretrained"], 0.0)) for row in rows]
        axis.scatter(x, [row["true_value"] for row in rows], color=color, marker="o", alpha=0.25, s=10)
        axis.scatter(x, [row["proxy_value"] for row in rows], color=color, marker="x", alpha=0.25, s=10)
        if method in curves:
            points = curves[method]
            axis.plot([p["sqrt_kl"] for p in points], [p["true_value"] for p in points], color=color, marker="o",
                      label="true V*")
            axis.plot([p["sqrt_kl"] for p in points], [p["proxy_value"] for p in points], color=color, marker="x",
                      linestyle="--", label="proxy V̂")
            axis.legend(fontsize=7)
        axis.set_title(method, fontsize=9)
        axis.set_xlabel("sqrt(KL to pretrained)", fontsize=8)
    axes[0][0].set_ylabel("value (expected reward of the next item)")
    figure.suptitle("lines: each trial, mean over runs, from the pretrained policy; points: chosen models per run",
                    fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return str(path)


def plot_gain_against_proxy_accuracy(results: dict[str, Any], path: str | os.PathLike) -> str:
    """True-value gain over reward-weighted BC per method against the proxy's accuracy (`verdict.ACCURACY`): one faint
    point per setting and seed, and per method the mean over each third of runs by accuracy with its bootstrap 95%
    interval (`verdict.gain_by_accuracy`), at the middle of the third's accuracy range: the post's Figure 1, measured."""
    from ..benchmark.report import _pyplot

    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    runs = [run for run in results["runs"] if REFERENCE_METHOD in run["methods"]]
    thirds = gain_by_accuracy(results, REFERENCE_METHOD)
    for index, method in enumerate(m for m in results["config"]["methods"] if m != REFERENCE_METHOD):
        color = f"C{index % 10}"
        rows = [run for run in runs if method in run["methods"]]
        x = [run["proxy_accuracy"].get(ACCURACY[0], {}).get(ACCURACY[1], math.nan) for run in rows]
        gains = [run["methods"][method]["true_value"] - run["methods"][REFERENCE_METHOD]["true_value"] for run in rows]
        axis.scatter(x, gains, color=color, alpha=0.3, s=12)
        cells = [(group, cell) for group, cell in zip(thirds["groups"], thirds["methods"].get(method, []))
                 if cell["num_runs"] and group["num_runs"]]
        centres = [(group["accuracy_min"] + group["accuracy_max"]) / 2 for group, _ in cells]
        means = [cell["mean"] for _, cell in cells]
        errors = [[0.0 if cell["ci95"][0] is None else cell["mean"] - cell["ci95"][0] for _, cell in cells],
                  [0.0 if cell["ci95"][1] is None else cell["ci95"][1] - cell["mean"] for _, cell in cells]]
        axis.errorbar(centres, means, yerr=errors, color=color, marker="o", capsize=3, label=method)
    axis.axhline(0.0, color="grey", linewidth=0.8)
    axis.set_xlabel(f"proxy {ACCURACY_LABEL}")
    axis.set_ylabel(f"true value - {REFERENCE_METHOD}'s")
    axis.set_title("points: runs; lines: mean per third of runs by accuracy (95% interval)", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return str(path)
