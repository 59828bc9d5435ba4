"""Two configuration/logging rules of `GenRecTrainer`:

- metrics buffered while training are logged with the training entries, never with an evaluation's, even
  though `evaluate` runs between training steps (its ranking pass puts the model back in training mode);
- `bf16=True` on a GPU without bf16 keeps training on the GPU, in fp16 when it has it, else in fp32.
"""

import os
import platform

import pytest
import torch
from posttrain_helpers import posttrain_trainer
from transformers import TrainingArguments

from hf_genrec.trainers import GenRecConfig
from hf_genrec.trainers import base as trainer_base


def test_training_metrics_stay_in_the_training_log(tmp_path, synthetic_data):
    splits, vocabulary = synthetic_data
    trainer = posttrain_trainer("sft", tmp_path, splits["train"], eval_dataset=splits["validation"],
                                processing_class=vocabulary, max_steps=4, eval_strategy="steps", eval_steps=2,
                                logging_steps=4)
    recorded = []  # every per-step value of the training metric, as buffered
    record_mean = trainer._record_mean

    def spy(mode, name, values):
        record_mean(mode, name, values)
        if mode == "train" and name == "logps/logged":
            recorded.append(trainer._metrics["train"][name][-1])

    trainer._record_mean = spy
    trainer.train()

    evaluations = [entry for entry in trainer.state.log_history if "eval_ndcg@10" in entry]
    training = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(evaluations) == 2 and len(training) == 1 and len(recorded) == 4
    assert all("logps/logged" not in entry and "eval_logps/logged" not in entry for entry in evaluations)
    # The training entry at step 4 averages the metric over all 4 steps, including the 2 before the first
    # evaluation.
    assert training[0]["logps/logged"] == pytest.approx(sum(recorded) / 4)


@pytest.fixture
def gpu_without_bf16(monkeypatch):
    """A machine whose only accelerator is a CUDA GPU without bf16. `TrainingArguments.__post_init__` is
    skipped: it would set up that CUDA device, which this machine lacks."""
    monkeypatch.setattr(trainer_base, "is_torch_bf16_gpu_available", lambda: False)
    monkeypatch.setattr(trainer_base, "_has_accelerator", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)
    return monkeypatch


def test_bf16_on_a_gpu_without_bf16_trains_in_fp16_on_the_gpu(gpu_without_bf16, tmp_path):
    gpu_without_bf16.setattr(trainer_base, "_accelerator_supports_fp16", lambda: True, raising=False)
    with pytest.warns(UserWarning, match="fp16"):
        args = GenRecConfig(str(tmp_path), bf16=True)
    assert not args.use_cpu and args.fp16 and not args.bf16


def test_bf16_on_a_gpu_without_half_precision_trains_in_fp32_on_the_gpu(gpu_without_bf16, tmp_path):
    gpu_without_bf16.setattr(trainer_base, "_accelerator_supports_fp16", lambda: False, raising=False)
    with pytest.warns(UserWarning, match="fp32"):
        args = GenRecConfig(str(tmp_path), bf16=True)
    assert not args.use_cpu and not args.fp16 and not args.bf16


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(trainer_base, "is_torch_bf16_gpu_available", lambda: False)
    monkeypatch.setattr(trainer_base, "_has_accelerator", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return monkeypatch


def test_bf16_without_any_accelerator_runs_bf16_on_a_cpu_with_bf16(cpu_only, tmp_path):
    cpu_only.setattr(trainer_base, "cpu_has_native_bf16", lambda: True)
    args = GenRecConfig(str(tmp_path), bf16=True)
    assert args.use_cpu and args.bf16 and not args.fp16


def test_bf16_on_a_cpu_without_bf16_instructions_trains_in_fp32(cpu_only, tmp_path):
    # Emulated bf16 autocast made HSTU ~15x slower than fp32 on an AVX2-only CPU: the recipes' bf16 must not.
    cpu_only.setattr(trainer_base, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no bf16 instructions.*fp32"):
        args = GenRecConfig(str(tmp_path), bf16=True)
    assert args.use_cpu and not args.bf16 and not args.fp16


@pytest.mark.skipif(not os.path.isfile("/proc/cpuinfo") or platform.machine() not in ("x86_64", "AMD64"),
                    reason="reads x86 CPU flags from /proc/cpuinfo")
def test_cpu_bf16_probe_agrees_with_the_cpu_flags():
    flags = set(next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split())
    assert trainer_base.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})
