"""`hf-genrec simulate` end to end on a micro preset: the results' fields, the reference values, resumption."""

import importlib.util
import json
import math

import pytest

from hf_genrec.cli import build_parser
from hf_genrec.commands.simulate import simulate
from hf_genrec.simulation.study import (
    GAIN_FIGURE,
    KL_FIGURE,
    TRUE_PPO,
    WINNER_FIGURE,
    SimulationPreset,
    training_recipes,
)

_MODEL = {"hidden_size": 8, "num_hidden_layers": 1, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 10,
          "max_position_embeddings": 13, "num_negatives": 8, "input_dropout": 0.0, "linear_dropout": 0.0}
MICRO = SimulationPreset(
    "micro", world={"num_users": 60, "num_items": 20, "dim": 3, "seed": 0}, events_per_user=8,
    logging={"strength": 1.0}, observation={"trap_share": 0.2}, noise_levels=(0.5,), log_sizes=(60,),
    coverages=(0.8,), training=training_recipes("micro", _MODEL, epochs=1, reward_epochs=1, members=2, steps=2, batch=20),
    methods=("sft", "rwbc", "asft", "dpo", "ppo"),
)
METHODS = ["pretrained", "sft", "rwbc", "asft", "dpo", "ppo", TRUE_PPO]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("simulate")
    return output, simulate(output, preset=MICRO, seeds=1, show_progress=False)


def test_results_fields_and_reference_values(run):
    output, results = run
    loaded = json.loads((output / "results.json").read_text())
    assert (output / "results.md").read_text().startswith("# hf-genrec simulate")
    if importlib.util.find_spec("matplotlib") is not None:  # figures are optional, as the benchmark's
        assert all((output / name).is_file() for name in (KL_FIGURE, GAIN_FIGURE, WINNER_FIGURE))
    assert loaded["config"]["methods"] == METHODS
    (entry,) = loaded["runs"]
    assert entry["setting"] == {"noise_std": 0.5, "num_users": 60, "coverage": 0.8}
    assert list(entry["methods"]) == METHODS
    for name, row in entry["methods"].items():
        assert set(row) == {"true_value", "rollout_value", "proxy_value", "hacking_gap", "kl_to_pretrained",
                            "kl_to_logging", "trap_mass", "hr@10", "ndcg@10"}, name
        assert math.isfinite(row["rollout_value"]), name
        assert row["hacking_gap"] == pytest.approx(row["proxy_value"] - row["true_value"])
        assert 0.0 <= row["hr@10"] <= 1.0 and 0.0 <= row["trap_mass"] <= 1.0
        # No policy beats the oracle, which takes the best unseen item of every context.
        assert row["true_value"] <= entry["oracle_true_value"] + 1e-9, name
    assert entry["methods"]["pretrained"]["kl_to_pretrained"] == pytest.approx(0.0, abs=1e-5)  # 1e-6 smoothing
    assert entry["oracle_true_value"] > entry["logging_true_value"] > entry["uniform_true_value"]
    assert entry["oracle_rollout_value"] > entry["uniform_rollout_value"]
    assert loaded["config"]["preset_settings"]["rollout_horizon"] == 5
    for where in ("on_support", "off_support", "on_logging"):  # on_logging: the claims' and Figure 1's axis
        assert {"pearson", "spearman", "pairwise_accuracy", "rmse", "num_pairs"} <= set(entry["proxy_accuracy"][where])
    assert entry["proxy_accuracy"]["on_support"]["num_pairs"] > 0
    summary = loaded["settings"]["noise=0.5,users=60,coverage=0.8"]
    assert summary["methods"]["sft"]["true_value"]["mean"] == pytest.approx(entry["methods"]["sft"]["true_value"])
    assert summary["methods"]["sft"]["true_value"]["std"] is None  # one seed
    assert not math.isnan(summary["oracle_true_value"]["mean"])


