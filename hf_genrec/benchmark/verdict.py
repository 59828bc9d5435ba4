"""The post's claims, one by one, decided by the benchmark's own intervals (`results.json` `verdict`, `results.md`
"Claims").

The Netflix post's qualitative result (docs/benchmark.md, "Claims"), in our words:

- C1: A-SFT beats reward-weighted BC and every other method on the ranking metrics of high-reward trajectories.
- C2: PPO, RS-DPO and RS-IPO reach a high judge reward but overfit the reward model.
- C3: CQL improves robustly, but less than A-SFT.
- C4: A-SFT is better on both ranking and judge reward.

Every claim is a list of **deciding comparisons**: a row's % change against a reference row on one subset and
metric, with the paired bootstrap 95% interval over seeds and users that the report computes
(`report.summarize`; see its module docstring), and the side of 0 the claim needs it on. Comparisons against
reward-weighted BC are read from `results["methods"]` (the numbers of the results tables); comparisons against
A-SFT from a second `summarize` call with A-SFT as the reference (the same bootstrap, made in `run_benchmark`).
A claim's status:

- `holds`: every deciding interval lies strictly on the claimed side of 0;
- `does not hold`: some deciding interval lies strictly on the other side;
- `inconclusive`: otherwise (an interval containing or touching 0, or no interval, e.g. one seed and too few users);
- `not tested`: a method the claim needs did not run.

"Ranking" is NDCG@10 and HR@10 on the high-reward subset (`selection_subset`: `high_reward_trajectory` on
`future`, `high_reward_target` otherwise); "judge reward" is the judge score over all test users (`all`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..evaluation.metrics import SUBSET_ALL
from .formatting import format_pct
from .presets import DEFAULT_METHODS, REFERENCE_METHOD, selection_subset

__all__ = [
    "CLAIMS",
    "HOLDS",
    "INCONCLUSIVE",
    "NOT_HOLD",
    "NOT_TESTED",
    "RANKING_METRICS",
    "VERDICT_REFERENCE",
    "claim_verdicts",
    "claims_markdown",
    "claims_section",
    "evidence_status",
    "interval_side",
    "verdict_subsets",
]

HOLDS = "holds"
NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not tested"
# The row the second `summarize` call compares every method against.
VERDICT_REFERENCE = "asft"
RANKING_METRICS = ("ndcg@10", "hr@10")
JUDGE_METRIC = "judge"  # `report.JUDGE` (report imports this module, so the name is repeated, not imported)
# The methods the post's claims are about (PPO, RS-DPO, RS-IPO overfit; CQL improves less).
OVERFITTING_METHODS = ("ppo", "dpo", "ipo")
CQL = "cql"

CLAIMS: dict[str, dict[str, str]] = {
    "C1": {"statement": "A-SFT beats reward-weighted BC and every other method on the ranking metrics of "
                        "high-reward trajectories.",
           "rule": "for every other post-training method run: A-SFT vs RW-BC above 0 and method vs A-SFT below 0, "
                   "NDCG@10 and HR@10 on the high-reward subset."},
    "C2": {"statement": "PPO, RS-DPO and RS-IPO reach a high judge reward but overfit the reward model.",
           "rule": "overfitting = the judge says better while held-out ranking says worse: for each of them that "
                   "ran, judge score (all test users) vs RW-BC above 0, and NDCG@10 and HR@10 on the high-reward "
                   "subset vs RW-BC below 0 (their ranking vs A-SFT is shown, not deciding)."},
    "C3": {"statement": "CQL improves robustly, but less than A-SFT.",
           "rule": "CQL vs RW-BC above 0 and CQL vs A-SFT below 0, NDCG@10 and HR@10 on `all` and on the "
                   "high-reward subset."},
    "C4": {"statement": "A-SFT is better on both ranking and judge reward.",
           "rule": "A-SFT vs RW-BC above 0 on NDCG@10 and HR@10 (high-reward subset) and the judge score (all "
                   "test users); and, per metric, the best other method (highest value) vs A-SFT below 0."},
}


def verdict_subsets(protocol: str) -> tuple[str, str]:
    """The subsets the claims read: `all` and the high-reward subset of `protocol` (`selection_subset`)."""
    return SUBSET_ALL, selection_subset(protocol)


def interval_side(low: float | None, high: float | None, expected: str) -> str:
    """Where the interval `[low, high]` lies against the `expected` side of 0 (`"above"` or `"below"`):
    `"claimed"` strictly on it, `"other"` strictly on the other side, `"undecided"` otherwise (containing or
    touching 0, or missing: `None`/NaN)."""
    if expected not in ("above", "below"):
        raise ValueError(f"expected={expected!r} is not a side of 0; pass 'above' or 'below'.")
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "undecided"
    if low > 0:
        return "claimed" if expected == "above" else "other"
    if high < 0:
        return "claimed" if expected == "below" else "other"
    return "undecided"


def _comparison(summary: dict[str, Any], reference: str, row: str, subset: str, metric: str, expected: str,
                *, deciding: bool = True) -> dict[str, Any]:
    """One piece of evidence: `row` vs `reference` on `subset` and `metric` from a `summarize`-shaped `summary`
    (`{"rows": ...}` or results.json's `{"methods": ...}`) whose reference is `reference`. The summary names the %
    change `pct_vs_rwbc` whatever its reference."""
    rows = summary["methods"] if "methods" in summary else summary["rows"]
    entry = rows[row]["subsets"][subset]["metrics"][metric]
    low, high = entry["ci95"]
    return {"row": row, "reference": reference, "subset": subset, "metric": metric, "value": entry["value"],
            "reference_value": rows[reference]["subsets"][subset]["metrics"][metric]["value"],
            "pct": entry["pct_vs_rwbc"], "ci95": [low, high], "ci95_over": entry.get("ci95_over"),
            "expected": expected, "side": interval_side(low, high, expected), "deciding": deciding}


def evidence_status(evidence: list[dict[str, Any]]) -> str:
    """A claim's status from its deciding evidence: holds when every deciding interval is on the claimed side, does
    not hold when one is on the other side, inconclusive otherwise, not tested without deciding evidence."""
    sides = [item["side"] for item in evidence if item["deciding"]]
    if not sides:
        return NOT_TESTED
    if "other" in sides:
        return NOT_HOLD
    return HOLDS if all(side == "claimed" for side in sides) else INCONCLUSIVE


def _claim(name: str, evidence: list[dict[str, Any]], *, missing: list[str], not_run: list[str]) -> dict[str, Any]:
    """The record of one claim; `missing`: methods it needs that did not run (then `not tested`)."""
    note = ""
    if missing:
        note = f"not tested: {', '.join(missing)} did not run (add it to --methods)."
    elif not_run:
        note = f"decided among the methods run; not run: {', '.join(not_run)}."
    return {"claim": name, **CLAIMS[name], "status": NOT_TESTED if missing else evidence_status(evidence),
            "evidence": [] if missing else evidence, "not_run": not_run, "note": note}


def claim_verdicts(results: dict[str, Any], versus_asft: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Decide each of the post's claims (C1-C4, module docstring) on a finished benchmark.

    Args:
        results: `results.json`'s content so far: `config` (`protocol`) and `methods` (`summarize` against
            reward-weighted BC: rows of kind `method` are the post-training methods, the pretrained model and the
            ablations are not compared).
        versus_asft: `summarize(method_rows, "asft", subsets=verdict_subsets(protocol))`, the same statistics with
            A-SFT as the reference; `None` when A-SFT did not run.

    Returns:
        One record per claim: `claim`, `statement`, `rule`, `status` (`holds`, `does not hold`, `inconclusive` or
        `not tested`), `evidence` (comparisons: `row`, `reference`, `subset`, `metric`, `value`, `reference_value`,
        `pct` (% change of `row` vs `reference`), `ci95`, `ci95_over`, `expected` (`above`/`below` 0), `side`
        (`claimed`, `other`, `undecided`), `deciding`), `not_run` (methods the claim names that did not run) and
        `note`.
    """
    methods = results["methods"]
    ran = [name for name, row in methods.items() if row["kind"] == "method"]
    _, high = verdict_subsets(results["config"]["protocol"])
    base = {"results": results, "versus_asft": versus_asft, "ran": ran, "high": high}
    return [_c1(**base), _c2(**base), _c3(**base), _c4(**base)]


def _missing(ran: list[str], needed: tuple[str, ...], versus_asft: dict[str, Any] | None) -> list[str]:
    missing = [method for method in needed if method not in ran]
    if VERDICT_REFERENCE in needed and VERDICT_REFERENCE not in missing and versus_asft is None:
        missing.append(f"{VERDICT_REFERENCE} (no statistics against it)")
    return missing


def _c1(results: dict[str, Any], versus_asft: dict[str, Any] | None, ran: list[str],
        high: str) -> dict[str, Any]:
    others = [m for m in ran if m not in (VERDICT_REFERENCE, REFERENCE_METHOD)]
    missing = _missing(ran, (VERDICT_REFERENCE, REFERENCE_METHOD), versus_asft)
    evidence = []
    if not missing:
        for metric in RANKING_METRICS:
            evidence.append(_comparison(results, REFERENCE_METHOD, VERDICT_REFERENCE, high, metric, "above"))
            evidence += [_comparison(versus_asft, VERDICT_REFERENCE, m, high, metric, "below") for m in others]
    not_run = [m for m in DEFAULT_METHODS if m not in ran]
    return _claim("C1", evidence, missing=missing, not_run=not_run)


def _c2(results: dict[str, Any], versus_asft: dict[str, Any] | None, ran: list[str],
        high: str) -> dict[str, Any]:
    named = [m for m in OVERFITTING_METHODS if m in ran]
    missing = _missing(ran, (REFERENCE_METHOD,), versus_asft)
    if not named:
        missing += ["ppo, dpo and ipo (at least one)"]
    evidence = []
    if not missing:
        for m in named:
            evidence.append(_comparison(results, REFERENCE_METHOD, m, SUBSET_ALL, JUDGE_METRIC, "above"))
            evidence += [_comparison(results, REFERENCE_METHOD, m, high, metric, "below") for metric in RANKING_METRICS]
            if versus_asft is not None:
                evidence += [_comparison(versus_asft, VERDICT_REFERENCE, m, high, metric, "below", deciding=False)
                             for metric in RANKING_METRICS]
    not_run = [m for m in OVERFITTING_METHODS if m not in ran]
    return _claim("C2", evidence, missing=missing, not_run=not_run)


def _c3(results: dict[str, Any], versus_asft: dict[str, Any] | None, ran: list[str],
        high: str) -> dict[str, Any]:
    missing = _missing(ran, (CQL, REFERENCE_METHOD, VERDICT_REFERENCE), versus_asft)
    evidence = []
    if not missing:
        for subset in (SUBSET_ALL, high):
            for metric in RANKING_METRICS:
                evidence.append(_comparison(results, REFERENCE_METHOD, CQL, subset, metric, "above"))
                evidence.append(_comparison(versus_asft, VERDICT_REFERENCE, CQL, subset, metric, "below"))
    return _claim("C3", evidence, missing=missing, not_run=[])


def _c4(results: dict[str, Any], versus_asft: dict[str, Any] | None, ran: list[str],
        high: str) -> dict[str, Any]:
    missing = _missing(ran, (VERDICT_REFERENCE, REFERENCE_METHOD), versus_asft)
    others = [m for m in ran if m not in (VERDICT_REFERENCE, REFERENCE_METHOD)]
    evidence = []
    if not missing:
        for subset, metric in [(high, metric) for metric in RANKING_METRICS] + [(SUBSET_ALL, JUDGE_METRIC)]:
            evidence.append(_comparison(results, REFERENCE_METHOD, VERDICT_REFERENCE, subset, metric, "above"))
            values = {m: results["methods"][m]["subsets"][subset]["metrics"][metric]["value"] for m in others}
            values = {m: v for m, v in values.items() if v is not None and not math.isnan(v)}
            if values:  # the best other method by value (chosen on the point estimate, then tested)
                best = max(values, key=values.get)
                evidence.append(_comparison(versus_asft, VERDICT_REFERENCE, best, subset, metric, "below"))
    not_run = [m for m in DEFAULT_METHODS if m not in ran]
    return _claim("C4", evidence, missing=missing, not_run=not_run)


# ------------------------------------------------------------------------------------------------ markdown
def _evidence_line(item: dict[str, Any]) -> str:
    low, high = item["ci95"]
    side = {"claimed": "yes", "other": "**no**", "undecided": "undecided"}[item["side"]]
    metric = item["metric"] if item["metric"] == JUDGE_METRIC else item["metric"].upper()
    return (f"| {item['row']} vs {item['reference']} | `{item['subset']}` | {metric} | "
            f"{format_pct(item['pct'])}% [{format_pct(low)}, {format_pct(high)}] | {item['expected']} 0 | "
            f"{side if item['deciding'] else side + ' (shown, not deciding)'} |")


def claims_section(verdict: list[dict[str, Any]] | None, *, title: str, preamble: str, evidence_header: list[str],
                   evidence_line: Callable[[dict[str, Any]], str]) -> list[str]:
    """A claims section of a `results.md`: `title`, `preamble`, one summary line per claim (its status and how many
    deciding intervals lie on each side), then per claim its statement, rule, note and evidence table
    (`evidence_header` lines, one `evidence_line(item)` per evidence item). Nothing when `verdict` is missing."""
    if not verdict:
        return []
    lines = [title, "", preamble, "",
             "| claim | status | deciding intervals: on the claimed side / on the other side / undecided |",
             "|---|---|---|"]
    for claim in verdict:
        sides = [item["side"] for item in claim["evidence"] if item["deciding"]]
        lines.append(f"| {claim['claim']} | {claim['status']} | {sides.count('claimed')} / {sides.count('other')} / "
                     f"{sides.count('undecided')} |")
    lines.append("")
    for claim in verdict:
        lines += [f"### {claim['claim']}: {claim['statement']} **{claim['status']}**", "", f"Rule: {claim['rule']}"]
        if claim["note"]:
            lines[-1] += f" Note: {claim['note']}"
        lines.append("")
        if claim["evidence"]:
            lines += [*evidence_header, *(evidence_line(item) for item in claim["evidence"]), ""]
    return lines


def claims_markdown(verdict: list[dict[str, Any]] | None) -> list[str]:
    """The "Claims" section of `results.md`: per claim its status, the rule, and the deciding % changes with their
    paired 95% intervals (nothing when `verdict` is missing)."""
    return claims_section(
        verdict, title="## Claims",
        preamble="Each of the post's claims, decided by the paired bootstrap 95% intervals of the tables: `holds` when "
                 "every deciding interval lies strictly on the claimed side of 0, `does not hold` when one lies strictly "
                 "on the other side, `inconclusive` otherwise (an interval touching 0 included), `not tested` when a "
                 "method it needs did not run. Ranking: NDCG@10 and HR@10 on the high-reward subset; judge: all test "
                 "users.",
        evidence_header=["| comparison | subset | metric | % change [95% interval] | claimed | on the claimed side |",
                         "|---|---|---|---:|---|---|"],
        evidence_line=_evidence_line)
