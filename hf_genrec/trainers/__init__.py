"""Trainers: one `XxxConfig(TrainingArguments)` + `XxxTrainer(transformers.Trainer)` pair per method."""

from .base import GenRecConfig, GenRecTrainer
from .pretrain import PretrainConfig, PretrainTrainer
from .reward import RewardConfig, RewardTrainer

__all__ = ["GenRecConfig", "GenRecTrainer", "PretrainConfig", "PretrainTrainer", "RewardConfig", "RewardTrainer"]
