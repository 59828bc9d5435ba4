"""What every hf_genrec trainer shares: the training-arguments base, ranking evaluation, metric buffers,
length-bucketed batches and the vocabulary saved beside each checkpoint.

A method's trainer subclasses `GenRecTrainer` and is then mostly its `compute_loss`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import safetensors.torch
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import (
    SAFE_WEIGHTS_NAME,
    is_torch_bf16_gpu_available,
    is_torch_fp16_available_on_device,
)

from ..data.collator import SequenceCollator
from ..data.columns import LABELS
from ..data.sampling import LengthBucketSampler, sequence_lengths
from ..data.streaming import LengthBucketedStream
from ..data.vocabulary import PAD_INDEX
from ..evaluation import RankingPredictions, flatten_metrics
from ..evaluation.evaluator import rank_batch
from ..evaluation.metrics import DEFAULT_HIGH_REWARD_THRESHOLD, RUNTIME, SUBSET_ALL, SUBSETS, metric_key
from ..utils.runtime import CpuHeapGuard, release_cpu_heap, warm_cpu_heap
from ..version import __version__
from .model_card import build_model_card

CHECKPOINT_COMPLETE = "checkpoint_complete.json"
# The trained module's whole state (every parameter and buffer, under the live module's names), saved beside a
# checkpoint whose model files do not hold all of it: the merged model of a PEFT run has no adapter weights under
# their names, a post-training run keeps its extra heads out of `model.safetensors`. Resuming loads it.
TRAINING_STATE_FILE = "training_state.safetensors"
# Config fields that only say where and how a run logs, saves, reports or feeds batches, or that the machine
# sets (`use_cpu`): they leave the trained weights unchanged, so a resumed run may change them. Every other
# field is part of the run's fingerprint.
FINGERPRINT_IGNORED_FIELDS = frozenset({
    "output_dir", "disable_tqdm", "report_to", "run_name", "project", "include_num_input_tokens_seen",
    "skip_memory_metrics", "do_train", "do_eval", "do_predict", "resume_from_checkpoint", "local_rank",
    "use_cpu", "debug", "ddp_timeout", "ddp_backend", "torch_empty_cache_steps", "enable_jit_checkpoint",
    "restore_callback_states_from_checkpoint", "eval_subsets", "dataloader_num_workers",
    "dataloader_pin_memory", "dataloader_persistent_workers", "dataloader_prefetch_factor",
    "dataloader_multiprocessing_context", "cache_reward_states",
})
FINGERPRINT_IGNORED_PREFIXES = ("logging_", "log_", "save_", "hub_", "push_to_hub", "trackio_")


def training_fingerprint(args: TrainingArguments) -> dict[str, Any]:
    """What of a trainer's config determines its trained weights, as JSON values: `seed`, `num_processes`
    (the global batch depends on it) and `training` (every other config field but `FINGERPRINT_IGNORED_FIELDS`
    and `FINGERPRINT_IGNORED_PREFIXES`)."""
    training = {
        name: value for name, value in args.to_dict().items()
        if name not in FINGERPRINT_IGNORED_FIELDS and not name.startswith(FINGERPRINT_IGNORED_PREFIXES)
    }
    seed = training.pop("seed")
    # Through JSON, as the marker stores it: tuples become lists, anything else its string.
    return json.loads(json.dumps({"seed": seed, "num_processes": args.world_size, "training": training}, default=str))


def checkpoint_fingerprint(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The run fingerprint stored in a complete checkpoint's marker, or `None` when it has none (a checkpoint
    written before fingerprints existed)."""
    with open(os.path.join(checkpoint, CHECKPOINT_COMPLETE), encoding="utf-8") as f:
        marker = json.load(f)
    fingerprint = marker.get("run_fingerprint") if isinstance(marker, dict) else None
    return fingerprint if isinstance(fingerprint, dict) else None


