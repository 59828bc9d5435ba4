"""`hf-genrec benchmark`'s diagnostics and A-SFT ablations (issue 13 items 7-8) on the test preset: what results.json
records equals the diagnostics functions called directly on the saved evaluations and models, and the tilt-matched
control's reward power is `tilt_matched_reward_power` of the chosen A-SFT trial's training weights."""

import dataclasses
import json
import math

import numpy as np
import pytest
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.benchmark.evaluation import load_evaluation
from hf_genrec.benchmark.pipeline import NO_SELECTION, _write_outputs
from hf_genrec.benchmark.presets import PRESETS
from hf_genrec.benchmark.report import JUDGE_FIGURE
from hf_genrec.cli import build_parser
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.data import SequenceCollator
from hf_genrec.data.prepared import load_prepared
from hf_genrec.evaluation import diagnostics
from hf_genrec.evaluation.judge import history_lengths
from hf_genrec.models import AutoModelForNextItemPrediction
from hf_genrec.recipes import build_training_config
from hf_genrec.trainers.asft import asft_ablation_grid
from hf_genrec.trainers.sft import tilt_matched_reward_power, weight_tilt
from hf_genrec.workflows.posttrain import METHODS

_METHODS = ("sft", "rwbc", "asft", "dpo")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("diagnostics")
    results = benchmark(output, preset=TEST_PRESET, methods=_METHODS, seeds=1, ablations=True, show_progress=False)
    return output, json.loads((output / "results.json").read_text()), results["markdown"]


def _stage_dir(output, results, label):
    """The folder of the stage logged under `label` (its output folder inside, as the pipeline names it)."""
    entry = next(stage for stage in results["stages"] if stage["label"] == label)
    return output / "stages" / f"{entry['stage']}-{entry['key']}"


def _close(recorded, expected):
    """JSON-recorded float (NaN written as null) equals the direct value."""
    if recorded is None:
        return expected is None or math.isnan(expected)
    return recorded == pytest.approx(expected, rel=1e-9, abs=1e-12)


def _evaluation(output, results, name):
    label = f"evaluate {name} seed {TEST_PRESET.seed}"
    if name in asft_ablation_grid():
        label = f"evaluate ablation {name} seed {TEST_PRESET.seed}"
    return load_evaluation(_stage_dir(output, results, label))


def _weights(output, results, method, recipe):
    """`training_weights()` of `method`'s trainer built from the run's data, pretrained model and reward ensemble."""
    data = _stage_dir(output, results, "prepare") / "data"
    splits, vocabulary = load_prepared(data, "future")
    config_class, trainer_class, implied = METHODS[method]
    args = build_training_config(config_class, {**implied, **recipe["training"], **NO_SELECTION,
                                                "output_dir": str(output / "w")})
    model = AutoModelForNextItemPrediction.from_pretrained(_stage_dir(output, results, "pretrain") / "model")
    reward = _stage_dir(output, results, "reward") / "ensemble" if trainer_class.needs_reward_model(args) else None
    trainer = trainer_class(model=model, reward_model=reward, args=args, train_dataset=splits["train"],
                            processing_class=vocabulary)
    return trainer.training_weights()


def test_every_method_has_diagnostics_equal_to_direct_calls(run):
    output, results, markdown = run
    section = results["diagnostics"]
    assert set(section["rows"]) == set(results["methods"])
    data = _stage_dir(output, results, "prepare") / "data"
    splits, _ = load_prepared(data, "future")
    lengths = history_lengths(splits["test"])
    high = section["subsets"][1]
    assert section["subsets"] == ["all", "high_reward_trajectory"]
    reference = [_evaluation(output, results, "rwbc").ranking]
    pretrained = AutoModelForNextItemPrediction.from_pretrained(_stage_dir(output, results, "pretrain") / "model")
    for name, row in section["rows"].items():
        if name == "pretrained":
            continue
        evaluation = _evaluation(output, results, name)
        for subset in section["subsets"]:
            direct = diagnostics.paired_differences_by_target_rating(
                [evaluation.ranking], reference, subset=subset, num_resamples=TEST_PRESET.bootstrap_resamples)
            recorded = row["paired_ndcg@10_vs_rwbc"]["by_target_rating"][subset]
            assert list(recorded) == [f"{bucket:g}" for bucket in direct]
            for bucket, value in direct.items():
                for field, expected in dataclasses.asdict(value).items():
                    assert _close(recorded[f"{bucket:g}"][field], expected), (name, subset, bucket, field)
            direct = diagnostics.paired_differences_by_history_length(
                [evaluation.ranking], reference, lengths, subset=subset,
                num_resamples=TEST_PRESET.bootstrap_resamples)
            recorded = row["paired_ndcg@10_vs_rwbc"]["by_history_length"][subset]
            assert list(recorded) == list(direct)
            for bucket, value in direct.items():
                for field, expected in dataclasses.asdict(value).items():
                    assert _close(recorded[bucket][field], expected), (name, subset, bucket, field)
        point = diagnostics.judge_ranking_point([evaluation.ranking], [evaluation.judge], ranking_subset=high,
                                                num_resamples=TEST_PRESET.bootstrap_resamples)
        for field, expected in dataclasses.asdict(point).items():
            assert _close(row["judge_vs_ranking"][field], expected), (name, field)
        # KL of the saved post-trained model to the pretrained one on the test contexts.
        label = next(s["label"] for s in results["stages"] if s["stage"] == "kl" and s["label"].startswith(f"kl {name} "))
        model_stage = json.loads((_stage_dir(output, results, label) / "stage.json").read_text())["inputs"]["model"]
        policy = AutoModelForNextItemPrediction.from_pretrained(output / "stages" / model_stage / "model")
        kl = diagnostics.policy_kl(policy, pretrained, splits["test"],
                                   SequenceCollator(max_seq_len=policy.config.max_seq_len))
        assert row["kl_to_pretrained"]["per_seed"] == pytest.approx([kl.mean().item()], rel=1e-6)
        assert kl.mean().item() > 0  # two optimizer steps moved the policy
        method = results["methods"][name]["method"]
        if method in ("sft", "rwbc", "asft"):  # per-position weights: ESS/N of the trainer's own weights
            recipe = {"model": {}, "training": results["methods"][name]["hyperparameters"]}
            ess = diagnostics.effective_sample_size(_weights(output, results, method, recipe).weights)
            assert _close(row["ess"]["ess_fraction"], ess.fraction) and row["ess"]["num_positions"] == ess.num_positions
            if name in ("sft", "rwbc"):  # uniform weights are worth all positions; ratings 1-5 fewer
                assert (ess.fraction == pytest.approx(1.0)) == (method == "sft")
        else:
            assert row["ess"] is None
            assert "| dpo | — |" in markdown  # no training weights: a dash in the table
    assert "## Diagnostics" in markdown
    assert "judge_vs_ranking" in section["rows"]["pretrained"]
    pytest.importorskip("matplotlib")
    assert (output / JUDGE_FIGURE).is_file()


