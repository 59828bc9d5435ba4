"""`hf-genrec benchmark`: the Netflix post's results table as one resumable command.

This module checks the command's arguments and turns them into a `BenchmarkSpec`; the stages themselves
are `hf_genrec.benchmark.pipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from ..benchmark.pipeline import JUDGE_DATA, PROTOCOLS, BenchmarkSpec, run_benchmark
from ..benchmark.presets import DEFAULT_METHODS, EMBEDDED_WORLD, REFERENCE_METHOD, BenchmarkPreset, get_preset
from ..benchmark.stages import Given
from ..data.splits import SPLITS
from ..workflows.posttrain import METHODS

logger = logging.getLogger(__name__)

__all__ = ["FUTURE_FLAGS", "benchmark", "with_future_flags"]


def _ratings(input_path, format: str, catalog) -> tuple[Given, Given | None]:
    """The ratings file and its catalogue (MovieLens: `movies.dat` beside the ratings, if any), fingerprinted."""
    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(f"--input {str(input_path)!r} does not exist.")
    if catalog is None and format == "movielens" and (input_path.parent / "movies.dat").is_file():
        catalog = input_path.parent / "movies.dat"
    return Given.file(input_path), Given.file(catalog) if catalog is not None else None


def _protocol(protocol: str | None, split: str | None) -> str:
    """The protocol from `--protocol` and the deprecated `--split` (default: `future`, the post's)."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    if split is None:
        return protocol or PROTOCOLS[0]
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {SPLITS}, got {split!r}; use --protocol {{{','.join(PROTOCOLS)}}}.")
    if protocol is not None and protocol != split:
        raise ValueError(f"--split {split} contradicts --protocol {protocol}; drop --split (deprecated), which names "
                         "the same thing.")
    warnings.warn(f"--split is deprecated; use --protocol {split}.", FutureWarning, stacklevel=3)
    return split


# The `future` protocol's flags: (preset `future` key, type, check, what a valid value is).
FUTURE_FLAGS = {
    "--cutoff-quantile": ("cutoff_quantile", float, lambda v: 0 < v < 1, "a fraction strictly between 0 and 1"),
    "--horizon": ("horizon", int, lambda v: v >= 1, "an integer >= 1"),
    "--min-history": ("min_history", int, lambda v: v >= 1, "an integer >= 1"),
    "--validation-fraction": ("validation_fraction", float, lambda v: 0 < v < 1,
                              "a fraction strictly between 0 and 1"),
}


def with_future_flags(preset: BenchmarkPreset, protocol: str, values: dict[str, Any]) -> BenchmarkPreset:
    """`preset` with its `future` protocol parameters replaced by the flags given (`values`: flag -> value or None).

    The preset values (`FUTURE_SPLIT`: H = 10 and 10 events of history) fit MovieLens and leave almost no user of a
    small dataset such as Amazon Musical Instruments 5-core, so the command lets each be set.

    Raises:
        ValueError: a value is out of range, or a flag is given with another protocol (it would be ignored).
    """
    given = {flag: value for flag, value in values.items() if value is not None}
    if not given:
        return preset
    if protocol != "future":
        raise ValueError(f"{', '.join(given)} set(s) the future protocol's test window, but --protocol is {protocol}. "
                         "Fix: drop the flag(s), or pass --protocol future.")
    future = dict(preset.future)
    for flag, value in given.items():
        key, kind, valid, expected = FUTURE_FLAGS[flag]
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)) \
                or not valid(value):
            raise ValueError(f"{flag} must be {expected}, got {value!r}. Fix: pass {expected} (preset "
                             f"{preset.name}: {preset.future[key]}).")
        future[key] = kind(value)
    return dataclasses.replace(preset, future=future)


def _with_world(preset: BenchmarkPreset, world: bool, input_path: str | os.PathLike | None) -> BenchmarkPreset:
    """`preset` with `EMBEDDED_WORLD` as its embedded data when `world` (`--world`); refused beside `--input`."""
    if not world:
        return preset
    if input_path is not None:
        raise ValueError("--world draws the embedded data in a simulated world, but --input gives real data (whose "
                         "true reward nobody knows). Fix: drop one of them.")
    return dataclasses.replace(preset, world=EMBEDDED_WORLD)


