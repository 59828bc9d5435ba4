"""What every hf_genrec trainer shares: the training-arguments base, ranking evaluation, metric buffers,
length-bucketed batches and the vocabulary saved beside each checkpoint.

A method's trainer subclasses `GenRecTrainer` and is then mostly its `compute_loss`.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import is_torch_bf16_gpu_available

from ..data.collator import SequenceCollator
from ..data.columns import LABELS
from ..data.sampling import LengthBucketSampler, sequence_lengths
from ..data.vocabulary import PAD_INDEX
from ..evaluation import RankingPredictions, flatten_metrics
from ..evaluation.evaluator import rank_batch
from ..evaluation.metrics import DEFAULT_HIGH_REWARD_THRESHOLD, SUBSET_ALL, SUBSETS
from ..utils.runtime import release_cpu_heap

CHECKPOINT_COMPLETE = "checkpoint_complete.json"


def last_complete_checkpoint(checkpoints_dir: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` under `checkpoints_dir` whose save finished (see `_save_checkpoint`)."""
    if not os.path.isdir(checkpoints_dir):
        return None
    complete = []
    for name in os.listdir(checkpoints_dir):
        path = os.path.join(checkpoints_dir, name)
        if name.startswith(f"{PREFIX_CHECKPOINT_DIR}-") and os.path.isfile(os.path.join(path, CHECKPOINT_COMPLETE)):
            complete.append((int(name.rsplit("-", 1)[1]), path))
    return max(complete)[1] if complete else None


