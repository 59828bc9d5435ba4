"""`hf-genrec benchmark` end to end on generated data with an even smaller preset, and its resume logic."""

import json

import pytest
import yaml

from hf_genrec.benchmark.presets import PRESETS, from_recipes, get_preset
from hf_genrec.benchmark.report import METRICS
from hf_genrec.cli import build_parser
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.data import SequenceCollator
from hf_genrec.data.prepared import load_prepared
from hf_genrec.evaluation import MostPopularRecommender, evaluate_ranking
from hf_genrec.evaluation.metrics import default_subsets

# The tiny preset's pipeline at test size, as overrides on the recipes: 80 users, a 1-layer HSTU, two
# optimizer steps per run; the future protocol's cutoff at the 70% time quantile, windows of H = 3 events
# (6 test users, 18 targets: the generated users' activity spans little time).
_MODEL = {"hidden_size": 8, "num_hidden_layers": 1, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 12,
          "max_position_embeddings": 15, "num_negatives": 8, "input_dropout": 0.0, "linear_dropout": 0.0}
TEST_PRESET = from_recipes(
    "test",
    synthetic={"num_users": 80, "num_items": 40, "mean_events": 30, "seed": 0},
    pretrain={"model": _MODEL, "training": {"num_train_epochs": 1, "early_stopping_patience": None,
                                            "per_device_train_batch_size": 32, "bf16": False, "seed": 0}},
    reward={"model": {"reward_head_hidden_size": 8},
            "training": {"ensemble_size": 2, "num_train_epochs": 1, "per_device_train_batch_size": 40,
                         "bf16": False, "seed": 0}},
    posttrain={"max_steps": 2, "per_device_train_batch_size": 16, "bf16": False, "seed": 0, "logging_steps": 1},
    methods={"dpo": {"num_candidates": 4}, "ipo": {"num_candidates": 4}},
    judge_training={"ensemble_size": 2},
    # Two trials per method, a validation pass after every step.
    grids={"sft": {"learning_rate": (1e-4, 1e-3)}, "rwbc": {"learning_rate": (1e-4, 1e-3)},
           "asft": {"temperature": (0.5, 1.0)}, "dpo": {"beta": (0.1, 0.3)}, "ipo": {"beta": (0.1, 0.3)},
           "cql": {"alpha": (0.1, 1.0)}, "ppo": {"kl_coef": (0.05, 0.2)}},
    eval_steps=1,
    patience=1,
    bootstrap_resamples=50,
    future={"cutoff_quantile": 0.7, "horizon": 3, "min_history": 5, "validation_fraction": 0.1},
)


