"""The post's claims decided in the simulated world (`hf-genrec simulate`'s `results.json` `verdict`).

The post's Figure 1 is drawn, not measured: with an inaccurate reward model the offline, advantage-weighted family
(A-SFT) beats online RL against the reward model (PPO), and as the reward model gets accurate PPO wins. The post also
says PPO, DPO and IPO reach high reward-model scores but overfit the reward model. In the simulated world the true
reward is known, so each of these can be decided, together with two claims the benchmark leans on:

- W1: Figure 1's shape: PPO's true-value lead over A-SFT rises with the proxy's accuracy.
- W2: where each family wins: A-SFT ≥ PPO with the least accurate proxies, PPO ≥ A-SFT with the most accurate.
- W3: PPO, DPO and IPO overfit the reward model: their hacking gap (proxy value − true value) exceeds A-SFT's.
- W4: A-SFT beats reward-weighted BC in true value.
- W5: the offline metrics rank the methods as the truth does.

The unit of evidence is a **run** (one world setting × seed: its own log, proxy and trainings), so every interval is
a percentile bootstrap over runs (1,000 resamples, a local generator seeded with 0); paired comparisons take the
per-run difference of two methods first. The proxy's accuracy is its within-context pairwise accuracy on the logging
policy's own (context, item) distribution (`proxy_accuracy.on_logging.pairwise_accuracy`): off the support a reward
model that scores items by their id gives every unseen item the same score, so its pairwise accuracy there is 0.5 by
construction and cannot tell proxies apart (issue 14, docs/simulation.md), and uniform draws from the support fall
mostly on items the log never shows in that context. The statuses are
the benchmark's (`hf_genrec.benchmark.verdict`): `holds` when every deciding interval lies strictly on the claimed
side of 0, `does not hold` when one lies strictly on the other side, `inconclusive` otherwise (an interval touching
0, or none: too few runs), `not tested` when a method the claim needs did not run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..benchmark.verdict import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    NOT_TESTED,
    OVERFITTING_METHODS,
    claims_section,
    evidence_status,
    interval_side,
)
from ..evaluation.statistics import bootstrap_mean_ci
from .evaluation import _pearson, _ranks
from .true_reward import TRUE_PPO

__all__ = [
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_HOLD",
    "NOT_TESTED",
    "WORLD_CLAIMS",
    "gain_by_accuracy",
    "gain_by_accuracy_markdown",
    "simulation_verdicts",
    "verdict_markdown",
]

ASFT, PPO, RWBC = "asft", "ppo", "rwbc"
ACCURACY = ("on_logging", "pairwise_accuracy")  # results.json `runs[].proxy_accuracy[where][metric]`
ACCURACY_LABEL = "pairwise accuracy on the logging policy's items"
NUM_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
MIN_CORRELATION_RUNS = 4  # below this a rank correlation over runs (and its bootstrap) says nothing

WORLD_CLAIMS: dict[str, dict[str, str]] = {
    "W1": {"statement": "Figure 1's shape: PPO's true-value lead over A-SFT rises with the reward model's accuracy.",
           "rule": "over runs, the Spearman correlation of V*(ppo) − V*(asft) with the proxy's on-logging pairwise "
                   "accuracy, interval above 0 (at least 4 runs and 2 distinct accuracies); the lead in the least "
                   "and the most accurate third of runs is shown, not deciding."},
    "W2": {"statement": "With the least accurate reward models A-SFT beats PPO; with the most accurate PPO beats A-SFT.",
           "rule": "V*(ppo) − V*(asft), mean over the runs in the bottom half of on-logging pairwise accuracy below "
                   "0, and over the runs in the top half above 0."},
    "W3": {"statement": "PPO, DPO and IPO reach high reward-model scores but overfit the reward model.",
           "rule": "for each of them that ran, its hacking gap (proxy value − true value) minus A-SFT's, mean over "
                   "runs, above 0; its own gap (above 0: true value below proxy value) and its true value vs "
                   "A-SFT's are shown, not deciding."},
    "W4": {"statement": "A-SFT beats reward-weighted BC in true value.",
           "rule": "V*(asft) − V*(rwbc), mean over runs, above 0."},
    "W5": {"statement": "The offline metrics rank the methods as the truth does.",
           "rule": "per run, Kendall's tau between the methods' NDCG@10 and their true values (every method but "
                   "ppo_true, the pretrained policy included); the mean over runs above 0."},
}


# ------------------------------------------------------------------------------------------------ statistics
def _finite(value: Any) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho of `x` and `y` `(n,)` (average ranks for ties); NaN when either is constant."""
    return _pearson(_ranks(x), _ranks(y))


