"""The winner map of `hf-genrec simulate`: the best mean true value per world setting, and when its lead is clear."""

import math

import pytest

from hf_genrec.simulation.figures import plot_winner_map, winner_map


def _run(name: str, noise: float, users: int, coverage: float, seed: int, values: dict[str, float]) -> dict:
    return {"name": name, "seed": seed, "setting": {"noise_std": noise, "num_users": users, "coverage": coverage},
            "methods": {method: {"true_value": value} for method, value in values.items()}}


def _results() -> dict:
    # Setting a: A-SFT leads RW-BC by 0.1 with seed noise of 0.01 (clear); ppo_true is higher still but excluded.
    # Setting b: PPO leads RW-BC by 0.01 with seed noise of 0.05 (not clear).
    runs = []
    for seed, jitter in enumerate((-0.01, 0.0, 0.01)):
        runs.append(_run("a", 0.0, 500, 1.0, seed, {"pretrained": 2.0, "rwbc": 2.5 + jitter, "asft": 2.6 - jitter,
                                                       "ppo_true": 3.0}))
        runs.append(_run("b", 1.0, 500, 1.0, seed, {"pretrained": 2.0, "rwbc": 2.5 + 5 * jitter,
                                                       "ppo": 2.51 - 5 * jitter, "ppo_true": 3.0}))
    return {"runs": runs}


def test_winner_is_the_best_mean_true_value_without_ppo_true():
    table = winner_map(_results())
    assert table["a"]["winner"] == "asft" and table["a"]["runner_up"] == "rwbc"
    assert table["a"]["margin"] == pytest.approx(0.1)
    assert [method for method, _ in table["a"]["ranking"]] == ["asft", "rwbc", "pretrained"]
    assert table["b"]["winner"] == "ppo"


def test_clear_only_when_the_lead_exceeds_two_standard_errors():
    table = winner_map(_results())
    # Hand-computed: a's per-seed differences asft - rwbc are 0.12, 0.10, 0.08 (std 0.02), b's 0.11, 0.01, -0.09.
    assert table["a"]["margin_se"] == pytest.approx(0.02 / math.sqrt(3))
    assert table["b"]["margin_se"] == pytest.approx(0.1 / math.sqrt(3))
    assert table["a"]["clear"] is True
    assert table["b"]["clear"] is False


def test_the_lead_is_paired_by_seed():
    # Seed 1's log is easier for every method (+0.3), A-SFT leads RW-BC by 0.05 +/- 0.005 on each log: unpaired,
    # the seed spread would hide the lead (two s.e. of the difference of means about 0.28); paired it is clear.
    runs = [_run("c", 0.0, 500, 1.0, seed, {"rwbc": 2.0 + easier, "asft": 2.05 + easier + jitter})
            for seed, (easier, jitter) in enumerate(((0.0, -0.005), (0.3, 0.0), (-0.3, 0.005)))]
    entry = winner_map({"runs": runs})["c"]
    assert entry["winner"] == "asft" and entry["margin"] == pytest.approx(0.05)
    assert entry["margin_se"] == pytest.approx(0.005 / math.sqrt(3))
    assert entry["clear"] is True


def test_one_seed_is_never_clear():
    results = {"runs": [run for run in _results()["runs"] if run["seed"] == 0]}
    entry = winner_map(results)["a"]
    assert entry["winner"] == "asft" and entry["margin_se"] is None and entry["clear"] is False


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_winner_map(_results(), tmp_path / "winner_map.png")
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_overoptimisation_curves_average_each_trial_over_runs():
    from hf_genrec.simulation.figures import overoptimisation

    def run(seed: int, shift: float) -> dict:
        # PPO's trials: KL 0.25 / 1.0 / 0.04 (unsorted grid order), proxy rising and truth falling with the KL
        trials = [{"hyperparameters": {"kl_coef": coef}, "validation": 0.1, "true_value": true + shift,
                   "proxy_value": proxy, "kl_to_pretrained": kl}
                  for coef, true, proxy, kl in ((0.05, 1.8, 3.5, 0.25), (0.01, 1.5, 3.9, 1.0), (0.2, 1.9, 3.3, 0.04))]
        return {"name": "a", "seed": seed, "setting": {}, "tuning": {"ppo": {"trials": trials}},
                "methods": {"pretrained": {"true_value": 2.0 + shift, "proxy_value": 3.2, "kl_to_pretrained": 0.0}}}

    curves = overoptimisation({"runs": [run(0, -0.1), run(1, 0.1)]})
    points = curves["ppo"]
    assert [point["trial"] for point in points] == ["pretrained", "kl_coef=0.2", "kl_coef=0.05", "kl_coef=0.01"]
    assert [point["sqrt_kl"] for point in points] == pytest.approx([0.0, 0.2, 0.5, 1.0])
    assert [point["true_value"] for point in points] == pytest.approx([2.0, 1.9, 1.8, 1.5])
    assert [point["proxy_value"] for point in points] == pytest.approx([3.2, 3.3, 3.5, 3.9])
    assert points[1]["true_value_se"] == pytest.approx(0.1) and points[1]["num_runs"] == 2  # std 0.1414 / sqrt(2)
    # runs written before the trials kept their world metrics give no curve
    bare = run(0, 0.0)
    bare["tuning"]["ppo"]["trials"] = [{"hyperparameters": {"kl_coef": 0.05}, "validation": 0.1, "true_value": 1.8}]
    assert overoptimisation({"runs": [bare]}) == {}
