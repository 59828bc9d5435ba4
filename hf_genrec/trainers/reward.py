"""Reward-model training: regress the logged reward of every next item (and the value of every context) on
training sequences, with the epoch selected on validation RMSE.

One trainer run trains one ensemble member; `hf_genrec.workflows.reward.train_reward_ensemble` runs it K
times with different seeds and bootstrap resamples of users.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.columns import (
    ATTENTION_MASK,
    ITEM_IDS,
    LABEL_RATINGS,
    LABELS,
    RATINGS,
    TARGET_ITEM_IDS,
    TARGET_RATING,
    TARGET_RATINGS,
)
from ..data.history import History
from ..evaluation.metrics import RUNTIME, metric_key
from ..rewards.baselines import flat_list_column, target_column
from ..rewards.metrics import (
    NEXT_ITEM_LOSS,
    NUM_CASES,
    REWARD_MAE,
    REWARD_MSE,
    REWARD_RMSE,
    VALUE_MSE,
    VALUE_RMSE,
    mae,
    rmse,
)
from .base import GenRecConfig, GenRecTrainer


@dataclass
class RewardConfig(GenRecConfig):
    r"""
    Configuration of [`RewardTrainer`] and of `train_reward_ensemble`.

    Args:
        ensemble_size (`int`, *optional*, defaults to 5):
            Members K of the ensemble trained by `train_reward_ensemble` (member k uses seed `seed + k`).
            Ignored by a single `RewardTrainer`.
        bootstrap (`bool`, *optional*, defaults to `True`):
            Train each member on a bootstrap resample of the training users (drawn with replacement, seeded
            by the member's seed), so members differ in data as well as initialisation and the ensemble std
            reflects how much data backs a prediction.
        freeze_backbone (`bool`, *optional*, defaults to `False`):
            Train the reward and value heads only, on the frozen pretrained backbone (item table included).
            Faster, and leaves the pretrained representation untouched.
        next_item_loss_weight (`float` or `None`, *optional*, defaults to `None`):
            Co-training weight of the next-item loss; overrides the model config's `next_item_loss_weight`
            (0 by default) when set. Must be 0 with `freeze_backbone`.

    Defaults that differ from `TrainingArguments`: `learning_rate=1e-3`, `adam_beta2=0.98` (as in HSTU
    pretraining), `per_device_train_batch_size=128`, cosine schedule, `num_train_epochs=5`, evaluation and
    checkpoint every epoch, `load_best_model_at_end=True` on the lowest validation `reward/rmse`,
    `save_total_limit=2`.
    """

    ensemble_size: int = field(default=5, metadata={"help": "Ensemble members K (different seeds and resamples)."})
    bootstrap: bool = field(
        default=True, metadata={"help": "Train each member on a bootstrap resample of the training users."}
    )
    freeze_backbone: bool = field(
        default=False, metadata={"help": "Train only the reward and value heads on the frozen backbone."}
    )
    next_item_loss_weight: float | None = field(
        default=None,
        metadata={"help": "Co-training weight of the next-item loss (None: keep the model config's value)."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (as in HSTU pretraining)."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Histories per batch."})
    per_device_eval_batch_size: int = field(default=512, metadata={"help": "Histories per evaluation batch."})
    num_train_epochs: float = field(default=5.0, metadata={"help": "Epochs (the best one is kept)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Evaluate on validation every epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint every epoch."})
    logging_strategy: str = field(default="steps", metadata={"help": "Log every `logging_steps`."})
    logging_steps: float = field(default=10, metadata={"help": "Steps between logs."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the validation-best epoch."})
    metric_for_best_model: str = field(default=REWARD_RMSE, metadata={"help": "Validation metric selecting the epoch."})
    greater_is_better: bool = field(default=False, metadata={"help": "Lower RMSE is better."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (the best and the last)."})

    def __post_init__(self):
        if self.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be at least 1, got {self.ensemble_size}.")
        if self.next_item_loss_weight is not None and self.next_item_loss_weight < 0:
            raise ValueError(f"next_item_loss_weight must be >= 0, got {self.next_item_loss_weight}.")
        if self.freeze_backbone and self.next_item_loss_weight:
            raise ValueError(
                f"freeze_backbone=True with next_item_loss_weight={self.next_item_loss_weight}: the next-item loss "
                "only trains the frozen backbone. Set one of them off."
            )
        super().__post_init__()


def check_reward_dataset(dataset, name: str, evaluation: bool = False) -> None:
    """Raise `ValueError` naming the column when `dataset` lacks ratings or holds NaN ones."""
    if dataset is None:
        return
    flat_list_column(dataset, RATINGS, dtype=np.float32)  # missing column or NaN -> ValueError naming it
    if evaluation:
        targets = target_column(dataset, TARGET_RATING, np.float64)
        if not np.isfinite(targets).all():
            raise ValueError(
                f"{name} column {TARGET_RATING!r} holds {int((~np.isfinite(targets)).sum())} NaN or infinite "
                "value(s). Fix: every held-out event needs a numeric rating."
            )


class RewardTrainer(GenRecTrainer):
    """Trains an [`HSTUForRewardModeling`]: reward head on (history, next item) -> rating, value head on
    history -> rating, optionally with the next-item loss; `evaluate` reports RMSE / MAE of the validation
    targets' predicted reward instead of ranking metrics.

    Example:

    ```python
    model = HSTUForRewardModeling.from_pretrained("runs/ml1m-hstu")  # pretrained backbone, new heads
    trainer = RewardTrainer(model, args=RewardConfig("out"), train_dataset=splits["train"],
                            eval_dataset=splits["validation"], processing_class=vocabulary)
    trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "reward-model"]
    _name = "Reward"
    # No paper: the design follows the Netflix tech-blog post on post-training generative recommenders.
    _paper = None

    def __init__(self, model=None, args: RewardConfig | None = None, train_dataset=None, eval_dataset=None, **kwargs):
        check_reward_dataset(train_dataset, "train_dataset")
        check_reward_dataset(eval_dataset, "eval_dataset", evaluation=True)
        if model is not None and args is not None:
            if args.next_item_loss_weight is not None:
                model.config.next_item_loss_weight = args.next_item_loss_weight
            if args.freeze_backbone:
                model.freeze_backbone()
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if LABEL_RATINGS not in inputs:
            raise ValueError(
                f"the batch has no {LABEL_RATINGS!r}: reward models need the rating of every event. Fix: train on "
                "sequences with a 'ratings' column, collated by SequenceCollator."
            )
        labels, label_ratings = inputs[LABELS], inputs[LABEL_RATINGS]
        outputs = model(**History.from_batch(inputs).model_inputs(), labels=labels, label_ratings=label_ratings)

        # Log the metrics
        mode = "train" if model.training else "eval"
        with torch.no_grad():
            supervised = labels > 0
            errors = outputs.rewards[supervised].float() - label_ratings[supervised].float()
            self._record(mode, REWARD_MSE, errors.pow(2).mean())
            self._record(mode, VALUE_MSE, outputs.value_loss)
            if outputs.next_item_loss is not None:
                self._record(mode, NEXT_ITEM_LOSS, outputs.next_item_loss)
        # The model's loss is a mean over the micro-batch's supervised positions.
        loss = self.step_loss(outputs.loss, inputs, num_items_in_batch, mean_over=supervised.sum())
        return (loss, outputs) if return_outputs else loss

    # -------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_rewards(self, dataset) -> dict[str, torch.Tensor]:
        """Predicted reward and value of every evaluation row's target, from its history.

        Returns `{"rewards", "values", "targets"}`, each (U,) on CPU, in dataset order (unclamped rewards
        are clamped to the reward scale, as at inference).
        """
        dataloader = self.get_eval_dataloader(dataset)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        rewards, values, targets = [], [], []
        hide_progress = self.args.disable_tqdm or not self.is_local_process_zero()
        for batch in tqdm(dataloader, desc="rewards", leave=False, disable=hide_progress):
            batch = self._prepare_inputs(batch)
            mask = batch[ATTENTION_MASK]
            rows = torch.arange(mask.shape[0], device=mask.device)
            last = (mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
            # One forward pass: the target is the label of the last real position.
            labels = torch.zeros_like(batch[ITEM_IDS])
            labels[rows, last] = batch[TARGET_ITEM_IDS]
            with self.autocast_smart_context_manager():
                outputs = model(**History.from_batch(batch).model_inputs(), labels=labels)
            gathered = self.accelerator.gather_for_metrics(
                (outputs.rewards[rows, last].float(), outputs.values[rows, last].float(), batch[TARGET_RATINGS].float())
            )
            rewards.append(gathered[0].cpu())
            values.append(gathered[1].cpu())
            targets.append(gathered[2].cpu())
        model.train(was_training)
        low, high = model.config.reward_min, model.config.reward_max
        return {
            "rewards": torch.cat(rewards).clamp(low, high),
            "values": torch.cat(values).clamp(low, high),
            "targets": torch.cat(targets),
        }

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """RMSE / MAE of the predicted reward of each evaluation row's target (and the value head's RMSE).

        Keys: `{prefix}_reward/rmse`, `{prefix}_reward/mae`, `{prefix}_value/rmse`, `{prefix}_num_cases`.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset of rows with a target (e.g. the validation split).")
        start = time.time()
        predictions = self.predict_rewards(dataset)
        targets = predictions["targets"]
        metrics = {
            metric_key(REWARD_RMSE, prefix=metric_key_prefix): rmse(predictions["rewards"], targets),
            metric_key(REWARD_MAE, prefix=metric_key_prefix): mae(predictions["rewards"], targets),
            metric_key(VALUE_RMSE, prefix=metric_key_prefix): rmse(predictions["values"], targets),
            metric_key(NUM_CASES, prefix=metric_key_prefix): int(targets.numel()),
            metric_key(RUNTIME, prefix=metric_key_prefix): round(time.time() - start, 4),
        }
        self.log(metrics, mode="eval")
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["RewardConfig", "RewardTrainer", "check_reward_dataset"]