def _kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b of `x` and `y` `(n,)` (ties corrected); NaN when either is constant."""
    sx = np.sign(x[:, None] - x[None, :])  # (n, n)
    sy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    denominator = math.sqrt(np.abs(sx[upper]).sum() * np.abs(sy[upper]).sum())
    return float((sx * sy)[upper].sum() / denominator) if denominator > 0 else float("nan")


def _mean_interval(values: list[float]) -> tuple[float | None, float | None, float | None]:
    """Mean of per-run values with the bootstrap interval over runs; no interval from fewer than 2 runs."""
    if not values:
        return None, None, None
    if len(values) < 2:
        return float(values[0]), None, None
    mean, low, high = bootstrap_mean_ci(np.asarray(values), num_resamples=NUM_RESAMPLES, seed=BOOTSTRAP_SEED)
    return mean, low, high


def _spearman_interval(x: np.ndarray, y: np.ndarray) -> tuple[float, float | None, float | None, int]:
    """Spearman's rho with a percentile bootstrap interval over runs (resampling (x, y) pairs).

    Returns (rho, low, high, degenerate): `degenerate` resamples drew a constant x or y, where rho is undefined;
    they are left out of the interval, which is `None` when more than half of them are.
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    indices = rng.integers(0, len(x), size=(NUM_RESAMPLES, len(x)))  # (R, n)
    rhos = np.array([_spearman(x[draw], y[draw]) for draw in indices])
    finite = rhos[np.isfinite(rhos)]
    degenerate = NUM_RESAMPLES - len(finite)
    if len(finite) < NUM_RESAMPLES / 2:
        return _spearman(x, y), None, None, degenerate
    low, high = np.quantile(finite, [0.025, 0.975])
    return _spearman(x, y), float(low), float(high), degenerate


# ------------------------------------------------------------------------------------------------ runs
def _ran(results: dict[str, Any]) -> list[str]:
    """The method rows present in some run, in the order they first appear."""
    return list(dict.fromkeys(method for run in results["runs"] for method in run["methods"]))


def _value(run: dict[str, Any], method: str, key: str = "true_value") -> float | None:
    return _finite(run["methods"][method].get(key)) if method in run["methods"] else None


def _accuracy(run: dict[str, Any]) -> float | None:
    where, metric = ACCURACY
    return _finite(run.get("proxy_accuracy", {}).get(where, {}).get(metric))


