"""`hf-genrec benchmark --cutoff-quantile/--horizon/--min-history/--validation-fraction`: the `future` protocol's
parameters set from the command line (the preset's fit MovieLens, not a small dataset such as Amazon's)."""

import dataclasses

import pytest

import hf_genrec.commands.benchmark as benchmark_command
from hf_genrec.benchmark.presets import FUTURE_SPLIT, get_preset
from hf_genrec.cli import main
from hf_genrec.commands.benchmark import FUTURE_FLAGS, benchmark, with_future_flags

AMAZON = {"--cutoff-quantile": 0.7, "--horizon": 3, "--min-history": 3, "--validation-fraction": 0.3}


@pytest.fixture
def captured_spec(monkeypatch):
    """Replaces the stages with a recorder: the `BenchmarkSpec` the command would run."""
    specs = []

    def record(output_dir, spec, show_progress=True):
        specs.append(spec)
        return {"markdown": ""}

    monkeypatch.setattr(benchmark_command, "run_benchmark", record)
    return specs


def test_the_preset_gets_the_flag_values_and_keeps_the_rest():
    preset = get_preset("quick")
    changed = with_future_flags(preset, "future", {"--horizon": 3, "--min-history": 3, "--cutoff-quantile": None})
    assert changed.future == {**preset.future, "horizon": 3, "min_history": 3}
    assert preset.future == FUTURE_SPLIT  # the preset itself is untouched
    assert dataclasses.replace(changed, future=preset.future) == preset  # nothing else changed
    assert with_future_flags(preset, "future", dict.fromkeys(FUTURE_FLAGS)) is preset


def test_the_cli_flags_reach_the_benchmark_spec(tmp_path, captured_spec):
    argv = ["benchmark", "--preset", "quick", "--protocol", "future", "--output", str(tmp_path / "run")]
    for flag, value in AMAZON.items():
        argv += [flag, str(value)]
    main(argv)
    (spec,) = captured_spec
    assert spec.protocol == "future"
    assert spec.preset.future == {"cutoff_quantile": 0.7, "horizon": 3, "min_history": 3, "validation_fraction": 0.3}
    assert isinstance(spec.preset.future["horizon"], int)


@pytest.mark.parametrize(
    "flag, value",
    [("--cutoff-quantile", 0.0), ("--cutoff-quantile", 1.0), ("--cutoff-quantile", 1.5), ("--horizon", 0),
     ("--horizon", 2.5), ("--min-history", -1), ("--validation-fraction", 1.0), ("--validation-fraction", 0)],
)
def test_bad_values_are_refused_naming_the_flag(tmp_path, captured_spec, flag, value):
    key = FUTURE_FLAGS[flag][0]
    with pytest.raises(ValueError, match=f"^{flag} must be .* got {value!r}. Fix: "):
        benchmark(tmp_path / "run", preset="quick", protocol="future", **{key: value})
    assert captured_spec == [] and not (tmp_path / "run").exists()


def test_future_flags_are_refused_under_leave_one_out(tmp_path, captured_spec):
    with pytest.raises(ValueError, match="--horizon.*--protocol is leave-one-out. Fix: drop the flag"):
        benchmark(tmp_path / "run", preset="quick", protocol="leave-one-out", horizon=3)
    assert captured_spec == []
    benchmark(tmp_path / "run", preset="quick", protocol="leave-one-out")  # without the flags it runs
    assert captured_spec[0].preset.future == FUTURE_SPLIT
