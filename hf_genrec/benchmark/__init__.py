"""The post-training benchmark behind `hf-genrec benchmark`: presets, resumable stages, evaluation, report.

The orchestration itself is `hf_genrec.commands.benchmark.benchmark`.
"""

from .evaluation import PolicyEvaluation, evaluate_policy, load_evaluation
from .presets import DEFAULT_METHODS, PRESETS, REFERENCE_METHOD, BenchmarkPreset, get_preset
from .report import METRICS, BenchmarkRow, results_markdown, summarize
from .stages import Stage, StageStore, stage_key

__all__ = [
    "DEFAULT_METHODS",
    "METRICS",
    "PRESETS",
    "REFERENCE_METHOD",
    "BenchmarkPreset",
    "BenchmarkRow",
    "PolicyEvaluation",
    "Stage",
    "StageStore",
    "evaluate_policy",
    "get_preset",
    "load_evaluation",
    "results_markdown",
    "stage_key",
    "summarize",
]