def _paired(results: dict[str, Any], method: str, reference: str, key: str = "true_value",
            *, with_accuracy: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per run where both are finite: `method`'s `key` minus `reference`'s, and the proxy's accuracy (`ACCURACY`)
    (NaN unless `with_accuracy`, which also drops the runs without one). Returns two `(runs,)` arrays."""
    differences, accuracies = [], []
    for run in results["runs"]:
        value, base = _value(run, method, key), _value(run, reference, key)
        accuracy = _accuracy(run) if with_accuracy else math.nan
        if value is None or base is None or accuracy is None:
            continue
        differences.append(value - base)
        accuracies.append(accuracy)
    return np.asarray(differences, dtype=float), np.asarray(accuracies, dtype=float)


def _accuracy_groups(accuracies: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the least and the most accurate `fraction` of runs by average rank, so tied runs fall together
    and the two groups mirror each other (the middle ranks, and a tie across a boundary, are in neither)."""
    if len(accuracies) == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    ranks, n = _ranks(accuracies), len(accuracies)
    return ranks <= n * fraction, ranks >= n + 1 - n * fraction


def _evidence(quantity: str, values: list[float], expected: str, *, deciding: bool = True) -> dict[str, Any]:
    """One piece of evidence: the mean of per-run `values` with its bootstrap interval over runs."""
    mean, low, high = _mean_interval(values)
    return _item(quantity, mean, low, high, expected, num_runs=len(values), deciding=deciding)


def _item(quantity: str, value: float | None, low: float | None, high: float | None, expected: str, *,
          num_runs: int, deciding: bool = True) -> dict[str, Any]:
    return {"quantity": quantity, "value": value, "ci95": [low, high], "ci95_over": "runs", "num_runs": num_runs,
            "expected": expected, "side": interval_side(low, high, expected), "deciding": deciding}


def _claim(name: str, evidence: list[dict[str, Any]], *, missing: list[str], not_run: list[str] | None = None,
           note: str = "") -> dict[str, Any]:
    """The record of one claim. `missing`: the methods it needs that did not run (then `not tested`, and they are
    its `not_run`); `not_run`: otherwise, the methods it names that did not run (decided without them)."""
    not_run = list(missing) if missing else list(not_run or [])
    if missing:
        note = f"not tested: {', '.join(missing)} did not run (add it to --methods)."
    elif not_run:
        note = " ".join(filter(None, [note, f"Decided among the methods run; not run: {', '.join(not_run)}."]))
    return {"claim": name, **WORLD_CLAIMS[name], "status": NOT_TESTED if missing else evidence_status(evidence),
            "evidence": [] if missing else evidence, "not_run": not_run, "note": note}


def _missing(ran: list[str], needed: tuple[str, ...]) -> list[str]:
    return [method for method in needed if method not in ran]


# ------------------------------------------------------------------------------------------------ claims
def simulation_verdicts(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Decide the post's claims in the simulated world (W1-W5, module docstring) from a `hf-genrec simulate` result.

    Args:
        results: `results.json`'s content (only `runs` is read: per run `methods` → `true_value`,
            `hacking_gap`, `ndcg@10`, and `proxy_accuracy.on_logging.pairwise_accuracy`).

    Returns:
        One record per claim: `claim`, `statement`, `rule`, `status` (`holds`, `does not hold`, `inconclusive` or
        `not tested`), `evidence` (`quantity`, `value`, `ci95` ([low, high], `None` when there is no interval),
        `ci95_over` (`runs`), `num_runs`, `expected` (`above`/`below` 0), `side` (`claimed`, `other`, `undecided`),
        `deciding`), `not_run` (methods the claim names that did not run) and `note`.
    """
    ran = _ran(results)
    return [_w1(results, ran), _w2(results, ran), _w3(results, ran), _w4(results, ran), _w5(results, ran)]


def _w1(results: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    missing = _missing(ran, (PPO, ASFT))
    if missing:
        return _claim("W1", [], missing=missing)
    leads, accuracies = _paired(results, PPO, ASFT, with_accuracy=True)
    quantity = f"Spearman(V*(ppo) − V*(asft), {ACCURACY_LABEL}) over runs"
    note = ""
    if len(leads) < MIN_CORRELATION_RUNS or len(np.unique(accuracies)) < 2:
        rho = _spearman(leads, accuracies) if len(leads) > 1 else math.nan
        evidence = [_item(quantity, _finite(rho), None, None, "above", num_runs=len(leads))]
        note = (f"{len(leads)} runs with {len(np.unique(accuracies))} distinct accuracies: a correlation needs at "
                f"least {MIN_CORRELATION_RUNS} runs and 2 accuracies (more world settings or --seeds).")
    else:
        rho, low, high, degenerate = _spearman_interval(leads, accuracies)
        evidence = [_item(quantity, _finite(rho), low, high, "above", num_runs=len(leads))]
        if degenerate:
            note = f"{degenerate} of {NUM_RESAMPLES} resamples drew one accuracy (or one lead) only and were left out."
    low_group, high_group = _accuracy_groups(accuracies, 1 / 3)
    for label, mask, expected in (("least", low_group, "below"), ("most", high_group, "above")):
        accuracy = f"{accuracies[mask].mean():.3f}" if mask.any() else "–"
        evidence.append(_evidence(f"V*(ppo) − V*(asft), {label} accurate third (mean accuracy {accuracy})",
                                  leads[mask].tolist(), expected, deciding=False))
    return _claim("W1", evidence, missing=[], note=note)


def _w2(results: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    missing = _missing(ran, (PPO, ASFT))
    if missing:
        return _claim("W2", [], missing=missing)
    leads, accuracies = _paired(results, PPO, ASFT, with_accuracy=True)
    bottom, top = _accuracy_groups(accuracies, 1 / 2)
    evidence = []
    for label, mask, expected in (("bottom", bottom, "below"), ("top", top, "above")):
        accuracy = f"{accuracies[mask].mean():.3f}" if mask.any() else "–"
        evidence.append(_evidence(f"V*(ppo) − V*(asft), {label} half of accuracy (mean accuracy {accuracy})",
                                  leads[mask].tolist(), expected))
    note = "" if bottom.any() and top.any() else "no halves to compare: one run, or one accuracy in every run."
    return _claim("W2", evidence, missing=[], note=note)


def _w3(results: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    named = [method for method in OVERFITTING_METHODS if method in ran]
    missing = _missing(ran, (ASFT,)) + ([] if named else list(OVERFITTING_METHODS))
    if missing:
        return _claim("W3", [], missing=missing)
    evidence = []
    for method in named:
        gaps, _ = _paired(results, method, ASFT, "hacking_gap")
        evidence.append(_evidence(f"gap({method}) − gap(asft), gap = proxy value − true value", gaps.tolist(),
                                  "above"))
        own = [gap for run in results["runs"] if (gap := _value(run, method, "hacking_gap")) is not None]
        evidence.append(_evidence(f"gap({method}) (above 0: true value below proxy value)", own, "above",
                                  deciding=False))
        values, _ = _paired(results, method, ASFT)
        evidence.append(_evidence(f"V*({method}) − V*(asft)", values.tolist(), "below", deciding=False))
    return _claim("W3", evidence, missing=[], not_run=[m for m in OVERFITTING_METHODS if m not in ran])


def _w4(results: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    missing = _missing(ran, (ASFT, RWBC))
    if missing:
        return _claim("W4", [], missing=missing)
    differences, _ = _paired(results, ASFT, RWBC)
    return _claim("W4", [_evidence("V*(asft) − V*(rwbc)", differences.tolist(), "above")], missing=[])


def _w5(results: dict[str, Any], ran: list[str]) -> dict[str, Any]:
    methods = [method for method in ran if method != TRUE_PPO]
    if len(methods) < 2:  # a ranking needs two methods
        return {**_claim("W5", [], missing=[]), "status": NOT_TESTED,
                "note": f"not tested: only {methods or 'no method'} ran besides ppo_true; a ranking needs two."}
    taus = []
    for run in results["runs"]:
        pairs = [(ndcg, truth) for method in methods
                 if (ndcg := _value(run, method, "ndcg@10")) is not None
                 and (truth := _value(run, method, "true_value")) is not None]
        if len(pairs) >= 2 and _finite(tau := _kendall_tau(*np.asarray(pairs, dtype=float).T)) is not None:
            taus.append(tau)
    evidence = [_evidence(f"Kendall's tau(NDCG@10, V*) over {len(methods)} methods, mean over runs", taus, "above")]
    return _claim("W5", evidence, missing=[])


# ------------------------------------------------------------------------------------------------ Figure 1 as a table
ACCURACY_THIRDS = ("least accurate third", "middle third", "most accurate third")


def gain_by_accuracy(results: dict[str, Any], reference: str = RWBC) -> dict[str, Any]:
    """The post's Figure 1 as a table: each method's true-value gain over `reference` in the least accurate, the
    middle and the most accurate third of runs by the proxy's accuracy (`ACCURACY`; thirds by average rank, as W1's).

    Returns:
        `{"reference", "accuracy", "groups": [{"group", "num_runs", "accuracy_min", "accuracy_max"}] (over the runs
        where `reference` and an accuracy exist), "methods": {method: [{"mean", "ci95", "num_runs"}] per group}}`;
        `mean` is the mean over the group's runs of V*(method) − V*(reference), `ci95` its percentile bootstrap
        interval over runs (`[None, None]` from fewer than 2 runs). Every method that ran but `reference` has a row
        (the pretrained policy shows whether post-training paid; `ppo_true` what the truth allows).
    """
    runs = [run for run in results["runs"] if _value(run, reference) is not None and _accuracy(run) is not None]
    accuracies = np.asarray([_accuracy(run) for run in runs], dtype=float)  # (runs,)
    thirds = _accuracy_thirds(accuracies)
    groups = []
    for name, mask in zip(ACCURACY_THIRDS, thirds):
        chosen = accuracies[mask]
        groups.append({"group": name, "num_runs": int(mask.sum()),
                       "accuracy_min": float(chosen.min()) if mask.any() else None,
                       "accuracy_max": float(chosen.max()) if mask.any() else None})
    methods = {}
    for method in _ran(results):
        if method == reference:
            continue
        cells = []
        for mask in thirds:  # the same runs in every row: a method missing in a run only has fewer in that third
            gains = [value - _value(run, reference) for run, chosen in zip(runs, mask)
                     if chosen and (value := _value(run, method)) is not None]
            mean, low, high = _mean_interval(gains)
            cells.append({"mean": mean, "ci95": [low, high], "num_runs": len(gains)})
        methods[method] = cells
    return {"reference": reference, "accuracy": " ".join(ACCURACY), "groups": groups, "methods": methods}


def _accuracy_thirds(accuracies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the least accurate, middle and most accurate third of runs (`_accuracy_groups`' thirds and the rest)."""
    low, high = _accuracy_groups(accuracies, 1 / 3)
    return low, ~(low | high), high


