"""`hf-genrec simulate` tunes every method with the benchmark's rules (equal trials, selection on validation) and
reports what selection by the truth would have chosen (issue 14, item 5)."""

import json
import math
import shutil

import pytest

from hf_genrec.benchmark.presets import method_grids
from hf_genrec.commands.simulate import simulate
from hf_genrec.simulation.study import PRESETS, TRUE_PPO, SimulationPreset, training_recipes, trial_selection

_MODEL = {"hidden_size": 8, "num_hidden_layers": 1, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 10,
          "max_position_embeddings": 13, "num_negatives": 8, "input_dropout": 0.0, "linear_dropout": 0.0}
# Learning rates far apart, so that the trials' validation scores and true values differ.
GRIDS = method_grids(learning_rates=(1e-4, 3e-2), temperatures=(0.3, 3.0), betas=(0.05, 1.0), alphas=(1.0, 10.0),
               kl_coefs=(0.05, 0.5))
MICRO = SimulationPreset(
    "micro-tuning", world={"num_users": 60, "num_items": 20, "dim": 3, "seed": 0}, events_per_user=8,
    logging={"strength": 1.0}, observation={"trap_share": 0.2}, noise_levels=(0.5,), log_sizes=(60,),
    coverages=(0.8,),
    training=training_recipes("micro-tuning", _MODEL, epochs=1, reward_epochs=1, members=2, steps=2, batch=20,
                              grids=GRIDS, eval_steps=1),
)
METHODS = ("rwbc", "asft", "dpo")


def _argmax(values):
    """The first index of the largest value (NaN and None: the smallest)."""
    ranked = [-math.inf if v is None or math.isnan(v) else v for v in values]
    return ranked.index(max(ranked))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    output = tmp_path_factory.mktemp("simulate-tuning")
    return output, simulate(output, preset=MICRO, seeds=1, methods=METHODS, show_progress=False)


def test_every_preset_gives_every_method_the_same_trials():
    for preset in PRESETS.values():
        counts = {method: len(preset.training.trials(method)) for method in preset.methods}
        assert set(counts.values()) == {preset.training.trials_per_method}, (preset.name, counts)
    assert {name: PRESETS[name].training.trials_per_method for name in PRESETS} == {"tiny": 2, "quick": 3,
                                                                                    "full": 3}


def test_every_method_gets_the_same_number_of_trials(run):
    _, results = run
    (entry,) = results["runs"]
    assert set(entry["tuning"]) == set(METHODS)  # ppo_true is the recipe's one trial, not tuned
    assert TRUE_PPO in entry["methods"]
    for method in METHODS:
        trials = entry["tuning"][method]["trials"]
        assert len(trials) == MICRO.training.trials_per_method == 2, method
        assert [trial["hyperparameters"] for trial in trials] == MICRO.training.trials(method)


def test_chosen_trial_is_the_argmax_of_validation_and_is_the_methods_row(run):
    _, results = run
    (entry,) = results["runs"]
    for method in METHODS:
        selection = entry["tuning"][method]
        scores = [trial["validation"] for trial in selection["trials"]]
        assert all(score is not None and math.isfinite(score) for score in scores), (method, scores)
        assert selection["chosen_by_validation"] == _argmax(scores), method
        # The method's row is the chosen trial's model: the same true value, computed by the other evaluation stage.
        chosen = selection["trials"][selection["chosen_by_validation"]]
        assert entry["methods"][method]["true_value"] == pytest.approx(chosen["true_value"], abs=1e-9)
    # The trials trained with different hyperparameters reached different models.
    values = [trial["true_value"] for method in METHODS for trial in entry["tuning"][method]["trials"]]
    assert len(set(values)) > len(METHODS)