def _saved_model_keys(checkpoint: str) -> set[str] | None:
    """The tensor names in a checkpoint's `model.safetensors`, or `None` when it has none."""
    path = os.path.join(checkpoint, SAFE_WEIGHTS_NAME)
    if not os.path.isfile(path):
        return None
    with safetensors.safe_open(path, framework="pt") as f:
        return set(f.keys())


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


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX). Elsewhere torch emulates bf16 autocast
    on the CPU: HSTU trained ~15x slower in bf16 than in fp32 on an AVX2-only EPYC (266 vs 18 s per MovieLens-1M
    epoch), while on an AVX-512-BF16 EPYC bf16 was 1.6-2x faster. (Arm CPUs are answered `False`: fp32 there.)"""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not all(callable(check) for check in checks):
        return True  # a torch without these probes: keep bf16 as asked
    return any(check() for check in checks)


def _accelerator_supports_fp16() -> bool:
    """Whether the accelerator torch sees runs fp16 matmuls and LayerNorm (transformers' own check)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    device = accelerator.current_accelerator() if accelerator is not None else None
    device_type = device.type if device is not None else ("cuda" if torch.cuda.is_available() else None)
    return device_type is not None and is_torch_fp16_available_on_device(device_type)


# Counts `TrainingArguments` takes unchecked: 0 fails much later under another name (the sampler's
# `batch_size` is their product), or trains nothing.
_POSITIVE_COUNTS = ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps")
_MAX_SEED = 2**32 - 1  # numpy's seed range, which `set_seed` also seeds


def _check_training_budget(config: TrainingArguments) -> None:
    """Refuse counts, seeds, learning rates and training lengths that cannot train anything, naming the field.

    `num_train_epochs <= 0` (or NaN/infinite) without a positive `max_steps` would save the untrained model with
    metrics and a model card as if it had been trained.
    """
    for name in _POSITIVE_COUNTS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}. Fix: set {name} to 1 or more.")
    if config.eval_accumulation_steps is not None and config.eval_accumulation_steps < 1:
        raise ValueError(f"eval_accumulation_steps must be a positive integer or None, got "
                         f"{config.eval_accumulation_steps!r}.")
    for name in ("seed", "data_seed"):
        value = getattr(config, name)
        if value is not None and not 0 <= value <= _MAX_SEED:
            raise ValueError(f"{name} must be an integer in [0, {_MAX_SEED}], got {value!r}. Fix: pick a seed in that range.")
    if not 0 <= config.learning_rate < float("inf"):
        raise ValueError(f"learning_rate must be a finite number >= 0, got {config.learning_rate!r}.")
    if (config.max_steps is None or config.max_steps <= 0) and not 0 < config.num_train_epochs < float("inf"):
        raise ValueError(
            f"num_train_epochs must be a finite number > 0, got {config.num_train_epochs!r}: nothing would be trained, "
            "yet the untrained model would be saved. Fix: set num_train_epochs (--epochs) > 0, or max_steps "
            "(--max-steps) > 0."
        )


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
            Test subsets reported by `evaluate`: `all`, `high_reward_target`, `long_history`, and on rows of the
            `future` split `high_reward_trajectory` and `trajectory_reward_q1`..`q4` (see `subset_mask`).
        high_reward_threshold (`float`, *optional*, defaults to 4.5):
            Target reward at or above which a case is in the `high_reward_target` subset.
        early_stopping_patience (`int` or `None`, *optional*, defaults to `None`):
            Stop after this many evaluations without a better validation `metric_for_best_model`
            (`transformers.EarlyStoppingCallback`, added by the trainer); needs evaluations (`eval_strategy`) and
            `load_best_model_at_end=True`. `None` trains the whole budget.

    Defaults that differ from `TrainingArguments`: `remove_unused_columns=False` (the collator needs the
    sequence columns) and `use_cpu` is switched on on a machine without any accelerator
    (so that `torchrun` / `accelerate launch` give data parallelism on gloo; `bf16=True` then runs bf16
    autocast on the CPU, which is faster there too, on a CPU with bf16 instructions: on one without, the run is
    in fp32, with a warning, see `cpu_has_native_bf16`). `bf16=True` on a GPU without bf16 keeps the GPU and
    trains in fp16 if it has fp16, else in fp32, with a warning.
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
    early_stopping_patience: int | None = field(
        default=None, metadata={"help": "Evaluations without improvement before stopping (None: never stop)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the sequence columns."})

    def __post_init__(self):
        if self.bf16 and not self.use_cpu and not is_torch_bf16_gpu_available() and _has_accelerator():
            self._replace_bf16()
        if not self.use_cpu and not _has_accelerator():
            # Without use_cpu, `torchrun` / `accelerate launch` on a machine with no GPU starts N processes
            # that each train alone on all the data (DistributedType.NO); with it they form a gloo group.
            self.use_cpu = True
        if self.bf16 and self.use_cpu and not cpu_has_native_bf16():
            self.bf16 = False
            warnings.warn(
                "bf16=True, but this CPU has no bf16 instructions (AVX512-BF16 or AMX): torch would emulate bf16, "
                "about 15x slower than fp32 (measured on an AVX2 CPU), so this run trains in fp32.",
                UserWarning,
                stacklevel=3,
            )
        if self.use_cpu or not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # pinning needs an accelerator
        unknown = [s for s in self.eval_subsets if s not in SUBSETS]
        if unknown:
            raise ValueError(f"eval_subsets has unknown subsets {unknown}; valid ones are {list(SUBSETS)}.")
        if self.bucket_batches < 1:
            raise ValueError(f"bucket_batches must be at least 1, got {self.bucket_batches}.")
        self._check_early_stopping()
        _check_training_budget(self)
        super().__post_init__()

    def _check_early_stopping(self) -> None:
        """`early_stopping_patience` is a positive count, and stops on evaluations whose best checkpoint is kept."""
        patience = self.early_stopping_patience
        if patience is None:
            return
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"early_stopping_patience must be a positive integer or None, got {patience!r}. Fix: set "
                             "it to 1 or more, or None to train the whole budget.")
        if str(getattr(self.eval_strategy, "value", self.eval_strategy)) == "no" or not self.load_best_model_at_end:
            raise ValueError(
                f"early_stopping_patience={patience} needs validation passes and the best one kept, but eval_strategy="
                f"{getattr(self.eval_strategy, 'value', self.eval_strategy)!r} and load_best_model_at_end="
                f"{self.load_best_model_at_end}. Fix: set eval_strategy ('epoch' or 'steps') and "
                "load_best_model_at_end=True, or early_stopping_patience=None."
            )

    def _replace_bf16(self) -> None:
        """`bf16=True` on an accelerator without bf16: train on it in fp16 when it has fp16, else in fp32 (the
        CPU would be far slower than the GPU in any precision)."""
        self.bf16 = False
        self.fp16 = _accelerator_supports_fp16()
        precision = "fp16 mixed precision" if self.fp16 else "fp32"
        warnings.warn(
            f"bf16=True, but this accelerator has no bf16: training on it in {precision} instead. Set "
            "use_cpu=True to train in bf16 on the CPU.",
            UserWarning,
            stacklevel=3,
        )