def gain_by_accuracy_markdown(table: dict[str, Any] | None) -> list[str]:
    """The "True-value gain by proxy accuracy" section of `results.md` (`gain_by_accuracy`), empty without runs."""
    if not table or not any(group["num_runs"] for group in table["groups"]):
        return []
    reference = table["reference"]

    def header(group: dict[str, Any]) -> str:
        if not group["num_runs"]:
            return f"{group['group']} (no runs)"
        return f"{group['group']} ({group['accuracy_min']:.3f}–{group['accuracy_max']:.3f}, {group['num_runs']} runs)"

    def cell(entry: dict[str, Any]) -> str:
        low, high = entry["ci95"]
        interval = f" [{_format(low)}, {_format(high)}]" if low is not None and high is not None else ""
        return _format(entry["mean"]) + interval

    lines = ["## True-value gain by proxy accuracy (Figure 1 as a table)", "",
             f"V*(method) − V*({reference}), mean over the runs in each third of the proxy's {ACCURACY_LABEL} "
             "(bootstrap 95% interval over runs).", "",
             "| method | " + " | ".join(header(group) for group in table["groups"]) + " |",
             "|---" + "|---:" * len(table["groups"]) + "|"]
    for method, cells in table["methods"].items():
        lines.append(f"| {method} | " + " | ".join(cell(entry) for entry in cells) + " |")
    return [*lines, ""]