def _with_lambdas(preset: BenchmarkPreset, lambdas) -> BenchmarkPreset:
    """`preset` with A-SFT's temperature grid from `--lambdas` (as many values as every method's trials)."""
    if not lambdas:
        return preset
    if any(not lam > 0 for lam in lambdas):
        raise ValueError(f"--lambdas values must be > 0, got {list(lambdas)}. Fix: pass positive temperatures.")
    trials = preset.trials_per_method
    if len(lambdas) != trials:
        raise ValueError(f"--lambdas gives A-SFT {len(lambdas)} trial(s), but every method of preset {preset.name} "
                         f"gets {trials}. Fix: pass {trials} values (equal tuning: the same trials for every "
                         "method).")
    return preset.with_grid("asft", temperature=tuple(float(lam) for lam in lambdas))


def _seed_counts(preset: BenchmarkPreset, seeds: int | None, reduced_seeds: int | None,
                 ablation_seeds: int | None) -> tuple[int, BenchmarkPreset]:
    """`--seeds` (None: the preset's `default_seeds`) and `preset` with its `reduced_seeds` / `ablation_seeds` from
    `--reduced-seeds` / `--ablation-seeds` (None: the preset's; a value >= `--seeds` means no reduction)."""
    seeds = preset.default_seeds if seeds is None else seeds
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}. Fix: pass --seeds 1 or more, or leave it out (preset "
                         f"{preset.name}: {preset.default_seeds}).")
    overrides = {"reduced_seeds": reduced_seeds, "ablation_seeds": ablation_seeds}
    for name, value in overrides.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}. Fix: pass 1 or more "
                             f"(>= --seeds runs every seed), or leave it out (preset {preset.name}: "
                             f"{getattr(preset, name)}).")
    overrides = {name: value for name, value in overrides.items() if value is not None}
    return seeds, dataclasses.replace(preset, **overrides) if overrides else preset


def _given_model(path, flag: str) -> Given | None:
    if path is None:
        return None
    if flag == "--pretrained" and not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"--pretrained {str(Path(path).resolve())!r} holds no config.json (not a saved model).")
    return Given.model(path)