class _ReleaseHeapCallback(TrainerCallback):
    """Give free heap pages back to the OS before training, after each epoch and evaluation (see
    `release_cpu_heap`), and after any step that leaves too many of them resident (see `CpuHeapGuard`)."""

    def __init__(self):
        self.guard = CpuHeapGuard()

    def _release(self) -> None:
        release_cpu_heap()
        self.guard.released()

    def on_train_begin(self, args, state, control, **kwargs):
        self._release()

    def on_step_end(self, args, state, control, **kwargs):
        self.guard.step()

    def on_epoch_end(self, args, state, control, **kwargs):
        self._release()

    def on_evaluate(self, args, state, control, **kwargs):
        self._release()


class GenRecTrainer(Trainer):
    """`transformers.Trainer` for sequence recommenders: full-catalogue ranking evaluation, TRL-style
    metric buffers (`self._metrics`), length-bucketed batches and the item vocabulary as processing class.
    """

    _tag_names: list[str] = ["hf_genrec"]
    _name: str = "GenRec"
    _paper: dict | None = None
    # `compute_loss` returns the micro-batch's share of the optimizer step's mean (`step_loss`): Trainer must
    # not divide it by the accumulation steps again.
    loss_is_scaled_for_ga = True
    # What else determines the trained weights besides the config (the recipe's model/data/method sections, the
    # data's and base model's digests): set by the training workflows, stored in every checkpoint marker.
    run_identity: dict[str, Any] | None = None

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
        self._check_streamed_training(args, train_dataset)
        callbacks = list(callbacks or [])
        if getattr(args, "early_stopping_patience", None) is not None:
            callbacks.append(EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience))
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
    # Whether `train_dataset` may be a stream (an `IterableDataset`); trainers that index their rows say False.
    trains_from_streams: bool = True

    def _bucket_batch_size(self) -> int:
        """Rows per length-bucketed batch: the global batch (per-device size x accumulation x processes), so that
        consecutive per-device slices of it, one per rank, hold rows of similar length."""
        global_batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        return global_batch * max(1, self.args.world_size)

    def _bucket_seed(self) -> int:
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.args.bucket_by_length or not hasattr(dataset, "data"):
            return super()._get_train_sampler(train_dataset)
        return LengthBucketSampler(
            sequence_lengths(dataset),
            batch_size=self._bucket_batch_size(),
            bucket_batches=self.args.bucket_batches,
            seed=self._bucket_seed(),
        )

    @classmethod
    def _check_streamed_training(cls, args: TrainingArguments | None, train_dataset) -> None:
        """A stream (`torch.utils.data.IterableDataset`, e.g. `stream_split`'s) has no length, so the number of
        steps must be given; refuse it without `max_steps`, naming the fix (before Trainer's own error), and refuse
        it for a trainer that reads its training rows by index (`trains_from_streams = False`)."""
        if not isinstance(train_dataset, torch.utils.data.IterableDataset):
            return
        if not cls.trains_from_streams:
            raise ValueError(
                f"{cls.__name__} reads its training rows by index and cannot train from a stream "
                f"({type(train_dataset).__name__}). Fix: pass the map-style split (`load_prepared(...)[0]['train']`)."
            )
        if args is None or args.max_steps > 0:
            return
        raise ValueError(
            f"train_dataset is a stream ({type(train_dataset).__name__}, no length), so the number of training steps "
            f"cannot be inferred, but max_steps is {args.max_steps}. Fix: set max_steps (--max-steps) to the steps "
            "to train, e.g. ceil(rows / global batch) x epochs."
        )

    def get_train_dataloader(self):
        """Training batches; from a stream (an `IterableDataset`), every process reads it and keeps its own slice
        of each global batch, length-bucketed per chunk of the stream (`LengthBucketedStream`) when
        `bucket_by_length`.

        Accelerate's default for a stream, `dispatch_batches`, would have rank 0 read every rank's batches and
        concatenate them, which fails on batches cropped to different lengths: each process reads the stream
        itself instead (accelerate's `IterableDatasetShard`, consecutive per-device slices to consecutive ranks),
        so 2 processes with batch B see exactly the rows of 1 process with batch 2B. An explicit
        `accelerator_config.dispatch_batches` is kept.
        """
        dataset = self.train_dataset
        if not isinstance(dataset, torch.utils.data.IterableDataset):
            return super().get_train_dataloader()
        if self.args.bucket_by_length:
            dataset = LengthBucketedStream(dataset, self._bucket_batch_size(), self.args.bucket_batches,
                                           seed=self._bucket_seed())
        config = self.accelerator.dataloader_config
        dispatch = config.dispatch_batches
        if dispatch is None:
            config.dispatch_batches = False
        try:
            return self._get_dataloader(dataset=dataset, description="Training", batch_size=self._train_batch_size,
                                        is_training=True)
        finally:
            config.dispatch_batches = dispatch

    # ------------------------------------------------------------------------------ loss normalisation
    def _loss_units(self, inputs: dict[str, Any]) -> int | float | torch.Tensor:
        """The units a micro-batch's loss is a sum (or mean) over: its supervised positions (`labels` not
        `PAD_INDEX`). Post-training methods count their own (kept pairs, contexts, the sum of weights)."""
        return (inputs[LABELS] != PAD_INDEX).sum()

    def _step_units(self, batch_samples: list[dict[str, Any]]) -> torch.Tensor:
        """The loss units of one optimizer step: `_loss_units` summed over its micro-batches and, when
        `average_tokens_across_devices` (the default), over processes. A float32 scalar on the device."""
        units = sum(torch.as_tensor(self._loss_units(inputs), dtype=torch.float32) for inputs in batch_samples)
        units = torch.as_tensor(units, dtype=torch.float32, device=self.accelerator.device)
        return self._sum_over_processes(units) if self.args.average_tokens_across_devices else units

    def _sum_over_processes(self, value: float | torch.Tensor) -> torch.Tensor:
        """Sum a per-process number over processes (a collective: every process must call it)."""
        total = torch.as_tensor(value, dtype=torch.float32, device=self.accelerator.device).reshape(1)
        if self.accelerator.num_processes > 1:
            total = self.accelerator.gather(total).sum().reshape(1)
        return total[0]

    def _prepare_step(self, batch_samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """No-gradient work on all micro-batches of an optimizer step before any forward (post-training
        stores reference log-probabilities, samples, rollouts there). Runs under `no_grad` and autocast."""
        return batch_samples

    def get_batch_samples(self, epoch_iterator, num_batches: int, device: torch.device):
        """The optimizer step's micro-batches, after `_prepare_step`, and the step's loss units (`_step_units`),
        which Trainer hands to `compute_loss` as `num_items_in_batch`."""
        batch_samples = []
        for _ in range(num_batches):
            try:
                batch_samples.append(next(epoch_iterator))
            except StopIteration:
                break
        if not batch_samples:
            return batch_samples, None
        with torch.no_grad(), self.autocast_smart_context_manager():
            batch_samples = self._prepare_step(batch_samples)
        return batch_samples, self._step_units(batch_samples)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> None:
        # Trainer's count (`labels != -100`) fits neither our padding label (0) nor post-training's units.
        # `get_batch_samples` counts ours after `_prepare_step`; anywhere else (`prediction_step`),
        # `step_loss` counts the batch it is given.
        return None

    def step_loss(
        self,
        loss: torch.Tensor,
        inputs: dict[str, Any],
        num_items_in_batch: torch.Tensor | None,
        mean_over: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        """THE loss normalisation of every hf_genrec trainer. A micro-batch's loss is

            (sum of its per-unit losses) / (units of the whole optimizer step) × processes

        with the units counted by `_step_units` over all accumulation micro-batches and processes. Gradient
        accumulation adds the micro-batches' gradients and DDP averages them over processes, so the step's
        gradient is exactly that of the mean over all its units, however they are split into micro-batches
        and processes (a mean of per-micro-batch means would weight a short batch's units more).

        Args:
            loss: the sum of the micro-batch's per-unit losses or, with `mean_over`, their mean.
            inputs: the micro-batch (counted alone when `num_items_in_batch` is None, i.e. outside the
                training loop: the batch is then the whole step).
            num_items_in_batch: the step's units, from `get_batch_samples`.
            mean_over: P, when `loss` is a mean over the micro-batch's P units (mean × P is their sum).

        No term is added to make every parameter reach the loss for DDP (`ddp_find_unused_parameters=False`
        needs each trainable parameter's gradient in every backward): each method's loss is computed from
        the model's outputs through an indexing of its units, which back-propagates (zero) gradients to
        every parameter even when a micro-batch keeps no unit (`test_every_parameter_gets_a_gradient`).
        """
        if num_items_in_batch is None:
            num_items_in_batch = self._step_units([inputs])
        processes = self.accelerator.num_processes if self.args.average_tokens_across_devices else 1
        dtype = torch.promote_types(loss.dtype, torch.float32)
        units = torch.as_tensor(num_items_in_batch, dtype=dtype, device=loss.device).clamp(min=1e-12)
        if mean_over is not None:
            # The ratio first: it is exactly 1 when this micro-batch is the whole step on one process, so the
            # model's mean loss then passes unchanged, bit for bit.
            return loss * (mean_over * processes / units)
        return loss * processes / units

    # ------------------------------------------------------------------------------------- checkpoints
    def run_fingerprint(self) -> dict[str, Any]:
        """What determines this run's trained weights: the hf_genrec version, `training_fingerprint(args)` and
        `run_identity`, as JSON values. Every checkpoint marker stores it; a resume compares it."""
        identity = json.loads(json.dumps(self.run_identity or {}, default=str))
        return {"hf_genrec_version": __version__, **training_fingerprint(self.args), **identity}

    def _save_checkpoint(self, model, trial) -> None:
        """Save as usual (plus `TRAINING_STATE_FILE` when the model files miss some of the trained state), then
        commit the checkpoint with a marker file, holding the run fingerprint, written atomically.

        A job killed while saving leaves a checkpoint directory without the marker; `last_complete_checkpoint`
        never returns such a directory, so a resume never loads a half-written checkpoint.
        """
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            module = self.accelerator.unwrap_model(self.model)
            saved = _saved_model_keys(folder)
            if saved is None or not saved.issuperset(module.state_dict()):
                safetensors.torch.save_model(module, os.path.join(folder, TRAINING_STATE_FILE), force_contiguous=True)
            marker = os.path.join(folder, CHECKPOINT_COMPLETE)
            content = {"global_step": self.state.global_step, "epoch": self.state.epoch,
                       "run_fingerprint": self.run_fingerprint()}
            with open(marker + ".tmp", "w", encoding="utf-8") as f:
                json.dump(content, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(marker + ".tmp", marker)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Load the weights to resume from: the whole trained state from `TRAINING_STATE_FILE` when the
        checkpoint has one (PEFT adapters and extra heads included, which the model files do not restore),
        else as `Trainer` does."""
        state_file = os.path.join(resume_from_checkpoint, TRAINING_STATE_FILE)
        if not os.path.isfile(state_file):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        module = self.accelerator.unwrap_model(model if model is not None else self.model)
        safetensors.torch.load_model(module, state_file, strict=True)

    def _load_best_model(self) -> None:
        """`load_best_model_at_end`: the best checkpoint's whole trained state from `TRAINING_STATE_FILE` when it has
        one (Trainer would restore `model.safetensors` only, leaving extra heads and a PEFT adapter at their last
        values), else as `Trainer` does."""
        state_file = os.path.join(self.state.best_model_checkpoint, TRAINING_STATE_FILE)
        if not os.path.isfile(state_file):
            return super()._load_best_model()
        safetensors.torch.load_model(self.accelerator.unwrap_model(self.model), state_file, strict=True)

    # ----------------------------------------------------------------------------------------- metrics
    def _record(self, mode: str, name: str, value: torch.Tensor | float) -> None:
        """Buffer a scalar metric (gathered over processes) until the next `log`."""
        if isinstance(value, torch.Tensor):
            value = self.accelerator.gather_for_metrics(value.detach().reshape(1)).float().mean().item()
        self._metrics[mode][name].append(float(value))

    def log(self, logs: dict[str, float], start_time: float | None = None, mode: str = "train") -> None:
        """Log `logs` with the averages of the metrics buffered for `mode`, and clear that buffer.

        `evaluate` passes `mode="eval"`; every other log (Trainer's training logs) is a training one. The mode
        is never read from `model.training`: an evaluation inside training runs with the model back in
        training mode, and would take (and clear) the training window's metrics.
        """
        buffered = {name: sum(v) / len(v) for name, v in self._metrics[mode].items() if v}
        if mode == "eval":
            buffered = {metric_key(name, prefix="eval"): value for name, value in buffered.items()}
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
        with warm_cpu_heap():  # the same large temporaries every batch: no mmap / page faults for each
            for batch in tqdm(dataloader, desc="ranking", leave=False, disable=hide_progress):
                batch = self._prepare_inputs(batch)
                with self.autocast_smart_context_manager():
                    predictions, _ = rank_batch(model, batch)  # scores are computed in fp32
                gathered = self.accelerator.gather_for_metrics(predictions.tensors())
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
        metrics = flatten_metrics(by_subset, prefix=metric_key_prefix)
        metrics[metric_key(RUNTIME, prefix=metric_key_prefix)] = round(time.time() - start, 4)
        self.log(metrics, mode="eval")
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
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        card = build_model_card(
            self,
            model_name=model_name or os.path.basename(os.path.normpath(output_dir)),
            dataset_name=dataset_name or kwargs.get("dataset"),
            base_model=kwargs.get("finetuned_from"),
            tags=[tags] if isinstance(tags, str) else tags,
            license=kwargs.get("license"),
            common_config=GenRecConfig,
        )
        os.makedirs(output_dir, exist_ok=True)
        card.save(os.path.join(output_dir, "README.md"))

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save as `Trainer` does, then write the model card beside the model (before any push).

        A checkpoint (`_save_checkpoint` saves the model with `_internal_call=True`) gets no card unless the run
        pushes to the Hub: resuming never reads it, and rendering a card (YAML of every logged metric) costs about
        0.06 s, a sixth of a 15-epoch pretraining on Amazon Musical Instruments (see docs/performance.md).
        """
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        super().save_model(output_dir, _internal_call=True)
        if self.args.should_save and (not _internal_call or self.args.push_to_hub):
            self.create_model_card(output_dir=output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)


__all__ = [
    "CHECKPOINT_COMPLETE",
    "TRAINING_STATE_FILE",
    "GenRecConfig",
    "GenRecTrainer",
    "checkpoint_fingerprint",
    "last_complete_checkpoint",
    "training_fingerprint",
]
