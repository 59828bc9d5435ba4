"""Equal tuning and selection on validation only (issue 13, items 3-5).

- every method gets the same number of trials (a preset with unequal grids is refused);
- `results.json` lists every trial with its validation scores, and the chosen trial is their argmax;
- the test split never changes a selection: with every test-window event's rating and item changed, the tuning
  (each trial's validation history, best checkpoint and the choice) is identical, while the test metrics move;
- only the chosen runs are evaluated on the test split;
- patience stops a post-training run early and the kept weights (extra heads included) are the best evaluation's;
- `early_stopping_patience` is a field of every hf_genrec config.
"""

import json

import numpy as np
import pytest
import torch
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)
from transformers import EarlyStoppingCallback, TrainerCallback

from hf_genrec.benchmark.pipeline import select_trial
from hf_genrec.benchmark.presets import DEFAULT_METHODS, PRESETS, from_recipes, selection_subset
from hf_genrec.cli import build_parser
from hf_genrec.commands import benchmark as benchmark_command
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.data import (
    Interactions,
    SequenceCollator,
    build_sequences,
    generate_synthetic_interactions,
    split_sequences,
    write_movielens_file,
)
from hf_genrec.data.prepared import load_prepared
from hf_genrec.data.splits import future_cutoffs
from hf_genrec.evaluation import evaluate_ranking
from hf_genrec.models import AutoModelForNextItemPrediction, HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.trainers import CQLConfig, CQLTrainer, PretrainConfig, SFTConfig

METHODS = ["rwbc", "asft"]  # the reference and a method that queries the reward ensemble (its value baseline)