def _same(a, b) -> bool:
    """Equal results, NaN (an interval a 6-user subset cannot give) equal to NaN."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench")
    return output, benchmark(output, preset=TEST_PRESET, seeds=1, show_progress=False)


def test_end_to_end_outputs_and_schema(first_run):
    output, results = first_run
    for name in ("results.json", "results.md", "improvement_vs_rwbc.png", "asft_lambda_sweep.png"):
        assert (output / name).is_file(), name
    loaded = json.loads((output / "results.json").read_text())
    assert loaded["schema_version"] == 2
    assert list(loaded["methods"]) == ["pretrained", "sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo"]
    # The default protocol is `future`: users and targets counted apart, H targets per test user.
    config = loaded["config"]
    assert config["protocol"] == "future" and config["split_options"]["horizon"] == 3
    counts = config["split_counts"]
    assert counts["test"]["users"] == loaded["num_users"]["all"] > 0
    assert counts["test"]["events"] == loaded["num_targets"]["all"] == 3 * loaded["num_users"]["all"]
    assert set(loaded["num_users"]) == set(default_subsets(has_windows=True))
    for row in loaded["methods"].values():
        for subset in default_subsets(has_windows=True):
            assert row["subsets"][subset]["num_users"] == loaded["num_users"][subset]
            assert row["subsets"][subset]["num_targets"] == loaded["num_targets"][subset]
            metrics = row["subsets"][subset]["metrics"]
            assert set(metrics) == set(METRICS)
            for entry in metrics.values():
                assert {"value", "std", "per_seed", "pct_vs_rwbc", "ci95", "pct_vs_rwbc_per_seed"} <= set(entry)
    judge = loaded["methods"]["asft"]["subsets"]["all"]["metrics"]["judge"]
    assert 0.0 < judge["value"] <= 5.0 * (1 + 0.9 + 0.81) and judge["spread"] >= 0.0
    assert loaded["methods"]["rwbc"]["subsets"]["all"]["metrics"]["mrr"]["pct_vs_rwbc"] == 0.0
    asft_trials = loaded["tuning"]["methods"]["asft"]["trials"]
    assert [trial["hyperparameters"]["temperature"] for trial in asft_trials] == [0.5, 1.0]
    assert loaded["methods"]["asft"]["temperature"] == loaded["tuning"]["methods"]["asft"]["chosen_hyperparameters"][
        "temperature"]
    assert {"reward/rmse", "reward/auc"} <= set(loaded["reward_table"]["table"]["predictors"]["ensemble_mean"])
    assert loaded["judge_reward_table"] is not None
    # The judge is a separate ensemble: other seeds than the training ensemble.
    reward_seeds = yaml.safe_load((output / "results.json").read_text())["config"]["preset_settings"]["judge_seed"]
    assert reward_seeds == 1000
    assert "## `high_reward_trajectory`" in results["markdown"] and "## `trajectory_reward_q4`" in results["markdown"]
    assert f"`all` {loaded['num_users']['all']} ({loaded['num_targets']['all']})" in results["markdown"]


def test_second_run_reuses_every_stage_and_a_change_recomputes_only_its_dependents(first_run):
    output, first = first_run
    markers = {p: p.stat().st_mtime_ns for p in (output / "stages").glob("*/stage.json")}
    again = benchmark(output, preset=TEST_PRESET, seeds=1, show_progress=False)
    assert again["stages"] and all(stage["cached"] for stage in again["stages"])
    assert {p: p.stat().st_mtime_ns for p in (output / "stages").glob("*/stage.json")} == markers
    assert _same(again["methods"]["asft"], first["methods"]["asft"])
    # The rerun's own wall time is small, but the pipeline's cost is still reported from the stages' records.
    assert again["stage_time_s"] == first["stage_time_s"] > 0

    # Another λ: only that trial is trained, and A-SFT evaluated again only if the choice changed.
    more = benchmark(output, preset=TEST_PRESET, seeds=1, lambdas=(0.5, 2.0), show_progress=False)
    ran = [stage["label"] for stage in more["stages"] if not stage["cached"]]
    assert ran[0] == "asft [temperature=2] seed 0" and set(ran[1:]) <= {"evaluate asft seed 0"}
    assert len(ran) == 1 + (more["tuning"]["methods"]["asft"]["chosen"] != first["tuning"]["methods"]["asft"]["chosen"])
    assert [trial["hyperparameters"]["temperature"] for trial in more["tuning"]["methods"]["asft"]["trials"]] == [
        0.5, 2.0]


def test_given_models_replace_their_stages(first_run, tmp_path):
    output, first = first_run
    config = first["config"]
    given = benchmark(tmp_path, preset=TEST_PRESET, methods=["sft"], lambdas=(), pretrained=config["pretrained"],
                      reward_model=config["reward_model"], judge_model=config["judge_model"], show_progress=False)
    ran = [stage["label"] for stage in given["stages"]]
    assert not {"pretrain", "reward", "judge"} & set(ran)
    assert {"reward (given)", "judge (given)"} <= set(ran)
    assert f"given ({config['judge_model']})" in given["config"]["judge"]
    # Read back from the given ensemble's reward_metrics.json.
    assert given["reward_table"]["table"] == first["reward_table"]["table"]
    # The same models and seed: the same post-trained model as in the first run.
    assert _same(given["methods"]["sft"]["subsets"], first["methods"]["sft"]["subsets"])


def test_judge_on_train_and_validation_events(first_run, tmp_path):
    output, first = first_run
    results = benchmark(tmp_path, preset=TEST_PRESET, methods=["rwbc"], pretrained=first["config"]["pretrained"],
                        judge_data="train+validation", show_progress=False)
    assert "trained on train+validation events" in results["config"]["judge"]
    # Scored on the held-out test targets after training (its training reports no table of its own).
    assert results["judge_reward_table"] is not None and results["reward_table"] is not None
    assert "judge table" in [stage["label"] for stage in results["stages"]]
    assert list(results["methods"]) == ["pretrained", "rwbc"]


def test_leave_one_out_protocol_and_the_deprecated_split_flag(first_run, tmp_path):
    pretrained = first_run[1]["config"]["pretrained"]
    results = benchmark(tmp_path, preset=TEST_PRESET, methods=["rwbc"], lambdas=(), pretrained=pretrained,
                        protocol="leave-one-out", show_progress=False)
    assert results["config"]["protocol"] == "leave-one-out" and results["config"]["split_options"] == {}
    assert results["num_users"]["all"] == results["num_targets"]["all"] == TEST_PRESET.synthetic["num_users"]
    assert set(results["num_users"]) == set(default_subsets(has_windows=False))
    assert "## `long_history`" in results["markdown"]
    # --split is the deprecated name of --protocol: the same stages, reused.
    with pytest.warns(FutureWarning, match="--protocol leave-one-out"):
        again = benchmark(tmp_path, preset=TEST_PRESET, methods=["rwbc"], lambdas=(), pretrained=pretrained,
                          split="leave-one-out", show_progress=False)
    assert all(stage["cached"] for stage in again["stages"])
    with pytest.raises(ValueError, match="contradicts --protocol"):
        benchmark(tmp_path, preset=TEST_PRESET, protocol="future", split="temporal", show_progress=False)


def test_cli_flags_and_presets():
    args = build_parser().parse_args(["benchmark", "--preset", "quick", "--seeds", "3", "--methods", "asft", "sft",
                                      "--lambdas", "0.5", "2", "--split", "temporal"])
    assert (args.preset, args.seeds, args.methods, args.lambdas, args.input) == ("quick", 3, ["asft", "sft"],
                                                                                 [0.5, 2.0], None)
    assert (args.split, args.protocol) == ("temporal", None)
    args = build_parser().parse_args(["benchmark", "--protocol", "leave-one-out"])
    assert (args.protocol, args.split) == ("leave-one-out", None)
    assert build_parser().parse_args(["benchmark"]).protocol is None  # the command's default: future
    for name in PRESETS:
        assert set(PRESETS[name].future) == {"cutoff_quantile", "horizon", "min_history", "validation_fraction"}
    assert get_preset("tiny") is PRESETS["tiny"]
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("huge")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown method"):
        benchmark(tmp_path, preset=TEST_PRESET, methods=["sft", "magic"], show_progress=False)
    with pytest.raises(FileNotFoundError):
        benchmark(tmp_path, preset=TEST_PRESET, input_path=tmp_path / "missing.dat", show_progress=False)


def test_tiny_preset_end_to_end_in_the_embedded_world(tmp_path):
    # The README's main command, as shipped (under 2 minutes on 2 cores): the real tiny preset on a log drawn in the
    # embedded simulated world (`--world`).
    results = benchmark(tmp_path, preset="tiny", seeds=1, world=True, show_progress=False)
    tiny = PRESETS["tiny"]
    # The future protocol (default): H targets per test user, half of the users in high_reward_trajectory.
    users, targets = results["num_users"], results["num_targets"]
    assert 100 <= users["all"] <= tiny.synthetic["num_users"] and targets["all"] == tiny.future["horizon"] * users["all"]
    assert 0 < users["high_reward_trajectory"] <= users["all"] / 2  # strictly above the median over users
    assert sum(users[f"trajectory_reward_q{q}"] for q in range(1, 5)) == users["all"]
    tuning = results["tuning"]["methods"]
    assert [trial["hyperparameters"] for trial in tuning["asft"]["trials"]] == tiny.trials("asft")
    assert {len(entry["trials"]) for entry in tuning.values()} == {2}
    hit_rates = {name: row["subsets"]["all"]["metrics"]["hr@10"]["value"] for name, row in results["methods"].items()}
    assert set(hit_rates) == {"pretrained", "sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo"}
    # Pretraining learned the generated structure: far above a random top-10 over 400 items (0.025) and
    # above recommending the most popular items, on the same test users.
    (data_dir,) = (tmp_path / "stages").glob("prepare-*/data")
    splits, vocabulary = load_prepared(data_dir, "future")
    popular = MostPopularRecommender.from_dataset(splits["train"], vocabulary.num_items)
    popular_hr = evaluate_ranking(popular, splits["test"], SequenceCollator(max_seq_len=64))["all"]["hr@10"]
    assert hit_rates["pretrained"] > 0.2, hit_rates
    assert hit_rates["pretrained"] > popular_hr + 0.05, (hit_rates, popular_hr)
    # The true-value column: every model between the uniform policy and the oracle, pretraining above uniform.
    references = results["world"]["reference_policies"]
    true_values = {name: row["subsets"]["all"]["metrics"]["true_value"]["value"]
                   for name, row in results["methods"].items()}
    assert all(references["uniform"]["all"] < value < references["oracle"]["all"] for value in true_values.values())
    for name in ("results.json", "results.md", "improvement_vs_rwbc.png", "asft_lambda_sweep.png"):
        assert (tmp_path / name).is_file(), name
