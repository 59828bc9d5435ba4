"""`hf-genrec simulate`: every post-training method trained on logs simulated in a world whose true reward is
known, measured against that truth. This module checks the command's arguments; the study itself is
`hf_genrec.simulation.study`."""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ..simulation.calibration import calibration_spec
from ..simulation.logging_policy import PROPENSITY_MODES
from ..simulation.study import SimulationPreset, get_simulation_preset, run_simulation
from ..workflows.posttrain import METHODS

__all__ = ["simulate"]


def simulate(
    output_dir: str | os.PathLike = "runs/simulate",
    *,
    preset: str | SimulationPreset = "tiny",
    seeds: int | None = None,
    methods: tuple[str, ...] | list[str] | None = None,
    command: str | None = None,
    show_progress: bool = True,
    input_path: str | os.PathLike | None = None,
    format: str = "movielens",
    sep: str | None = None,
    columns: str | None = None,
    header: bool = False,
    propensities: str | None = None,
) -> dict[str, Any]:
    """Run (or resume) the simulation study and write `results.json` and `results.md` under `output_dir`.

    Args:
        output_dir: DIR; stages live under `DIR/stages/<stage>-<key>/`, results at the top.
        preset: `tiny`, `quick`, `full` (see `hf_genrec.simulation.study.PRESETS`) or a `SimulationPreset`.
        seeds: simulated logs per world setting (seed i draws log i and trains everything on it with seed + i);
            default: the preset's `default_seeds` (`tiny` 1, `quick` and `full` 3).
        methods: post-training methods trained against the proxy (default: the preset's); PPO against the true
            reward (`ppo_true`) is always added.
        command: the command line recorded in the results (default: this process's).
        input_path: a real ratings file (`--input`): the world is calibrated on it (`calibrate_world`) instead of
            the preset's synthetic world, and `results.json` records the fit; the preset's log sizes must not
            exceed its users.
        format, sep, columns, header: how to read `input_path`, as for `hf-genrec prepare`.
        propensities: what each simulated log carries of its logging propensities (`--propensities`; default the
            preset's, `hidden`): `hidden` (none), `exported` (the true ones) or `wrong` (a misspecified policy's),
            written to `propensities.csv` beside the simulate stage's `ratings.dat`.

    Returns:
        The content of `results.json` (plus `markdown`).
    """
    preset = get_simulation_preset(preset)
    if propensities is not None:
        if propensities not in PROPENSITY_MODES:
            raise ValueError(f"--propensities {propensities!r} is unknown; use one of {', '.join(PROPENSITY_MODES)}.")
        preset = dataclasses.replace(preset, propensities=propensities)
    seeds = preset.default_seeds if seeds is None else seeds
    if methods is not None:
        methods = tuple(dict.fromkeys(methods))
        unknown = [method for method in methods if method not in METHODS]
        if unknown:
            raise ValueError(f"--methods {' '.join(unknown)} is unknown; valid methods: {', '.join(METHODS)}.")
    if command is None:
        command = "hf-genrec " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "hf-genrec" else "(Python API)"
    calibration = None
    if input_path is not None:
        calibration = calibration_spec(input_path, format, sep=sep, columns=columns, header=header or None,
                                       seed=preset.world.get("seed", 0))
    elif format != "movielens" or sep is not None or columns is not None or header:
        raise ValueError("--format, --sep, --columns and --header describe --input, which is not given; pass "
                         "--input PATH to calibrate the world on a ratings file, or drop them.")
    return run_simulation(output_dir, preset, seeds=seeds, methods=methods, command=command,
                          show_progress=show_progress, calibration=calibration)