@pytest.mark.parametrize(("protocol", "subset"), [("future", "high_reward_trajectory"),
                                                   ("leave-one-out", "high_reward_target")])
def test_judge_figure_names_the_protocols_high_reward_subset(run, tmp_path, monkeypatch, protocol, subset):
    """The judge-vs-ranking figure's ranking axis names the subset its points were computed on."""
    pytest.importorskip("matplotlib")
    _, results, _ = run
    labels = []
    monkeypatch.setattr(diagnostics, "plot_judge_vs_ranking",
                        lambda points, path, **options: labels.append(options["xlabel"]))
    _write_outputs(tmp_path, {**results, "config": {**results["config"], "protocol": protocol}})
    assert labels == [f"NDCG@10 ({subset})"]


def test_ablation_rows_and_the_tilt_matched_control(run):
    output, results, markdown = run
    ablations = {name: row for name, row in results["methods"].items() if row["kind"] == "ablation"}
    chosen = results["tuning"]["methods"]["asft"]["chosen_hyperparameters"]
    chosen_recipe = TEST_PRESET.trial_recipe("asft", "future", **chosen)
    weights = _weights(output, results, "asft", chosen_recipe)
    tilt = weight_tilt(weights.weights, weights.rewards)
    grid = asft_ablation_grid()
    control = "rwbc[reward_power=tilt_matched]"
    # The control exists iff the chosen A-SFT weights favour 5s over 3s (else no reward power matches them).
    assert list(ablations) == [name for name in grid if name != control or tilt > 1]
    for name, row in ablations.items():
        assert row["method"] == grid[name][0] and row["seeds"] == [TEST_PRESET.seed]
        assert set(row["subsets"]) == set(results["subsets"])
        if row["method"] == "asft":  # A-SFT's chosen λ, the variant's baseline and reward source
            assert row["temperature"] == chosen["temperature"]
            assert {key: row["hyperparameters"][key] for key in ("baseline", "reward_source")} == grid[name][1]
    if control in ablations:
        power = tilt_matched_reward_power(weights.weights, weights.rewards)
        assert ablations[control]["reward_power"] == pytest.approx(power, rel=1e-9)
        assert ablations[control]["hyperparameters"]["reward_power"] == pytest.approx(power, rel=1e-9)
        assert ablations[control]["asft_tilt"] == pytest.approx(tilt, rel=1e-9)
        # The control's own training weights r^p have that tilt (the diagnostics measure them with its trainer).
        assert results["diagnostics"]["rows"][control]["ess"]["tilt"] == pytest.approx(tilt, rel=1e-4)
    # Their own table, not in the methods' tables or the improvement figure.
    assert "## A-SFT ablations" in markdown
    main = markdown.split("## A-SFT ablations")[0]
    assert "baseline=zero" not in main
    # The headline variant is A-SFT's chosen run itself (the same stage, reused).
    headline = np.asarray(ablations["asft[baseline=value,reward=observed]"]["subsets"]["all"]["metrics"]["mrr"]
                          ["per_seed"])
    assert headline.tolist() == results["methods"]["asft"]["subsets"]["all"]["metrics"]["mrr"]["per_seed"]


def test_ablations_are_a_preset_field_and_a_flag(tmp_path):
    assert not PRESETS["tiny"].ablations and not PRESETS["quick"].ablations and PRESETS["full"].ablations
    parser = build_parser()
    assert parser.parse_args(["benchmark"]).ablations is None  # the preset decides
    assert parser.parse_args(["benchmark", "--ablations"]).ablations is True
    assert parser.parse_args(["benchmark", "--no-ablations"]).ablations is False
    with pytest.raises(ValueError, match="--ablations"):
        benchmark(tmp_path, preset=TEST_PRESET, methods=("rwbc", "sft"), ablations=True, show_progress=False)