def _has_accelerator() -> bool:
    """Whether torch sees a GPU or another accelerator (CUDA, XPU, MPS, ...)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return accelerator.is_available() if accelerator is not None else torch.cuda.is_available()


@dataclass
class GenRecConfig(TrainingArguments):
    r"""
    Training arguments shared by every hf_genrec trainer, on top of [`~transformers.TrainingArguments`].

    Args:
        bucket_by_length (`bool`, *optional*, defaults to `True`):
            Build batches of similar-length histories so each batch is cropped to its longest one.
        bucket_batches (`int`, *optional*, defaults to 16):
            Batches sorted together per bucket when `bucket_by_length` (more = less padding, less shuffle).
        eval_subsets (`list[str]`, *optional*, defaults to `["all"]`):
            Test subsets reported by `evaluate`: `all`, `high_reward_target`, `high_reward_trajectory`.
        high_reward_threshold (`float`, *optional*, defaults to 4.5):
            Target reward at or above which a case is in the `high_reward_target` subset.

    Defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the collator needs the
    sequence columns), `report_to="none"`, and `use_cpu` is switched on when `bf16=True` is asked for on a
    machine without a bf16 GPU (bf16 autocast then runs on the CPU, which is faster there too) and on a
    machine without any accelerator (so that `torchrun` / `accelerate launch` give data parallelism on gloo).
    """

    bucket_by_length: bool = field(
        default=True, metadata={"help": "Batch histories of similar length together (less padding)."}
    )
    bucket_batches: int = field(default=16, metadata={"help": "Batches sorted together per length bucket."})
    eval_subsets: list[str] = field(
        default_factory=lambda: [SUBSET_ALL],
        metadata={"help": f"Evaluation subsets, any of {SUBSETS}."},
    )
    high_reward_threshold: float = field(
        default=DEFAULT_HIGH_REWARD_THRESHOLD,
        metadata={"help": "Target reward at or above which a test case is 'high_reward_target'."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the sequence columns."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Logging integrations."})

    def __post_init__(self):
        if self.bf16 and not self.use_cpu and not is_torch_bf16_gpu_available():
            self.use_cpu = True
        if not self.use_cpu and not _has_accelerator():
            # Without use_cpu, `torchrun` / `accelerate launch` on a machine with no GPU starts N processes
            # that each train alone on all the data (DistributedType.NO); with it they form a gloo group.
            self.use_cpu = True
        if self.use_cpu or not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator
        unknown = [s for s in self.eval_subsets if s not in SUBSETS]
        if unknown:
            raise ValueError(f"eval_subsets has unknown subsets {unknown}; valid ones are {list(SUBSETS)}.")
        if self.bucket_batches < 1:
            raise ValueError(f"bucket_batches must be at least 1, got {self.bucket_batches}.")
        super().__post_init__()


class _ReleaseHeapCallback(TrainerCallback):
    """Give free heap pages back to the OS after each epoch and evaluation (see `release_cpu_heap`)."""

    def on_epoch_end(self, args, state, control, **kwargs):
        release_cpu_heap()

    def on_evaluate(self, args, state, control, **kwargs):
        release_cpu_heap()


class GenRecTrainer(Trainer):
    """`transformers.Trainer` for sequence recommenders: full-catalogue ranking evaluation, TRL-style
    metric buffers (`self._metrics`), length-bucketed batches and the item vocabulary as processing class.
    """

    _tag_names: list[str] = ["hf_genrec"]
    _name: str = "GenRec"
    _paper: dict | None = None
    # Our losses are batch means; Trainer must still divide them by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model=None,
        args: GenRecConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        callbacks=None,
        optimizers=(None, None),
        **kwargs,
    ):
        if data_collator is None and model is not None:
            data_collator = SequenceCollator(max_seq_len=model.config.max_seq_len)
        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            optimizers=optimizers,
            **kwargs,
        )
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.add_callback(_ReleaseHeapCallback())
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    # ----------------------------------------------------------------------------------------- batches
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.bucket_by_length or not hasattr(dataset, "data"):
            return super()._get_train_sampler(train_dataset)
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return LengthBucketSampler(
            sequence_lengths(dataset),
            batch_size=global_batch * max(1, self.args.world_size),
            bucket_batches=self.args.bucket_batches,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
        )

    # ------------------------------------------------------------------------------ loss normalisation
    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Supervised positions (`labels != 0`) in all micro-batches of this optimiser step, summed over
        processes when `average_tokens_across_devices` (the default). Trainer counts `labels != -100`,
        but our padding label is `PAD_INDEX` (0)."""
        if not batch_samples or LABELS not in batch_samples[0]:
            return None
        count = sum((batch[LABELS] != PAD_INDEX).sum() for batch in batch_samples).to(device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count.reshape(1)).sum()
        return count

    def scale_to_step_mean(
        self, loss: torch.Tensor, num_positions: torch.Tensor | int, num_items_in_batch: torch.Tensor | None
    ) -> torch.Tensor:
        """Turn a mean over this micro-batch's `num_positions` supervised positions into its share of the
        mean over every position of the optimiser step (all accumulation micro-batches, all processes).

        Trainer divides the loss by the accumulation steps and DDP averages gradients over processes, so a
        per-micro-batch mean would weight a short batch's positions more than a long one's: 2 processes with
        batch B would not train like 1 process with batch 2B. Multiplying by
        `num_positions * processes * accumulation_steps / num_items_in_batch` makes them equal. A no-op in
        evaluation or when Trainer passed no count.
        """
        if num_items_in_batch is None or not self.model.training:
            return loss
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        steps = getattr(self, "current_gradient_accumulation_steps", 1)
        return loss * (num_positions * processes * steps / num_items_in_batch)

    # ------------------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        """Save as usual, then commit the checkpoint with a marker file written atomically.

        A job killed while saving leaves a checkpoint directory without the marker; `last_complete_checkpoint`
        never returns such a directory, so a resume never loads a half-written checkpoint.
        """
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            marker = os.path.join(folder, CHECKPOINT_COMPLETE)
            with open(marker + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"global_step": self.state.global_step, "epoch": self.state.epoch}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(marker + ".tmp", marker)

    # ----------------------------------------------------------------------------------------- metrics
    def _record(self, mode: str, name: str, value: torch.Tensor | float) -> None:
        """Buffer a scalar metric (gathered over processes) until the next `log`."""
        if isinstance(value, torch.Tensor):
            value = self.accelerator.gather_for_metrics(value.detach().reshape(1)).float().mean().item()
        self._metrics[mode][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        buffered = {name: sum(v) / len(v) for name, v in self._metrics[mode].items() if v}
        if mode == "eval":
            buffered = {f"eval_{name}": value for name, value in buffered.items()}
        logs = {**logs, **buffered}
        self._metrics[mode].clear()
        super().log(logs, start_time)

    # -------------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict_ranks(self, dataset) -> RankingPredictions:
        """Rank every evaluation case's target over the full catalogue (seen items excluded).

        Each process scores its shard; ranks are gathered from all processes before any metric is
        computed, so multi-process metrics equal single-process ones. Rows are scored shortest history
        first (each batch is padded only to its own longest row) and returned in dataset order.
        """
        if isinstance(dataset, Dataset):  # an Arrow dataset: sort by length without decoding rows
            order = torch.from_numpy(sequence_lengths(dataset)).argsort(stable=True)  # (U,)
            dataset = dataset.select(order.tolist())
        else:  # any other map-style dataset is scored in its own order
            order = torch.arange(len(dataset))
        dataloader = self.get_eval_dataloader(dataset)
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        parts: list[RankingPredictions] = []
        hide_progress = self.args.disable_tqdm or not self.is_local_process_zero()
        for batch in tqdm(dataloader, desc="ranking", leave=False, disable=hide_progress):
            batch = self._prepare_inputs(batch)
            with self.autocast_smart_context_manager():
                predictions, _ = rank_batch(model, batch)  # scores are computed in fp32
            gathered = self.accelerator.gather_for_metrics(
                (predictions.ranks, predictions.target_ratings, predictions.trajectory_rewards)
            )
            parts.append(RankingPredictions(*gathered).cpu())
        model.train(was_training)
        restore = order.argsort()  # scored order -> dataset order
        return RankingPredictions.concat(parts).reorder(restore)

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Full-catalogue ranking metrics (HR@k, NDCG@k, MRR) on `eval_dataset`, per `args.eval_subsets`.

        Keys are `{prefix}_hr@10`, ... for subset `all` and `{prefix}_{subset}/hr@10` for the others.
        """
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs an eval_dataset of rows with a target (e.g. the validation split).")
        start = time.time()
        predictions = self.predict_ranks(dataset)
        by_subset = predictions.metrics(
            subsets=tuple(self.args.eval_subsets), high_reward_threshold=self.args.high_reward_threshold
        )
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in flatten_metrics(by_subset).items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # -------------------------------------------------------------------------------------- model card
    def create_model_card(self, model_name=None, dataset_name=None, tags=None, output_dir=None, **kwargs) -> None:
        """Write the model card `README.md` (template `hf_genrec/templates/model_card.md`, see
        `hf_genrec.trainers.model_card`) to `output_dir` (default: `args.output_dir`).

        Also takes `Trainer.push_to_hub`'s card arguments: `finetuned_from` (base model), `dataset`, `license`.
        """
        if not self.is_world_process_zero():
            return
        from .model_card import build_model_card

        output_dir = output_dir if output_dir is not None else self.args.output_dir
        card = build_model_card(
            self,
            model_name=model_name or os.path.basename(os.path.normpath(output_dir)),
            dataset_name=dataset_name or kwargs.get("dataset"),
            base_model=kwargs.get("finetuned_from"),
            tags=[tags] if isinstance(tags, str) else tags,
            license=kwargs.get("license"),
        )
        os.makedirs(output_dir, exist_ok=True)
        card.save(os.path.join(output_dir, "README.md"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as `Trainer` does, then write the model card beside the model (before any push)."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super().save_model(output_dir, _internal_call=True)
        if self.args.should_save:
            self.create_model_card(output_dir=output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)


__all__ = ["CHECKPOINT_COMPLETE", "GenRecConfig", "GenRecTrainer", "last_complete_checkpoint"]
