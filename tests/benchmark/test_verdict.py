"""The claim-by-claim verdict (issue 13 item 11): each status on summaries built by hand, the interval-side rule at
its boundaries, and, on the test preset's benchmark, that `results.json`'s `verdict` quotes the `methods` numbers."""

import json
import math

import pytest
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.benchmark.report import JUDGE
from hf_genrec.benchmark.verdict import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    NOT_TESTED,
    RANKING_METRICS,
    claim_verdicts,
    claims_markdown,
    interval_side,
)
from hf_genrec.commands.benchmark import benchmark

HIGH = "high_reward_trajectory"
SUBSETS = ("all", HIGH)
METRICS = (*RANKING_METRICS, JUDGE)
ALL_METHODS = ("sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo")


def _summary(intervals: dict, values: dict, methods, key: str) -> dict:
    """A `summarize`-shaped section: `intervals[(row, subset, metric)]` (or `[row]` for every subset and metric) is
    the row's % interval vs the reference; the % change is the interval's midpoint."""
    rows = {}
    for row in methods:
        subsets = {}
        for subset in SUBSETS:
            metrics = {}
            for metric in METRICS:
                low, high = intervals.get((row, subset, metric), intervals.get(row, (-1.0, 1.0)))
                metrics[metric] = {"value": values.get((row, metric), 0.5), "pct_vs_rwbc": (low + high) / 2,
                                   "ci95": [low, high], "ci95_over": "seeds x users"}
            subsets[subset] = {"metrics": metrics}
        rows[row] = {"kind": "method", "method": row, "subsets": subsets}
    return {key: rows}


def _inputs(vs_rwbc=None, vs_asft=None, values=None, methods=ALL_METHODS):
    """(results, versus_asft) where every claim holds, with `vs_rwbc` / `vs_asft` overriding intervals."""
    holding_rwbc = {"rwbc": (0.0, 0.0), "asft": (2.0, 9.0), "cql": (0.5, 4.0), "sft": (-3.0, 3.0)}
    for m in ("dpo", "ipo", "ppo"):  # the judge up, held-out ranking down
        holding_rwbc[m] = (-6.0, -1.0)
        holding_rwbc[(m, "all", JUDGE)] = (3.0, 12.0)
    holding_asft = {m: (-9.0, -1.0) for m in methods if m != "asft"}
    holding_asft["asft"] = (0.0, 0.0)
    results = _summary({**holding_rwbc, **(vs_rwbc or {})}, values or {}, methods, "methods")
    results["config"] = {"protocol": "future"}
    versus = _summary({**holding_asft, **(vs_asft or {})}, values or {}, methods, "rows") if "asft" in methods else None
    return results, versus


def _by_claim(results, versus):
    return {claim["claim"]: claim for claim in claim_verdicts(results, versus)}


@pytest.mark.parametrize("low, high, expected, side", [
    (0.001, 5.0, "above", "claimed"), (0.0, 5.0, "above", "undecided"), (-5.0, 0.0, "above", "undecided"),
    (-5.0, -0.001, "above", "other"), (-5.0, -0.001, "below", "claimed"), (-5.0, 0.0, "below", "undecided"),
    (0.0, 5.0, "below", "undecided"), (0.001, 5.0, "below", "other"), (-1.0, 1.0, "above", "undecided"),
    (None, None, "above", "undecided"), (math.nan, math.nan, "below", "undecided"),
])
def test_interval_side_boundaries(low, high, expected, side):
    # An interval touching 0 decides nothing: only a strict side counts.
    assert interval_side(low, high, expected) == side


def test_interval_side_rejects_unknown_side():
    with pytest.raises(ValueError, match="expected='up'"):
        interval_side(1.0, 2.0, "up")


def test_every_claim_holds_on_a_constructed_holding_case():
    verdict = _by_claim(*_inputs())
    assert {name: claim["status"] for name, claim in verdict.items()} == {c: HOLDS for c in ("C1", "C2", "C3", "C4")}
    c1 = verdict["C1"]["evidence"]
    # A-SFT vs RW-BC plus each of the five other methods vs A-SFT, per ranking metric, on the high-reward subset.
    assert len(c1) == 2 * 6 and {e["subset"] for e in c1} == {HIGH}
    assert {e["row"] for e in c1 if e["reference"] == "asft"} == {"sft", "dpo", "ipo", "cql", "ppo"}
    c2 = verdict["C2"]["evidence"]
    assert {(e["metric"], e["expected"]) for e in c2 if e["deciding"]} == {
        (JUDGE, "above"), ("ndcg@10", "below"), ("hr@10", "below")}
    assert all(e["reference"] == "asft" for e in c2 if not e["deciding"])


def test_c1_requires_every_other_method():
    # SFT alone neither clearly below nor above A-SFT: the claim "beats every other method" is not established.
    verdict = _by_claim(*_inputs(vs_asft={("sft", HIGH, "hr@10"): (-4.0, 0.5)}))
    assert verdict["C1"]["status"] == INCONCLUSIVE
    # One method strictly above A-SFT on one metric refutes it.
    verdict = _by_claim(*_inputs(vs_asft={("ppo", HIGH, "ndcg@10"): (0.2, 3.0)}))
    assert verdict["C1"]["status"] == NOT_HOLD
    assert [e["row"] for e in verdict["C1"]["evidence"] if e["side"] == "other"] == ["ppo"]


