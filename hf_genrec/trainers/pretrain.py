"""Generative pretraining: next-item prediction on every position (behaviour cloning), with the epoch
selected on validation NDCG@10."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.columns import LABELS
from ..data.history import History
from ..evaluation.metrics import ndcg_key
from .base import GenRecConfig, GenRecTrainer


@dataclass
class PretrainConfig(GenRecConfig):
    r"""
    Configuration of [`PretrainTrainer`]. Defaults are the HSTU reference's MovieLens settings.

    `early_stopping_patience` (stop after that many evaluations without a better validation `ndcg@10`) is a field of
    every hf_genrec config ([`GenRecConfig`]); `None`, the default, trains all `num_train_epochs`.

    Defaults that differ from `TrainingArguments`: `learning_rate=1e-3`, `adam_beta2=0.98`,
    `per_device_train_batch_size=128`, constant learning rate, evaluation and checkpoint every epoch,
    `load_best_model_at_end=True` on validation `ndcg@10`, `save_total_limit=2` (the best and the last).
    """

    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate (reference: 1e-3)."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (reference: 0.98)."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Histories per batch (reference: 128)."})
    per_device_eval_batch_size: int = field(default=256, metadata={"help": "Histories per evaluation batch."})
    num_train_epochs: float = field(default=100.0, metadata={"help": "Epochs (the best one is kept)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "The reference uses no schedule."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Evaluate on validation every epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint every epoch."})
    logging_strategy: str = field(default="steps", metadata={"help": "Log every `logging_steps`."})
    logging_steps: float = field(default=10, metadata={"help": "Steps between logs."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the validation-best epoch."})
    metric_for_best_model: str = field(default=ndcg_key(10), metadata={"help": "Validation metric selecting the epoch."})
    greater_is_better: bool = field(default=True, metadata={"help": "Higher metric_for_best_model is better."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept (the best and the last)."})


class PretrainTrainer(GenRecTrainer):
    """Next-item pretraining of an [`HSTUForNextItemPrediction`] on training sequences.

    Example:

    ```python
    trainer = PretrainTrainer(model, args=PretrainConfig("out"), train_dataset=splits["train"],
                              eval_dataset=splits["validation"], processing_class=vocabulary)
    trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "pretraining"]
    _name = "Pretraining"
    _paper = {
        "title": "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for Generative Recommendations",
        "id": "2402.17152",
    }

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**History.from_batch(inputs).model_inputs(), labels=inputs[LABELS])
        # The model's loss is a mean over the micro-batch's supervised positions (its loss units).
        loss = self.step_loss(outputs.loss, inputs, num_items_in_batch, mean_over=self._loss_units(inputs))
        return (loss, outputs) if return_outputs else loss


__all__ = ["PretrainConfig", "PretrainTrainer"]