def test_winner_map_and_claims_in_the_results(run):
    output, _ = run
    loaded = json.loads((output / "results.json").read_text())
    (entry,) = loaded["runs"]
    candidates = {m: row["true_value"] for m, row in entry["methods"].items() if m != TRUE_PPO}
    winner = loaded["winner_map"]["noise=0.5,users=60,coverage=0.8"]
    assert winner["winner"] == max(candidates, key=candidates.get) and winner["clear"] is False  # one seed
    claims = {claim["claim"]: claim["status"] for claim in loaded["verdict"]}
    assert set(claims) == {"W1", "W2", "W3", "W4", "W5"}
    assert claims["W1"] == "inconclusive"  # one setting and one seed cannot decide Figure 1's shape
    markdown = (output / "results.md").read_text()
    assert "## Winner map" in markdown and "Claims in the simulated world" in markdown
    # Figure 1 as a table: one run is its own middle third; the gain is A-SFT's V* minus RW-BC's in that run
    gains = loaded["gain_by_accuracy"]
    assert [group["num_runs"] for group in gains["groups"]] == [0, 1, 0]
    asft_gain = entry["methods"]["asft"]["true_value"] - entry["methods"]["rwbc"]["true_value"]
    assert gains["methods"]["asft"][1]["mean"] == pytest.approx(asft_gain)
    assert "## True-value gain by proxy accuracy" in markdown
    # the over-optimisation curves start at the pretrained policy and hold every trial of each tuned method
    curves = loaded["overoptimisation"]
    assert set(curves) == set(entry["tuning"])
    for method, points in curves.items():
        assert points[0]["trial"] == "pretrained" and points[0]["sqrt_kl"] == pytest.approx(0.0, abs=1e-2)
        assert len(points) == 1 + len(entry["tuning"][method]["trials"])
        assert [point["sqrt_kl"] for point in points] == sorted(point["sqrt_kl"] for point in points)
    assert "## Proxy and true value against sqrt(KL)" in markdown
    assert loaded["overall"]["num_runs"] == 1
    assert loaded["overall"]["methods"]["ppo"]["true_value"]["mean"] == pytest.approx(entry["methods"]["ppo"]["true_value"])


def test_rerun_reuses_every_stage(run):
    output, first = run
    again = simulate(output, preset=MICRO, seeds=1, show_progress=False)
    assert all(entry["cached"] for entry in again["stages"])
    assert again["runs"] == json.loads(json.dumps(first["runs"]))


def test_cli_parses_simulate_flags():
    args = build_parser().parse_args(["simulate", "--preset", "tiny", "--seeds", "3", "--output", "out"])
    assert (args.preset, args.seeds, args.output) == ("tiny", 3, "out")
    with pytest.raises(ValueError, match="--methods"):
        simulate("unused", preset=MICRO, methods=["nope"])


def test_seeds_default_to_the_preset(monkeypatch):
    from hf_genrec.commands import simulate as command
    from hf_genrec.simulation.study import PRESETS

    assert (PRESETS["tiny"].default_seeds, PRESETS["quick"].default_seeds, PRESETS["full"].default_seeds) == (1, 3, 3)
    asked = []
    monkeypatch.setattr(command, "run_simulation", lambda output, preset, seeds, **kwargs: asked.append(seeds))
    simulate("unused", preset="quick")
    simulate("unused", preset="quick", seeds=2)
    assert asked == [3, 2]
    assert build_parser().parse_args(["simulate", "--output", "out"]).seeds is None  # the preset decides


def test_propensities_flag_reaches_the_simulate_stage(monkeypatch):
    from hf_genrec.commands import simulate as command
    from hf_genrec.simulation.study import WorldSetting, simulation_inputs

    asked = []
    monkeypatch.setattr(command, "run_simulation", lambda output, preset, seeds, **kwargs: asked.append(preset))
    args = build_parser().parse_args(["simulate", "--propensities", "wrong", "--output", "out"])
    assert args.propensities == "wrong"
    assert build_parser().parse_args(["simulate"]).propensities is None  # the preset's (hidden)
    simulate("unused", preset=MICRO, propensities=args.propensities)
    simulate("unused", preset=MICRO)
    setting = WorldSetting(0.5, 60, 0.8)
    # the mode is part of the simulate stage's inputs (what it writes propensities.csv from), hidden keeps none
    assert simulation_inputs(asked[0], setting, 0)["propensities"]["mode"] == "wrong"
    assert "propensities" not in simulation_inputs(asked[1], setting, 0)
    with pytest.raises(ValueError, match="--propensities 'bogus'"):
        simulate("unused", preset=MICRO, propensities="bogus")