def test_c2_does_not_hold_when_ranking_improves_and_is_inconclusive_when_judge_is_flat():
    verdict = _by_claim(*_inputs(vs_rwbc={("dpo", HIGH, "ndcg@10"): (0.5, 2.0)}))
    assert verdict["C2"]["status"] == NOT_HOLD
    verdict = _by_claim(*_inputs(vs_rwbc={("ipo", "all", JUDGE): (-1.0, 4.0)}))
    assert verdict["C2"]["status"] == INCONCLUSIVE
    # The non-deciding A-SFT comparison never changes the status.
    verdict = _by_claim(*_inputs(vs_asft={("dpo", HIGH, "ndcg@10"): (5.0, 9.0)}))
    assert verdict["C2"]["status"] == HOLDS


def test_interval_touching_zero_is_inconclusive():
    verdict = _by_claim(*_inputs(vs_rwbc={("cql", "all", "hr@10"): (0.0, 3.0)}))
    assert verdict["C3"]["status"] == INCONCLUSIVE
    verdict = _by_claim(*_inputs(vs_asft={("cql", "all", "hr@10"): (-3.0, 0.0)}))
    assert verdict["C3"]["status"] == INCONCLUSIVE
    verdict = _by_claim(*_inputs(vs_asft={("cql", "all", "hr@10"): (0.0001, 3.0)}))  # CQL above A-SFT
    assert verdict["C3"]["status"] == NOT_HOLD


def test_c4_tests_the_best_other_method_per_metric():
    values = {("dpo", JUDGE): 9.0, ("cql", "ndcg@10"): 0.9}
    verdict = _by_claim(*_inputs(values=values, vs_asft={("dpo", "all", JUDGE): (-1.0, 2.0)}))
    against = {(e["metric"], e["row"]) for e in verdict["C4"]["evidence"] if e["reference"] == "asft"}
    assert (JUDGE, "dpo") in against and ("ndcg@10", "cql") in against
    assert verdict["C4"]["status"] == INCONCLUSIVE  # DPO's judge reward not separated from A-SFT's


def test_methods_not_run_make_claims_not_tested():
    results, versus = _inputs(methods=("sft", "rwbc", "asft", "dpo"))
    verdict = _by_claim(results, versus)
    assert verdict["C3"]["status"] == NOT_TESTED and verdict["C3"]["evidence"] == []
    assert "cql" in verdict["C3"]["note"]
    assert verdict["C2"]["status"] == HOLDS and verdict["C2"]["not_run"] == ["ppo", "ipo"]
    assert verdict["C1"]["not_run"] == ["ipo", "cql", "ppo"]
    # Without A-SFT there are no statistics against it: every claim about A-SFT is not tested; C2 still decides.
    results, versus = _inputs(methods=("rwbc", "dpo", "cql"))
    assert versus is None
    verdict = _by_claim(results, versus)
    assert [verdict[c]["status"] for c in ("C1", "C3", "C4")] == [NOT_TESTED] * 3
    assert verdict["C2"]["status"] == HOLDS
    verdict = _by_claim(*_inputs(methods=("rwbc", "asft", "cql")))
    assert verdict["C2"]["status"] == NOT_TESTED


def test_claims_markdown_gives_status_rule_and_intervals():
    verdict = claim_verdicts(*_inputs(vs_rwbc={("cql", "all", "hr@10"): (0.0, 3.0)}))
    text = "\n".join(claims_markdown(verdict))
    assert text.startswith("## Claims")
    assert "### C3: CQL improves robustly, but less than A-SFT. **inconclusive**" in text
    assert "| cql vs rwbc | `all` | HR@10 | +1.5% [+0.0, +3.0] | above 0 | undecided |" in text
    assert text.count("Rule: ") == 4
    assert "| C3 | inconclusive | 7 / 0 / 1 |" in text and "| C1 | holds | 12 / 0 / 0 |" in text
    assert claims_markdown(None) == []


# ------------------------------------------------------------------------------------------ the real pipeline
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("verdict")
    benchmark(output, preset=TEST_PRESET, methods=("rwbc", "asft", "dpo", "cql"), seeds=1, show_progress=False)
    return json.loads((output / "results.json").read_text()), (output / "results.md").read_text()


def test_results_verdict_quotes_the_methods_numbers(run):
    results, markdown = run
    verdict = {claim["claim"]: claim for claim in results["verdict"]}
    assert list(verdict) == ["C1", "C2", "C3", "C4"]
    assert verdict["C2"]["not_run"] == ["ppo", "ipo"]
    methods = results["methods"]
    checked = 0
    for claim in verdict.values():
        assert claim["status"] in (HOLDS, NOT_HOLD, INCONCLUSIVE)
        for item in claim["evidence"]:
            entry = methods[item["row"]]["subsets"][item["subset"]]["metrics"][item["metric"]]
            reference = methods[item["reference"]]["subsets"][item["subset"]]["metrics"][item["metric"]]
            assert item["value"] == entry["value"] and item["reference_value"] == reference["value"]
            if item["reference"] == "rwbc":  # the very numbers of the results tables
                assert item["pct"] == entry["pct_vs_rwbc"] and item["ci95"] == entry["ci95"]
            else:  # A-SFT's bootstrap: its point estimate is the change of the tables' values
                assert item["pct"] == pytest.approx(100 * (entry["value"] - reference["value"]) / reference["value"])
            low, high = item["ci95"]
            assert item["side"] == interval_side(low, high, item["expected"])
            checked += 1
    assert checked > 0
    assert "## Claims" in markdown and f"### C3: CQL improves robustly, but less than A-SFT. **{verdict['C3']['status']}**" \
        in markdown