# ------------------------------------------------------------------------------------------------ markdown
def _format(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:+.3f}"


def _evidence_line(item: dict[str, Any]) -> str:
    low, high = item["ci95"]
    side = {"claimed": "yes", "other": "**no**", "undecided": "undecided"}[item["side"]]
    interval = f"[{_format(low)}, {_format(high)}]" if low is not None and high is not None else "(no interval)"
    return (f"| {item['quantity']} | {_format(item['value'])} {interval} | {item['num_runs']} | "
            f"{item['expected']} 0 | {side if item['deciding'] else side + ' (shown, not deciding)'} |")


def verdict_markdown(verdicts: list[dict[str, Any]] | None) -> list[str]:
    """The "Claims in the simulated world" section of `results.md`: per claim its status, the rule, and the
    deciding numbers with their bootstrap 95% intervals over runs (nothing when `verdicts` is missing)."""
    return claims_section(
        verdicts, title="## Claims in the simulated world",
        preamble="The post's Figure 1 and its claims, decided against the true reward with percentile bootstrap 95% "
                 "intervals over runs (world setting × seed): `holds` when every deciding interval lies strictly on the "
                 "claimed side of 0, `does not hold` when one lies strictly on the other side, `inconclusive` otherwise "
                 "(an interval touching 0, or none: too few runs), `not tested` when a method it needs did not run. "
                 f"Accuracy: the proxy's {ACCURACY_LABEL} (`ACCURACY`).",
        evidence_header=["| quantity | value [95% interval] | runs | claimed | on the claimed side |",
                         "|---|---:|---:|---|---|"],
        evidence_line=_evidence_line)