def _ratings(path, tamper: bool):
    """TEST_PRESET's synthetic data as a MovieLens file; with `tamper`, every event at or after the `future` cutoff
    (the test windows) gets another rating (6 - r) and another item (the test-window items shuffled among
    themselves: the same catalogue and item counts, so the same vocabulary)."""
    interactions = generate_synthetic_interactions(**TEST_PRESET.synthetic)
    if tamper:
        future = TEST_PRESET.future
        _, cutoff = future_cutoffs(build_sequences(interactions)[0], cutoff_quantile=future["cutoff_quantile"],
                                   validation_fraction=future["validation_fraction"])
        after = interactions.timestamps >= cutoff
        items, ratings = interactions.item_ids.copy(), interactions.ratings.copy()
        items[after] = np.random.default_rng(0).permutation(items[after])
        ratings[after] = 6 - ratings[after]
        interactions = Interactions(user_ids=interactions.user_ids, item_ids=items, ratings=ratings,
                                    timestamps=interactions.timestamps)
    write_movielens_file(interactions, path)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(output dir, results) of the benchmark on the data and on the data with tampered test labels."""
    out = {}
    for name, tamper in (("clean", False), ("tampered", True)):
        tmp = tmp_path_factory.mktemp(name)
        path = _ratings(tmp / "ratings.dat", tamper)
        out[name] = tmp / "run", benchmark(tmp / "run", input_path=path, preset=TEST_PRESET, methods=METHODS,
                                           show_progress=False)
    return out


def test_changing_test_labels_never_changes_a_selection(runs):
    (_, clean), (_, tampered) = runs["clean"], runs["tampered"]
    # The tampering reached the test split: the test metrics of the chosen models moved.
    assert (clean["methods"]["rwbc"]["subsets"]["all"]["metrics"]["mrr"]["value"]
            != tampered["methods"]["rwbc"]["subsets"]["all"]["metrics"]["mrr"]["value"])
    # Every trial's validation history, kept checkpoint and score, and every choice, are the same.
    assert json.dumps(clean["tuning"], sort_keys=True) == json.dumps(tampered["tuning"], sort_keys=True)
    for method in METHODS:
        runs_ = [run for trial in clean["tuning"]["methods"][method]["trials"] for run in trial["runs"]]
        assert all(run["history"] and run["best_step"] is not None for run in runs_)


def test_every_trial_is_listed_and_the_chosen_is_the_argmax(runs):
    output, results = runs["clean"]
    tuning = results["tuning"]
    assert results["schema_version"] == 2
    assert tuning["metric"] == f"{selection_subset('future')}/ndcg@10" == "high_reward_trajectory/ndcg@10"
    assert tuning["trials_per_method"] == TEST_PRESET.trials_per_method == 2
    for method in METHODS:
        entry = tuning["methods"][method]
        assert [trial["hyperparameters"] for trial in entry["trials"]] == TEST_PRESET.trials(method)
        scores = [trial["validation_mean"] for trial in entry["trials"]]
        for trial in entry["trials"]:
            (run,) = trial["runs"]
            # The run's score is its best validation pass, and the kept checkpoint is that pass's step.
            best = max(run["history"], key=lambda h: h["metric"])
            assert run["validation"] == trial["validation_mean"] == best["metric"]
            assert run["best_step"] == min(h["step"] for h in run["history"] if h["metric"] == best["metric"])
        assert entry["chosen"] == select_trial(scores) == int(np.argmax(scores))  # argmax: the first of ties
        assert [trial["chosen"] for trial in entry["trials"]] == [i == entry["chosen"] for i in range(2)]
        assert results["methods"][method]["hyperparameters"].items() >= entry["chosen_hyperparameters"].items()
    # The test split is read once per chosen model (and the pretrained one): losing trials are never evaluated.
    evaluated = [stage["label"] for stage in results["stages"] if stage["stage"] == "evaluate"]
    assert evaluated == ["evaluate pretrained", *[f"evaluate {method} seed 0" for method in METHODS]]
    assert "## Hyperparameter selection (validation only)" in results["markdown"]
    assert (output / "asft_lambda_sweep.png").stat().st_size > 1000


def test_the_saved_model_is_the_kept_checkpoint(runs):
    # Ranking the validation split again with the saved chosen A-SFT model gives the score selection recorded.
    output, results = runs["clean"]
    (data_dir,) = output.glob("stages/prepare-*/data")
    splits, _ = load_prepared(data_dir, "future")
    entry = results["tuning"]["methods"]["asft"]
    (run,) = entry["trials"][entry["chosen"]]["runs"]
    (model_dir,) = [p.parent for p in output.glob("stages/posttrain-*/stage.json")
                    if json.loads(p.read_text())["label"].startswith("asft [") and
                    json.loads(p.read_text())["inputs"]["recipe"]["training"]["temperature"]
                    == entry["chosen_hyperparameters"]["temperature"]]
    model = AutoModelForNextItemPrediction.from_pretrained(model_dir / "model")
    metrics = evaluate_ranking(model, splits["validation"], SequenceCollator(max_seq_len=model.config.max_seq_len),
                               subsets=("all", "high_reward_trajectory"))
    assert metrics["high_reward_trajectory"]["ndcg@10"] == pytest.approx(run["validation"], abs=1e-6)
    assert not (model_dir / "model" / "checkpoints").exists()  # checkpoints are deleted once the run is saved


def test_unequal_trials_are_refused():
    for preset, trials in (("tiny", 2), ("quick", 2), ("full", 4)):
        assert {len(PRESETS[preset].trials(method)) for method in DEFAULT_METHODS} == {trials}
        assert min(PRESETS[preset].grids["cql"]["alpha"]) < 1  # CQL's α grid goes below 1
    with pytest.raises(ValueError, match="unequal numbers of hyperparameter trials"):
        from_recipes("bad", synthetic={}, grids={"sft": {"learning_rate": (1e-4, 1e-3)}})
    with pytest.raises(ValueError, match="unequal numbers of hyperparameter trials"):
        PRESETS["tiny"].with_grid("asft", temperature=(0.5, 1.0, 2.0))
    with pytest.raises(ValueError, match="--lambdas gives A-SFT 3 trial"):
        benchmark("unused", preset=TEST_PRESET, lambdas=(0.5, 1.0, 2.0), show_progress=False)


def test_seeds_default_to_the_preset_and_lambdas_set_the_asft_grid(monkeypatch):
    specs = []
    monkeypatch.setattr(benchmark_command, "run_benchmark", lambda output, spec, **kwargs: specs.append(spec))
    benchmark("unused", preset="full", show_progress=False)
    benchmark("unused", preset="full", seeds=2, show_progress=False)
    benchmark("unused", preset="tiny", lambdas=[0.25, 4.0], show_progress=False)
    assert [spec.seeds for spec in specs] == [5, 2, 1]
    assert specs[2].preset.trials("asft") == [{"temperature": 0.25}, {"temperature": 4.0}]
    assert build_parser().parse_args(["benchmark"]).seeds is None  # the command picks the preset's default


class ScriptedValidation(TrainerCallback):
    """Replaces the selection metric of each validation pass by the next scripted value (before early stopping
    and best-checkpoint tracking read it), and snapshots the weights each pass saw."""

    def __init__(self, key, values):
        self.key, self.values, self.snapshots = key, list(values), {}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        metrics[self.key] = self.values[len(self.snapshots)]
        self.snapshots[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_patience_stops_early_and_keeps_the_best_evaluation(tmp_path):
    interactions = generate_synthetic_interactions(num_users=24, num_items=30, mean_events=20, seed=3)
    sequences, vocabulary = build_sequences(interactions)
    splits = split_sequences(sequences, "leave-one-out")
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(
        num_items=vocabulary.num_items, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, attention_dim=8,
        linear_dim=8, max_seq_len=12, max_position_embeddings=15, input_dropout=0.0, linear_dropout=0.0))
    key = "high_reward_target/ndcg@10"
    args = CQLConfig(str(tmp_path), num_train_epochs=8, per_device_train_batch_size=8, learning_rate=1e-2,
                     eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                     metric_for_best_model=key, eval_subsets=["all", "high_reward_target"],
                     early_stopping_patience=2, disable_tqdm=True, bf16=False, seed=0, logging_steps=1)
    # The scripted pass values: passes 3 and 4 do not beat pass 2, so patience 2 stops after pass 4 of 8.
    script = ScriptedValidation(f"eval_{key}", [0.2, 0.5, 0.3, 0.4, 0.1, 0.9, 0.9, 0.9])
    # CQL: its Q head (two scalars) is kept out of model.safetensors, so the kept weights must come from the
    # checkpoint's whole trained state.
    trainer = CQLTrainer(model=model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"],
                         processing_class=vocabulary, callbacks=[script])
    assert any(isinstance(c, EarlyStoppingCallback) for c in trainer.callback_handler.callbacks)
    trainer.train()
    steps = len(trainer.get_train_dataloader())
    assert trainer.state.global_step == 4 * steps and sorted(script.snapshots) == [steps * k for k in (1, 2, 3, 4)]
    assert (trainer.state.best_global_step, trainer.state.best_metric) == (2 * steps, 0.5)
    kept = trainer.model.state_dict()
    assert "cql_head.log_scale" in kept
    for name, value in script.snapshots[2 * steps].items():
        assert torch.equal(kept[name], value), name
    last = script.snapshots[4 * steps]
    assert not torch.equal(kept["cql_head.bias"], last["cql_head.bias"])  # the head moved after the best pass


def test_early_stopping_patience_is_a_field_of_every_config(tmp_path):
    selection = dict(eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
                     metric_for_best_model="ndcg@10")
    for config_class in (SFTConfig, CQLConfig, PretrainConfig):
        assert config_class(str(tmp_path), early_stopping_patience=3, **selection).early_stopping_patience == 3
        with pytest.raises(ValueError, match="early_stopping_patience must be a positive integer"):
            config_class(str(tmp_path), early_stopping_patience=0, **selection)
    # Patience without validation passes would never stop anything: refused, naming the fields to set.
    with pytest.raises(ValueError, match="early_stopping_patience=2 needs validation passes.*eval_strategy='no'"):
        SFTConfig(str(tmp_path), early_stopping_patience=2)