def benchmark(
    output_dir: str | os.PathLike = "runs/benchmark",
    *,
    input_path: str | os.PathLike | None = None,
    format: str = "movielens",
    sep: str | None = None,
    columns: str | None = None,
    header: bool = False,
    catalog: str | os.PathLike | None = None,
    rating_scale: tuple[float, float] | None = None,
    duplicates: str = "keep",
    preset: str | BenchmarkPreset = "tiny",
    methods: tuple[str, ...] | list[str] = DEFAULT_METHODS,
    seeds: int | None = None,
    reduced_seeds: int | None = None,
    ablation_seeds: int | None = None,
    protocol: str | None = None,
    split: str | None = None,
    cutoff_quantile: float | None = None,
    horizon: int | None = None,
    min_history: int | None = None,
    validation_fraction: float | None = None,
    pretrained: str | os.PathLike | None = None,
    reward_model: str | os.PathLike | None = None,
    judge_model: str | os.PathLike | None = None,
    judge_data: str = "train+validation",
    lambdas: tuple[float, ...] | list[float] | None = None,
    ablations: bool | None = None,
    world: bool = False,
    command: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the post-training benchmark and write `results.json`, `results.md` and the figures.

    Args:
        output_dir: DIR; stages live under `DIR/stages/<stage>-<key>/`, results at the top.
        input_path: a ratings file (`--format movielens` or `csv` with the loader flags of `prepare`); without
            it, the preset's synthetic data is generated into DIR.
        preset: `tiny`, `quick`, `full` (see `hf_genrec.benchmark.presets`) or a `BenchmarkPreset`.
        methods: post-training methods; reward-weighted BC, the reference, is always run.
        seeds: post-training seeds (the pretrained model and reward ensembles are shared); default: the preset's
            `default_seeds` (`full`: 5, else 1). Hyperparameters are tuned on the first `tuning_seeds` of them.
        reduced_seeds / ablation_seeds: the seeds (the first n) of the methods but A-SFT, RW-BC and the preset's
            `focus_methods` best on validation / of the A-SFT ablations (default: the preset's; `full`: 3 and 3).
        protocol: `future` (default, the Netflix post's: each test user's first H events after a global cutoff, with
            the preset's cutoff quantile, H and minimum history) or `leave-one-out` (HSTU's).
        split: deprecated name of `protocol` (`leave-one-out`, `temporal` or `future`).
        cutoff_quantile / horizon / min_history / validation_fraction: override the preset's `future` protocol
            parameters (`--cutoff-quantile`, `--horizon`: H, the test events of each test user, not the judge
            rollout's; `--min-history`, `--validation-fraction`); `future` protocol only.
        pretrained: reuse this pretrained recommender instead of pretraining (same item vocabulary).
        reward_model / judge_model: reuse these reward ensembles instead of training them (they must differ).
        judge_data: `train+validation` (default) or `train`: the events the judge ensemble trains on.
        lambdas: A-SFT's temperature grid, the λ values its trials try (default or empty: the preset's). Every method
            gets the same number of trials, so give as many values as the preset's grids have.
        ablations: run A-SFT's ablation grid and the tilt-matched RW-BC control at A-SFT's chosen λ (default: the
            preset's `ablations`; `tiny` and `quick`: off, `full`: on). Needs `asft` among the methods.
        world: without `input_path`, draw the embedded data in the simulated world `EMBEDDED_WORLD` instead of the
            generator, so every evaluated model also gets its true value V* (`true V*` column; `--world`).
        command: the command line recorded in the results (default: this process's).

    Returns:
        The content of `results.json` (plus `markdown`).
    """
    preset = get_preset(preset)
    protocol = _protocol(protocol, split)
    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid methods: {', '.join(METHODS)}.")
    if REFERENCE_METHOD not in methods:
        logger.info("adding %s: every result is reported against it", REFERENCE_METHOD)
        methods.insert(0, REFERENCE_METHOD)
    seeds, preset = _seed_counts(preset, seeds, reduced_seeds, ablation_seeds)
    if judge_data not in JUDGE_DATA:
        raise ValueError(f"--judge-data must be one of {JUDGE_DATA}, got {judge_data!r}.")
    preset = _with_lambdas(preset, lambdas)
    preset = with_future_flags(preset, protocol, {"--cutoff-quantile": cutoff_quantile, "--horizon": horizon,
                                                  "--min-history": min_history,
                                                  "--validation-fraction": validation_fraction})
    if ablations is not None:
        preset = dataclasses.replace(preset, ablations=bool(ablations))
    if preset.ablations and "asft" not in methods:
        raise ValueError(f"--ablations runs A-SFT's ablations, but the methods {methods} leave out asft. Fix: add asft "
                         "to --methods, or pass --no-ablations.")
    preset = _with_world(preset, world, input_path)
    ratings, loader = None, {}
    if input_path is not None:
        ratings, catalog = _ratings(input_path, format, catalog)
        loader = {"format": format, "sep": sep, "columns": columns, "header": header, "catalog": catalog,
                  "rating_scale": rating_scale, "duplicates": duplicates}
    if command is None:
        command = "hf-genrec " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "hf-genrec" else "(Python API)"
    spec = BenchmarkSpec(
        preset=preset, methods=tuple(methods), seeds=seeds, protocol=protocol, ratings=ratings, loader=loader,
        pretrained=_given_model(pretrained, "--pretrained"), reward_model=_given_model(reward_model, "--reward-model"),
        judge_model=_given_model(judge_model, "--judge-model"), judge_data=judge_data, command=command,
    )
    return run_benchmark(output_dir, spec, show_progress=show_progress)
