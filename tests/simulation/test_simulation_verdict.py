"""The post's claims decided in the simulated world (`hf_genrec.simulation.verdict`): hand-made `results.json` runs
where each claim must hold, must not hold, or cannot be decided."""

import itertools
import json

import numpy as np
import pytest

from hf_genrec.simulation.verdict import (
    HOLDS,
    INCONCLUSIVE,
    NOT_HOLD,
    NOT_TESTED,
    simulation_verdicts,
    verdict_markdown,
)

ACCURACIES = (0.55, 0.65, 0.75, 0.85)  # one world setting per proxy accuracy
SEEDS = 3


def _run(accuracy: float, seed: int, *, agree: bool, methods: tuple[str, ...]) -> dict:
    """One run (setting x seed). With `agree`, the world is the post's: PPO's lead over A-SFT rises with the
    accuracy (negative below 0.7, positive above), A-SFT beats RW-BC, PPO's hacking gap is A-SFT's plus 0.5, and
    NDCG@10 orders the methods as the true value does; without it, every one of these is reversed."""
    sign = 1.0 if agree else -1.0
    jitter = 0.01 * (seed - 1)  # seed-to-seed noise, smaller than every effect
    lead = sign * 2.0 * (accuracy - 0.7) + jitter
    true = {"pretrained": 1.0 + jitter, "rwbc": 1.5 - sign * 0.2 + jitter, "asft": 1.5 - jitter,
            "ppo_true": 3.0}
    true["ppo"] = true["asft"] + lead
    true["dpo"] = true["asft"] + 0.1
    gaps = {"asft": 0.1 + jitter, "ppo": 0.1 + sign * 0.5, "dpo": 0.1 + sign * 0.3 - jitter,
            "pretrained": 0.0, "rwbc": 0.1, "ppo_true": 0.0}
    rows = {}
    for method in methods:
        # NDCG@10 increases (agree) or decreases (not) with the true value; ppo_true's is unrelated on purpose.
        ndcg = 0.5 if method == "ppo_true" else 0.1 + sign * 0.05 * true[method]
        rows[method] = {"true_value": true[method], "proxy_value": true[method] + gaps[method],
                        "hacking_gap": gaps[method], "ndcg@10": ndcg, "hr@10": 2 * ndcg}
    return {"name": f"acc{accuracy}", "seed": seed, "setting": {"noise_std": 1 - accuracy},
            "proxy_accuracy": {"on_logging": {"pairwise_accuracy": accuracy + 0.001 * seed},
                               "on_support": {"pairwise_accuracy": 0.9}},
            "methods": rows}


def _results(*, agree: bool = True, accuracies=ACCURACIES, seeds: int = SEEDS,
             methods=("pretrained", "rwbc", "asft", "dpo", "ppo", "ppo_true")) -> dict:
    return {"runs": [_run(accuracy, seed, agree=agree, methods=methods)
                     for seed in range(seeds) for accuracy in accuracies]}


def _by_claim(results: dict) -> dict:
    return {claim["claim"]: claim for claim in simulation_verdicts(results)}


def test_every_claim_holds_in_a_world_that_agrees_with_the_post():
    verdicts = _by_claim(_results(agree=True))
    assert {name: claim["status"] for name, claim in verdicts.items()} == dict.fromkeys(
        ("W1", "W2", "W3", "W4", "W5"), HOLDS)
    # W3 decides PPO and DPO (both ran); IPO did not run and is named, not counted against the claim.
    assert [item["quantity"].split(")")[0] for item in verdicts["W3"]["evidence"] if item["deciding"]] == [
        "gap(ppo", "gap(dpo"]
    assert verdicts["W3"]["not_run"] == ["ipo"]


def test_every_claim_fails_in_a_world_that_contradicts_the_post():
    verdicts = _by_claim(_results(agree=False))
    assert {name: claim["status"] for name, claim in verdicts.items()} == dict.fromkeys(
        ("W1", "W2", "W3", "W4", "W5"), NOT_HOLD)


