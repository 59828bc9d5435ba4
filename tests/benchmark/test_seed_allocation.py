"""Seeds where they decide the verdict (issue 13 item 10): A-SFT, RW-BC and the best other methods on validation run
every seed, the others and the A-SFT ablations the first few; unequal seed counts pair seed by seed in `summarize`."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)
from test_report import evaluation

from hf_genrec.benchmark import pipeline
from hf_genrec.benchmark.pipeline import (
    BenchmarkSpec,
    _ablations,
    _allocation_section,
    _post_train,
    ablation_seed_count,
    focus_methods,
    seed_allocation,
)
from hf_genrec.benchmark.presets import DEFAULT_METHODS, PRESETS
from hf_genrec.benchmark.report import BenchmarkRow, per_user_values, seed_allocation_markdown, summarize
from hf_genrec.cli import build_parser
from hf_genrec.commands import benchmark as benchmark_command
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.trainers.asft import asft_ablation_grid

ALWAYS = ("asft", "rwbc")


def _tuning(chosen_scores: dict[str, float], methods=DEFAULT_METHODS) -> dict:
    """A `tuning` dict as `tune_methods` writes it: per method a losing trial scoring 0.9 (higher than every chosen
    score, so that only the chosen trial's score may count) and the chosen trial, index 1, with its score."""
    return {method: {"trials": [{"hyperparameters": {}, "validation_mean": 0.9, "chosen": False},
                                {"hyperparameters": {}, "validation_mean": chosen_scores[method], "chosen": True}],
                     "chosen": 1, "chosen_hyperparameters": {}} for method in methods}


def _spec(seeds=4, reduced=2, focus=2, ablation=None, methods=DEFAULT_METHODS, ablations=False) -> BenchmarkSpec:
    preset = dataclasses.replace(TEST_PRESET, reduced_seeds=reduced, focus_methods=focus, ablation_seeds=ablation,
                                 ablations=ablations)
    return BenchmarkSpec(preset=preset, methods=tuple(methods), seeds=seeds)


# The chosen trials' validation scores: A-SFT and RW-BC the lowest (they run every seed anyway).
SCORES = {"sft": 0.30, "rwbc": 0.01, "asft": 0.02, "dpo": 0.10, "ipo": 0.20, "cql": 0.50, "ppo": 0.40}


def test_focus_is_the_best_chosen_trials_on_validation_and_asft_rwbc_run_every_seed():
    spec = _spec(seeds=4, reduced=2, focus=2)
    others = sorted((m for m in DEFAULT_METHODS if m not in ALWAYS), key=lambda m: -SCORES[m])
    assert focus_methods(spec, _tuning(SCORES)) == others[:2] == ["cql", "ppo"]
    allocation = seed_allocation(spec, _tuning(SCORES))
    assert list(allocation) == list(DEFAULT_METHODS)
    assert allocation == {m: 4 if m in (*ALWAYS, *others[:2]) else 2 for m in DEFAULT_METHODS}
    # The counts do not depend on the scores: the stage-count estimate before tuning sums the same.
    assert sum(seed_allocation(spec).values()) == sum(allocation.values())
    # No focus: only A-SFT and RW-BC run every seed.
    assert seed_allocation(_spec(focus=0), _tuning(SCORES)) == {m: 4 if m in ALWAYS else 2 for m in DEFAULT_METHODS}


def test_ties_keep_the_method_order_and_nan_counts_as_the_worst():
    tied = {**SCORES, "sft": 0.5, "dpo": 0.5, "cql": 0.5, "ppo": float("nan"), "ipo": 0.7}
    spec = _spec(focus=3)
    # ipo first; then the three tied at 0.5 in DEFAULT_METHODS order (sft, dpo, cql): sft and dpo.
    assert focus_methods(spec, _tuning(tied)) == ["ipo", "sft", "dpo"]
    assert seed_allocation(spec, _tuning(tied))["cql"] == seed_allocation(spec, _tuning(tied))["ppo"] == 2


@pytest.mark.parametrize("reduced", [None, 4, 9])
def test_no_reduction_without_reduced_seeds_or_with_as_many_as_seeds(reduced):
    spec = _spec(seeds=4, reduced=reduced)
    assert seed_allocation(spec, _tuning(SCORES)) == dict.fromkeys(DEFAULT_METHODS, 4)
    assert _allocation_section(spec, _tuning(SCORES))["focus_methods"] == []
    assert seed_allocation_markdown({"seed_allocation": _allocation_section(spec, _tuning(SCORES))}) == []


def test_methods_without_asft_or_rwbc():
    methods = ("sft", "dpo", "cql", "ppo")
    spec = _spec(seeds=3, reduced=1, focus=1, methods=methods)
    assert seed_allocation(spec, _tuning(SCORES, methods)) == {"sft": 1, "dpo": 1, "cql": 3, "ppo": 1}
    methods = ("rwbc", "sft", "dpo")
    spec = _spec(seeds=3, reduced=1, focus=1, methods=methods)
    assert seed_allocation(spec, _tuning(SCORES, methods)) == {"rwbc": 3, "sft": 3, "dpo": 1}


def test_ablation_seeds():
    assert ablation_seed_count(_spec(seeds=4, ablation=None)) == 4
    assert ablation_seed_count(_spec(seeds=4, ablation=2)) == 2
    assert ablation_seed_count(_spec(seeds=4, ablation=7)) == 4


def test_presets_and_their_checks():
    full = PRESETS["full"]
    assert (full.default_seeds, full.reduced_seeds, full.focus_methods, full.ablation_seeds) == (5, 3, 2, 3)
    for name in ("tiny", "quick"):
        assert PRESETS[name].reduced_seeds is None and PRESETS[name].ablation_seeds is None
    for field, value in (("reduced_seeds", 0), ("ablation_seeds", -1), ("focus_methods", -1), ("reduced_seeds", 1.5)):
        with pytest.raises(ValueError, match=f"{field} must be"):
            dataclasses.replace(TEST_PRESET, **{field: value})


def test_the_flags_override_the_preset(monkeypatch):
    specs = []
    monkeypatch.setattr(benchmark_command, "run_benchmark", lambda output, spec, **kwargs: specs.append(spec))
    args = build_parser().parse_args(["benchmark", "--reduced-seeds", "2", "--ablation-seeds", "4"])
    assert (args.reduced_seeds, args.ablation_seeds) == (2, 4)
    benchmark("unused", preset="full", show_progress=False)
    benchmark("unused", preset="full", reduced_seeds=2, ablation_seeds=4, show_progress=False)
    assert [(s.preset.reduced_seeds, s.preset.ablation_seeds) for s in specs] == [(3, 3), (2, 4)]
    for flag in ("reduced_seeds", "ablation_seeds"):
        with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} must be an integer >= 1, got 0"):
            benchmark("unused", preset="full", show_progress=False, **{flag: 0})


