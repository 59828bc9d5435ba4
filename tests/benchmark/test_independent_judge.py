"""The judge is independent of what it scores (issue 13, item 6): its own pretrained backbone (another seed), its own
member seeds, trained on the training and validation events by default; `judge_pretraining=None` keeps the old
shared backbone."""

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.commands.benchmark import benchmark
from hf_genrec.rewards.ensemble import ENSEMBLE_FILE


def _judge_manifest(results) -> dict:
    return json.loads((Path(results["config"]["judge_model"]) / ENSEMBLE_FILE).read_text(encoding="utf-8"))


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_judge_has_its_own_backbone_and_sees_validation(tmp_path):
    results = benchmark(tmp_path / "run", preset=TEST_PRESET, methods=["rwbc"], seeds=1, show_progress=False)
    policy_backbone = Path(results["config"]["pretrained"])
    judge_trained_on = _judge_manifest(results)["trained_on"]
    judge_backbone = Path(judge_trained_on["pretrained_model"])

    assert judge_trained_on["training_split"] == "train+validation"
    assert judge_backbone.resolve() != policy_backbone.resolve()
    # Two pretraining runs, the judge's with the judge seed; their weights differ (other initialisation).
    pretrain_stages = [s for s in results["stages"] if s["stage"] == "pretrain"]
    assert len(pretrain_stages) == 2
    judge_seed = json.loads((judge_backbone / "metrics.json").read_text())["seed"]
    assert judge_seed == TEST_PRESET.judge_seed != TEST_PRESET.pretrain["training"]["seed"]
    policy_weights, judge_weights = _weights(policy_backbone), _weights(judge_backbone)
    assert policy_weights.keys() == judge_weights.keys()
    assert any(not torch.equal(policy_weights[k], judge_weights[k]) for k in policy_weights)
    assert judge_backbone.parent.name in results["config"]["judge"]


def test_shared_backbone_when_the_preset_asks_for_it(tmp_path):
    preset = dataclasses.replace(TEST_PRESET, judge_pretraining=None)
    results = benchmark(tmp_path / "run", preset=preset, methods=["rwbc"], seeds=1, judge_data="train",
                        show_progress=False)
    judge_trained_on = _judge_manifest(results)["trained_on"]
    assert Path(judge_trained_on["pretrained_model"]).resolve() == Path(results["config"]["pretrained"]).resolve()
    assert judge_trained_on["training_split"] == "train"
    assert len([s for s in results["stages"] if s["stage"] == "pretrain"]) == 1