def test_evidence_is_computed_from_the_runs():
    results = _results()
    verdicts = _by_claim(results)
    runs = results["runs"]
    # W4: the paired mean over runs of V*(asft) - V*(rwbc), inside its own interval.
    (w4,) = verdicts["W4"]["evidence"]
    differences = [run["methods"]["asft"]["true_value"] - run["methods"]["rwbc"]["true_value"] for run in runs]
    assert w4["value"] == pytest.approx(np.mean(differences)) and w4["num_runs"] == len(runs)
    assert w4["ci95"][0] <= w4["value"] <= w4["ci95"][1]
    # W1: Spearman over runs of the lead against the accuracy (no ties here: Pearson of the ranks).
    accuracy = np.array([run["proxy_accuracy"]["on_logging"]["pairwise_accuracy"] for run in runs])
    lead = np.array([run["methods"]["ppo"]["true_value"] - run["methods"]["asft"]["true_value"] for run in runs])
    ranks = [np.argsort(np.argsort(values)) for values in (accuracy, lead)]
    assert verdicts["W1"]["evidence"][0]["value"] == pytest.approx(np.corrcoef(*ranks)[0, 1])
    # W1's thirds and W2's halves: the runs of the lowest / highest accuracies.
    order = np.argsort(accuracy)
    assert verdicts["W1"]["evidence"][1]["value"] == pytest.approx(lead[order[: len(runs) // 3]].mean())
    assert verdicts["W2"]["evidence"][1]["value"] == pytest.approx(lead[order[len(runs) // 2:]].mean())


def test_kendall_tau_of_offline_ranking_against_truth():
    # One run whose NDCG@10 swaps two of its four methods: tau-b (no ties) = mean over pairs of the sign products.
    run = _run(0.6, 0, agree=True, methods=("pretrained", "rwbc", "asft", "ppo", "ppo_true"))
    run["methods"]["rwbc"]["ndcg@10"], run["methods"]["asft"]["ndcg@10"] = (
        run["methods"]["asft"]["ndcg@10"], run["methods"]["rwbc"]["ndcg@10"])
    (w5,) = _by_claim({"runs": [run]})["W5"]["evidence"]
    methods = ("pretrained", "rwbc", "asft", "ppo")
    signs = [np.sign(run["methods"][a]["ndcg@10"] - run["methods"][b]["ndcg@10"])
             * np.sign(run["methods"][a]["true_value"] - run["methods"][b]["true_value"])
             for a, b in itertools.combinations(methods, 2)]
    assert w5["value"] == pytest.approx(np.mean(signs))
    assert w5["ci95"] == [None, None]  # one run: no interval


def test_too_few_runs_are_inconclusive():
    # One world setting x 3 seeds: 3 runs, fewer than a correlation needs; halves of one run have no interval.
    verdicts = _by_claim(_results(accuracies=(0.85,)))
    assert verdicts["W1"]["status"] == INCONCLUSIVE
    assert verdicts["W1"]["evidence"][0]["ci95"] == [None, None] and "at least 4 runs" in verdicts["W1"]["note"]
    assert verdicts["W2"]["status"] == INCONCLUSIVE
    # The paired claims still decide on 3 runs.
    assert verdicts["W4"]["status"] == HOLDS
    # One run only: nothing has an interval.
    single = _by_claim(_results(accuracies=(0.85,), seeds=1))
    assert {claim["status"] for claim in single.values()} == {INCONCLUSIVE}


def test_one_accuracy_is_inconclusive_for_figure_one():
    results = _results()
    for run in results["runs"]:
        run["proxy_accuracy"]["on_logging"]["pairwise_accuracy"] = 0.7
    verdicts = _by_claim(results)
    assert verdicts["W1"]["status"] == INCONCLUSIVE and "1 distinct accuracies" in verdicts["W1"]["note"]
    assert verdicts["W2"]["status"] == INCONCLUSIVE


def test_differences_on_both_sides_of_zero_are_inconclusive():
    results = _results()
    for index, run in enumerate(results["runs"]):  # A-SFT alternately 0.3 above and below RW-BC
        run["methods"]["asft"]["true_value"] = run["methods"]["rwbc"]["true_value"] + (0.3 if index % 2 else -0.3)
    w4 = _by_claim(results)["W4"]
    assert w4["status"] == INCONCLUSIVE and w4["evidence"][0]["side"] == "undecided"


def test_missing_methods_are_not_tested():
    verdicts = _by_claim(_results(methods=("pretrained", "rwbc", "asft", "ppo_true")))
    for name in ("W1", "W2"):
        assert verdicts[name]["status"] == NOT_TESTED and verdicts[name]["not_run"] == ["ppo"]
        assert verdicts[name]["evidence"] == []
    assert verdicts["W3"]["status"] == NOT_TESTED and verdicts["W3"]["not_run"] == ["ppo", "dpo", "ipo"]
    assert verdicts["W4"]["status"] == HOLDS and verdicts["W5"]["status"] == HOLDS
    no_asft = _by_claim(_results(methods=("pretrained", "rwbc", "ppo", "ppo_true")))
    assert all(no_asft[name]["status"] == NOT_TESTED and "asft" in no_asft[name]["not_run"]
               for name in ("W1", "W2", "W3", "W4"))
    assert _by_claim(_results(methods=("asft", "ppo_true")))["W5"]["status"] == NOT_TESTED


def test_verdict_does_not_depend_on_the_order_of_runs():
    results = _results()
    shuffled = {"runs": [results["runs"][i] for i in np.random.default_rng(0).permutation(len(results["runs"]))]}
    # The bootstrap draws differ with the order, so compare statuses and point values, not intervals.
    for before, after in zip(simulation_verdicts(results), simulation_verdicts(shuffled)):
        assert before["status"] == after["status"]
        assert [item["value"] for item in before["evidence"]] == pytest.approx(
            [item["value"] for item in after["evidence"]])


def test_markdown_names_every_claim_and_its_status_and_is_json_ready():
    verdicts = simulation_verdicts(_results(methods=("pretrained", "rwbc", "asft", "ppo", "ppo_true")))
    json.dumps(verdicts, allow_nan=False)  # results.json is written strictly
    text = "\n".join(verdict_markdown(verdicts))
    for claim in verdicts:
        assert f"| {claim['claim']} | {claim['status']} |" in text
        assert f"### {claim['claim']}: {claim['statement']} **{claim['status']}**" in text
    assert "not run: dpo, ipo" in text
    assert verdict_markdown(None) == [] and verdict_markdown([]) == []


def test_gain_by_accuracy_thirds():
    from hf_genrec.simulation.verdict import gain_by_accuracy, gain_by_accuracy_markdown

    # 4 accuracies x 3 seeds = 12 runs: the least accurate third is the 4 runs at 0.55, the most accurate the 4 at 0.85.
    results = _results()
    results["runs"] = [run for run in results["runs"]  # PPO missing in one run: its thirds count the runs it has
                       if not (run["name"] == "acc0.85" and run["seed"] == 0)] + [
        {**run, "methods": {m: row for m, row in run["methods"].items() if m != "ppo"}}
        for run in results["runs"] if run["name"] == "acc0.85" and run["seed"] == 0]
    table = gain_by_accuracy(results)
    assert table["reference"] == "rwbc"
    assert [group["num_runs"] for group in table["groups"]] == [4, 4, 4]
    # accuracy + 0.001 * seed: the thirds' ranges
    assert table["groups"][0]["accuracy_min"] == pytest.approx(0.55)
    assert table["groups"][0]["accuracy_max"] == pytest.approx(0.65)  # 0.550, 0.551, 0.552 and 0.650
    assert table["groups"][2]["accuracy_min"] == pytest.approx(0.752)
    assert "rwbc" not in table["methods"] and set(table["methods"]) == {"pretrained", "asft", "dpo", "ppo", "ppo_true"}
    # asft - rwbc = 0.2 - 2 jitter, jitter = 0.01 (seed - 1): the least accurate third's seeds are 0, 1, 2, 0
    assert table["methods"]["asft"][0]["mean"] == pytest.approx(0.2 - 2 * np.mean([-0.01, 0.0, 0.01, -0.01]))
    # ppo - rwbc = (asft - rwbc) + lead = 0.2 - 2 jitter + 2 (accuracy - 0.7) + jitter; the most accurate third is
    # 0.75 seed 2 and 0.85 seeds 0-2, of which PPO ran in all but 0.85 seed 0
    low, _, high = table["methods"]["ppo"]
    assert low["num_runs"] == 4 and high["num_runs"] == 3

    def gain(accuracy: float, seed: int) -> float:
        return 0.2 - 0.01 * (seed - 1) + 2 * (accuracy - 0.7)

    assert low["mean"] == pytest.approx(np.mean([gain(0.55, 0), gain(0.55, 1), gain(0.55, 2), gain(0.65, 0)]))
    assert high["mean"] == pytest.approx(np.mean([gain(0.75, 2), gain(0.85, 1), gain(0.85, 2)]))
    assert low["ci95"][0] <= low["mean"] <= low["ci95"][1]
    lines = gain_by_accuracy_markdown(table)
    assert lines[0].startswith("## True-value gain by proxy accuracy")
    assert any(line.startswith("| ppo |") for line in lines)
    assert gain_by_accuracy_markdown({"groups": [], "methods": {}}) == []