class FakeStore:
    """Records the (stage, method, seed) of every `run` instead of running it; `measure_weights` reports a tilt."""

    def __init__(self):
        self.calls = []

    def run(self, function, /, *, label=None, **inputs):
        self.calls.append((function.stage_name, inputs.get("method"), inputs.get("seed")))
        result = {"reward_power": 1.5, "tilt": 2.0} if function.stage_name == "weights" else {}
        return SimpleNamespace(output=(inputs.get("method"), inputs.get("seed")), result=result)


@pytest.fixture
def fake_evaluations(monkeypatch):
    """`evaluate` records the model it is given; `load_evaluation` returns that model's (method, seed)."""
    evaluated = []

    def evaluate(*, model, label):
        evaluated.append(model.output)
        return SimpleNamespace(output=model.output)

    monkeypatch.setattr(pipeline, "load_evaluation", lambda output: output)
    return evaluate, evaluated


def test_post_train_runs_exactly_the_allocated_seeds_in_seed_major_order(fake_evaluations):
    evaluate, evaluated = fake_evaluations
    spec, store = _spec(seeds=3, reduced=1, focus=1), FakeStore()
    rows = _post_train(store, spec, None, None, None, evaluate, _tuning(SCORES))
    allocation = seed_allocation(spec, _tuning(SCORES))
    seed0 = spec.preset.seed
    expected = [(m, seed0 + i) for i in range(3) for m in DEFAULT_METHODS if i < allocation[m]]
    assert [(m, s) for _, m, s in store.calls] == expected and {name for name, _, _ in store.calls} == {"posttrain"}
    assert evaluated == expected
    assert {row.name: row.seeds for row in rows} == {m: [seed0 + i for i in range(allocation[m])]
                                                      for m in DEFAULT_METHODS}
    assert all(row.evaluations == [(row.method, s) for s in row.seeds] for row in rows)


