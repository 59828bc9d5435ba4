"""The post-training benchmark behind `hf-genrec benchmark`: presets, resumable stages, evaluation, report.

The stages and their order are `hf_genrec.benchmark.pipeline` (`run_benchmark`); `hf-genrec benchmark`
(`hf_genrec.commands.benchmark`) checks its arguments and calls it.
"""

from .evaluation import PolicyEvaluation, evaluate_policy, load_evaluation
from .pipeline import JUDGE_DATA, BenchmarkSpec, needs_reward_model, run_benchmark
from .presets import DEFAULT_METHODS, PRESETS, REFERENCE_METHOD, BenchmarkPreset, from_recipes, get_preset
from .report import METRICS, BenchmarkRow, results_markdown, summarize
from .stages import Given, Stage, StageStore, stage, stage_key

__all__ = [
    "DEFAULT_METHODS",
    "JUDGE_DATA",
    "METRICS",
    "PRESETS",
    "REFERENCE_METHOD",
    "BenchmarkPreset",
    "BenchmarkRow",
    "BenchmarkSpec",
    "Given",
    "PolicyEvaluation",
    "Stage",
    "StageStore",
    "evaluate_policy",
    "from_recipes",
    "get_preset",
    "load_evaluation",
    "needs_reward_model",
    "results_markdown",
    "run_benchmark",
    "stage",
    "stage_key",
    "summarize",
]
