"""`hf-genrec simulate`: every post-training method trained on logs simulated in a world whose true reward is
known, measured against that truth. This module checks the command's arguments; the study itself is
`hf_genrec.simulation.study`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ..simulation.study import SimulationPreset, get_simulation_preset, run_simulation
from ..workflows.posttrain import METHODS

__all__ = ["simulate"]


def simulate(
    output_dir: str | os.PathLike = "runs/simulate",
    *,
    preset: str | SimulationPreset = "tiny",
    seeds: int = 1,
    methods: tuple[str, ...] | list[str] | None = None,
    command: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Run (or resume) the simulation study and write `results.json` and `results.md` under `output_dir`.

    Args:
        output_dir: DIR; stages live under `DIR/stages/<stage>-<key>/`, results at the top.
        preset: `tiny`, `quick`, `full` (see `hf_genrec.simulation.study.PRESETS`) or a `SimulationPreset`.
        seeds: simulated logs per world setting (seed i draws log i and trains everything on it with seed + i).
        methods: post-training methods trained against the proxy (default: the preset's); PPO against the true
            reward (`ppo_true`) is always added.
        command: the command line recorded in the results (default: this process's).

    Returns:
        The content of `results.json` (plus `markdown`).
    """
    preset = get_simulation_preset(preset)
    if methods is not None:
        methods = tuple(dict.fromkeys(methods))
        unknown = [method for method in methods if method not in METHODS]
        if unknown:
            raise ValueError(f"--methods {' '.join(unknown)} is unknown; valid methods: {', '.join(METHODS)}.")
    if command is None:
        command = "hf-genrec " + shlex.join(sys.argv[1:]) if Path(sys.argv[0]).name == "hf-genrec" else "(Python API)"
    return run_simulation(output_dir, preset, seeds=seeds, methods=methods, command=command,
                          show_progress=show_progress)
