"""Trainers: one `XxxConfig(TrainingArguments)` + `XxxTrainer(transformers.Trainer)` pair per method."""

from .asft import ASFTConfig, ASFTTrainer
from .base import GenRecConfig, GenRecTrainer
from .cql import CQLConfig, CQLTrainer
from .dpo import DPOConfig, DPOTrainer
from .policy import PolicyTrainer, PostTrainConfig
from .ppo import PPOConfig, PPOTrainer
from .pretrain import PretrainConfig, PretrainTrainer
from .reward import RewardConfig, RewardTrainer
from .sft import RWBCConfig, RWBCTrainer, SFTConfig, SFTTrainer

__all__ = [
    "ASFTConfig",
    "ASFTTrainer",
    "CQLConfig",
    "CQLTrainer",
    "DPOConfig",
    "DPOTrainer",
    "GenRecConfig",
    "GenRecTrainer",
    "PPOConfig",
    "PPOTrainer",
    "PolicyTrainer",
    "PostTrainConfig",
    "PretrainConfig",
    "PretrainTrainer",
    "RWBCConfig",
    "RWBCTrainer",
    "RewardConfig",
    "RewardTrainer",
    "SFTConfig",
    "SFTTrainer",
]