def test_chosen_by_truth_and_regret(run):
    output, results = run
    (entry,) = results["runs"]
    for method in METHODS:
        selection = entry["tuning"][method]
        values = [trial["true_value"] for trial in selection["trials"]]
        assert selection["chosen_by_truth"] == _argmax(values)
        assert selection["selection_regret"] == pytest.approx(
            values[selection["chosen_by_truth"]] - values[selection["chosen_by_validation"]])
        assert selection["selection_regret"] >= 0.0
        summary = results["settings"][entry["name"]]["tuning"][method]
        assert summary["selection_regret"]["mean"] == pytest.approx(selection["selection_regret"])
        assert summary["chosen_by_validation"] == [selection["chosen_by_validation"]]
    markdown = (output / "results.md").read_text(encoding="utf-8")
    assert "| method | chosen by validation | its V* | chosen by truth | its V* | regret |" in markdown


def test_a_different_truth_never_changes_the_validation_choice(run, tmp_path):
    """The trials' world evaluation is its own stage: rewrite its cached result (the truth reversed) and rerun; every
    other stage is reused, the validation choice stays and the truth's choice follows the new values."""
    output, results = run
    (entry,) = results["runs"]
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    (marker,) = (copy / "stages").glob("world_evaluate_trials-*/stage.json")
    record = json.loads(marker.read_text(encoding="utf-8"))
    for method, rows in record["result"]["methods"].items():
        chosen = entry["tuning"][method]["chosen_by_validation"]
        for index, row in enumerate(rows):  # the validation choice now has the lowest true value
            row["true_value"] = -1.0 - index if index == chosen else float(index)
    marker.write_text(json.dumps(record), encoding="utf-8")
    again = simulate(copy, preset=MICRO, seeds=1, methods=METHODS, show_progress=False)
    assert all(stage["cached"] for stage in again["stages"])
    (rerun,) = again["runs"]
    for method in METHODS:
        before, after = entry["tuning"][method], rerun["tuning"][method]
        assert after["chosen_by_validation"] == before["chosen_by_validation"]
        assert [t["validation"] for t in after["trials"]] == [t["validation"] for t in before["trials"]]
        assert after["chosen_by_truth"] != after["chosen_by_validation"]
        assert after["selection_regret"] > 0.0


def test_trial_selection_reads_validation_only():
    tuning = {"sft": {"trials": [{"hyperparameters": {"learning_rate": lr}, "validation_mean": score}
                                 for lr, score in ((1e-4, 0.2), (3e-4, 0.5), (1e-3, float("nan")))],
                      "chosen": 1}}
    for values in ([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 2.0]):
        rows = [{"true_value": value, "proxy_value": value + 1.0, "kl_to_pretrained": 0.1 * index}
                for index, value in enumerate(values)]
        selection = trial_selection(tuning, {"sft": rows})["sft"]
        assert selection["chosen_by_validation"] == 1
        assert selection["chosen_by_truth"] == values.index(max(values))
        assert selection["selection_regret"] == pytest.approx(max(values) - values[1])
        # each trial keeps its world metrics (the over-optimisation curves read them)
        assert [trial["proxy_value"] for trial in selection["trials"]] == [value + 1.0 for value in values]
        assert selection["trials"][2]["kl_to_pretrained"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="one entry .* per tuning trial"):
        trial_selection(tuning, {"sft": [{"true_value": 1.0}, {"true_value": 2.0}]})


def test_every_trial_is_trained_and_looked_up_once(run):
    """The study takes each trial's model from `tune_methods` (no second `posttrain` lookup): every trial's stage
    appears once in the history, labelled with its setting and seed, and the progress total counts each once."""
    _, results = run
    (entry,) = results["runs"]
    posttrain = [stage for stage in results["stages"] if stage["stage"] == "posttrain"]
    assert len(posttrain) == len({stage["key"] for stage in posttrain}) == len(METHODS) * 2
    assert all(stage["label"].endswith(f"({entry['name']} seed 0)") for stage in posttrain)
    trials = sum(len(MICRO.training.trials(method)) for method in METHODS)
    # simulate, prepare, pretrain, proxy; trials; ppo_true; two evaluations; the rollouts
    assert len(results["stages"]) == 4 + trials + 1 + 2 + 1