def test_ablations_run_the_first_ablation_seeds(fake_evaluations):
    evaluate, evaluated = fake_evaluations
    spec, store = _spec(seeds=4, ablation=2), FakeStore()
    rows = _ablations(store, spec, None, None, None, evaluate, _tuning(SCORES))
    seeds = [spec.preset.seed, spec.preset.seed + 1]
    assert [row.name for row in rows] == list(asft_ablation_grid())
    assert all(row.seeds == seeds and [s for _, s in row.evaluations] == seeds for row in rows)
    posttrained = [(m, s) for name, m, s in store.calls if name == "posttrain"]
    assert posttrained == [(method, s) for method, _ in asft_ablation_grid().values() for s in seeds]


def test_results_record_the_allocation_and_markdown_names_the_reduced_rows():
    spec = _spec(seeds=4, reduced=2, focus=2, ablation=3, ablations=True)
    section = _allocation_section(spec, _tuning(SCORES))
    assert section["num_seeds"] == 4 and section["seeds"] == seed_allocation(spec, _tuning(SCORES))
    assert section["focus_methods"] == ["cql", "ppo"] and section["ablation_seeds"] == 3
    assert "cql, ppo" in section["rule"] and "ablation" in section["rule"]
    (line, _) = seed_allocation_markdown({"seed_allocation": section})
    for label in ("SFT 2", "RS-DPO 2", "RS-IPO 2", "the A-SFT ablations 3"):
        assert label in line
    assert "CQL" not in line and "A-SFT 4" not in line and section["rule"] in line


def test_a_row_with_fewer_seeds_pairs_with_the_reference_first_seeds():
    ranks = {"rwbc": [[1, 2, 4, 100], [3, 1, 2, 8], [50, 50, 50, 50]], "sft": [[2, 2, 1, 5], [1, 4, 9, 2]]}
    judges = {"rwbc": [[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [9.0, 9.0, 9.0, 9.0]],
              "sft": [[3.0, 3.0, 3.0, 3.0], [2.0, 2.5, 1.0, 4.0]]}
    rows = [BenchmarkRow(name, name, "method", [evaluation(r, j) for r, j in zip(ranks[name], judges[name])],
                         seeds=list(range(len(ranks[name])))) for name in ("rwbc", "sft")]
    summary = summarize(rows, "rwbc", resamples=50)
    for subset in ("all", "high_reward_target"):
        for metric in ("mrr", "judge"):
            method = np.stack([per_user_values(e, subset)[0][metric] for e in rows[1].evaluations])
            reference = np.stack([per_user_values(e, subset)[0][metric] for e in rows[0].evaluations[:2]])
            entry = summary["rows"]["sft"]["subsets"][subset]["metrics"][metric]
            assert entry["pct_vs_rwbc"] == pytest.approx(100 * (method.mean() - reference.mean()) / reference.mean())
            assert entry["pct_vs_rwbc_per_seed"] == pytest.approx(
                list(100 * (method.mean(1) - reference.mean(1)) / reference.mean(1)))
    # The third reference seed changes nothing: pairing with all three would give another change.
    all_three = np.mean([1 / np.array(r, dtype=float) for r in ranks["rwbc"]])
    paired = np.mean([1 / np.array(r, dtype=float) for r in ranks["rwbc"][:2]])
    assert not np.isclose(all_three, paired)
