"""The policy side every post-training trainer shares: full-catalogue log-probabilities, contexts and
candidate sampling, the frozen reference policy, the reward ensemble, extra heads, and a loss normalised
over the whole optimizer step.

Shapes: B batch rows, N positions, d hidden size, V items (the catalogue has V + 1 columns, column 0 is
padding and never an action), P supervised positions of a batch, C contexts, M candidates per context.

The policy π_θ(·|x) of a recommender at a position is the softmax of its item scores over the catalogue,
`log_softmax(model.item_logits(user_embedding))`. On the training path the scores come out of the model's own
forward (`policy_forward(model, inputs, logits_mask=...)`): under FSDP / ZeRO-3 the item table is sharded and
only the wrapped module's forward gathers it.

**Sharded post-training.** The frozen models follow the trainer's distributed setup (`prepare_frozen_model`):
under DeepSpeed the reference policy goes through TRL's `prepare_deepspeed`, under FSDP through TRL's
`prepare_fsdp`; on one process or under DDP it is moved to the device, as before. The reward ensemble stays a
full copy on each device (its scoring methods run outside any forward; see `docs/trl.md`).

**How a post-training trainer runs one optimizer step** (`PolicyTrainer`):

1. `get_batch_samples` (`GenRecTrainer`) receives all `gradient_accumulation_steps` micro-batches of the
   step at once (the `Trainer` loop prefetches them). `_prepare_step` then runs everything that needs no
   gradient (frozen reference policy, reward ensemble, candidate sampling, rollouts) and stores the results
   in each micro-batch under `inputs[PREPARED]`, and `_step_units` counts the step's units (`_loss_units`:
   supervised positions, kept pairs, contexts, or the sum of weights) over micro-batches and processes.
2. `compute_loss` returns `GenRecTrainer.step_loss` of Σ(per-unit losses of the micro-batch): that sum over
   the units of the whole step, times the number of processes, the one normalisation of every trainer.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from accelerate.utils import is_peft_model
from torch import nn
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.trainer.utils import disable_dropout_in_model

from ..data.history import History
from ..models import AutoModelForNextItemPrediction
from .base import GenRecConfig, GenRecTrainer

logger = logging.getLogger(__name__)

# Sub-directory of a saved PEFT run holding the adapter (the directory itself holds the merged recommender,
# so `from_pretrained(dir)` never mistakes it for an adapter checkpoint).
ADAPTER_DIR = "adapter"
# Key under which `_prepare_step` stores its no-gradient results in a micro-batch.
PREPARED = "prepared"
# Training rows on which the extra heads' initial biases are estimated (spread evenly over the training set).
HEAD_INIT_ROWS = 1024
# LoRA targets when a PEFT config names none: the HSTU layer projections (peft cannot infer them for a
# model type it does not know).
DEFAULT_LORA_TARGET_MODULES = ("uvqk", "o_proj")
# The one task type a recommender's PEFT config may carry besides None: TRL's `ModelConfig.lora_task_type` default,
# which peft would otherwise wrap as a causal LM (that needs `prepare_inputs_for_generation`, and a recommender
# takes no `input_ids`).
COERCED_TASK_TYPE = "CAUSAL_LM"


# --------------------------------------------------------------------------------------------------- config
@dataclass
class PostTrainConfig(GenRecConfig):
    r"""
    Arguments shared by the post-training trainers, on top of [`GenRecConfig`].

    Args:
        disable_dropout (`bool`, *optional*, defaults to `False`):
            Set every dropout probability of the policy (and of the reference copy) to 0, as TRL does for
            DPO and PPO so that log-probability ratios are not dropout noise.
        cache_reward_states (`bool`, *optional*, defaults to `True`):
            During `train()`, keep the reward ensemble's per-position member states of every training row after
            the first time the row is scored (`RewardEnsemble.enable_state_cache`): the ensemble is frozen and the
            rows repeat every epoch, so later epochs score values, logged items and new candidate items without
            running the members' backbones again (A-SFT, RS-DPO/IPO and PPO epochs 1.3-4x faster on
            MovieLens-1M). The same numbers up to float rounding; the cache is freed when training ends.

    Defaults that differ from `TrainingArguments`: `learning_rate=1e-4` (post-training starts from a
    pretrained recommender; its pretraining used 1e-3), `adam_beta2=0.98` (the HSTU reference),
    `per_device_train_batch_size=128`, `num_train_epochs=3`, constant learning rate, `logging_steps=10`,
    no checkpoints (`save_strategy="no"`; the command saves the final model), `ddp_find_unused_parameters=False`
    (every parameter reaches each step's loss; with `True`, DDP would mark the extra heads, which the loss uses
    outside the model's forward, as unused and then fail when their gradients arrive).
    """

    disable_dropout: bool = field(
        default=False, metadata={"help": "Set all dropout probabilities to 0 (TRL does this for DPO/PPO)."}
    )
    cache_reward_states: bool = field(
        default=True,
        metadata={"help": "Keep the frozen reward ensemble's per-position states of each training row after its "
                  "first use (RewardEnsemble.enable_state_cache), so later epochs skip its backbones; about "
                  "0.8 GB on MovieLens-1M."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate."})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2 (HSTU reference: 0.98)."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Histories per batch."})
    per_device_eval_batch_size: int = field(default=512, metadata={"help": "Histories per evaluation batch."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Passes over the training sequences."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    logging_steps: float = field(default=10, metadata={"help": "Optimizer steps between logs."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpointing (the command saves the final model)."})
    ddp_find_unused_parameters: bool | None = field(
        default=False,
        metadata={"help": "DDP: every parameter reaches the loss (extra heads are used by the loss, outside the "
                  "model's forward, which the unused-parameter search would wrongly mark as unused)."},
    )


# ------------------------------------------------------------------------------------ policy log-probs
def supervised_mask(labels: torch.Tensor) -> torch.Tensor:
    """(B, N) bool, True at positions with a next-item target (`labels > 0`)."""
    return labels > 0


def items_log_softmax(logits: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """log π(·|x) from item scores: (C, V + 1) float32 logits -> (C, V + 1) float32 log-probabilities.

    Column 0 (padding) is −inf. `exclude` (C, V + 1) bool removes more actions (e.g. items already seen)
    before the softmax, so the result is the policy restricted to the remaining items.
    """
    if exclude is not None:
        logits = logits.masked_fill(exclude, float("-inf"))
    return F.log_softmax(logits, dim=-1)


def catalogue_log_probs(policy: nn.Module, user_embeddings: torch.Tensor, exclude: torch.Tensor | None = None):
    """log π(·|x) over the catalogue of an unsharded `policy`: (C, d) normalised user vectors -> (C, V + 1)
    float32 log-probabilities (`items_log_softmax`). The trainers take the scores from the forward instead."""
    return items_log_softmax(policy.item_logits_float32(user_embeddings), exclude)


def policy_forward(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    logits_mask: torch.Tensor | None = None,
    logits_temperature: float | None = None,
    logits_labels: torch.Tensor | None = None,
):
    """Forward a training batch through `model` (possibly DDP/FSDP/DeepSpeed/PEFT-wrapped) without a loss.

    With `logits_mask` ((B, N) bool), the outputs' `logits` are the (P, V + 1) float32 full-catalogue scores at
    its P True positions (row-major order), computed inside the model's forward (`HSTUForNextItemPrediction`),
    the one place where a sharded item table is gathered; `logits_temperature` is τ of cosine / τ (1.0: cosines).
    With `logits_labels` ((P,) items), the outputs carry `label_log_probs` (P,), their full-catalogue log π, instead
    of the (P, V + 1) scores.
    """
    history = History.from_batch(inputs).model_inputs()
    if logits_mask is None:
        return model(**history)
    if logits_labels is None:
        return model(**history, logits_mask=logits_mask, logits_temperature=logits_temperature)
    return model(**history, logits_mask=logits_mask, logits_temperature=logits_temperature, logits_labels=logits_labels)


def positions_mask(shape: torch.Size, rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, N) bool, True at the C positions `(rows, positions)`.

    `tensor[mask]` lists them in row-major order, which is their order when they come sorted and without
    repeats (as `sample_contexts` returns them, and any subset of those).
    """
    mask = torch.zeros(shape, dtype=torch.bool, device=rows.device)
    mask[rows, positions] = True
    return mask


# ----------------------------------------------------------------------------- contexts and sampling
def sample_contexts(labels: torch.Tensor, per_sequence: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the contexts (row, position) of a batch used by DPO and PPO.

    A context is a history prefix ending at a supervised position t (the model reads events 0..t and the
    logged next item is `labels[b, t]`).

    Args:
        labels: (B, N) next-item targets, 0 where there is none.
        per_sequence: contexts per row, drawn uniformly without replacement among the row's supervised
            positions with torch's global RNG (a row with fewer positions uses all of them); `None` uses
            every supervised position (deterministic).

    Returns:
        rows (C,) and positions (C,), sorted by row then position.
    """
    mask = supervised_mask(labels)
    if per_sequence is None:
        rows, positions = mask.nonzero(as_tuple=True)
        return rows, positions
    keys = torch.rand(labels.shape, device=labels.device).masked_fill(~mask, -1.0)  # (B, N)
    k = min(per_sequence, labels.shape[1])
    top = keys.topk(k, dim=1)  # (B, k)
    chosen = torch.zeros_like(mask)
    chosen.scatter_(1, top.indices, top.values >= 0)
    rows, positions = chosen.nonzero(as_tuple=True)
    return rows, positions


def context_batch(inputs: dict[str, torch.Tensor], rows: torch.Tensor, positions: torch.Tensor) -> History:
    """The history prefixes of contexts (`History.prefixes`): (C, L) right-padded histories, L =
    max(positions) + 1, whose last real position is the context and asks about the logged next event's time."""
    return History.from_batch(inputs).prefixes(rows, positions)


def context_rewards(reward_model: Any, inputs: dict[str, torch.Tensor], rows: torch.Tensor, positions: torch.Tensor,
                    candidate_item_ids: torch.Tensor) -> Any:
    """The reward model's prediction (`RewardPrediction`: (C, S) `mean`, `std`, (K, C, S) `members`) of candidate
    items at the contexts (`rows`, `positions`) of a training batch.

    A `RewardEnsemble` scores them from one pass over the batch's full rows (`predict_candidates_at`, which its
    state cache can serve); any other reward model gets the contexts' prefixes (`predict_candidates`)."""
    if hasattr(reward_model, "predict_candidates_at"):
        return reward_model.predict_candidates_at(History.from_batch(inputs), rows, positions, candidate_item_ids)
    prefixes = context_batch(inputs, rows, positions)
    return reward_model.predict_candidates(**prefixes.model_inputs(), candidate_item_ids=candidate_item_ids)


def seen_item_mask(item_ids: torch.Tensor, num_columns: int) -> torch.Tensor:
    """(C, V + 1) bool: True at the items of each history (and at column 0, padding)."""
    seen = torch.zeros(item_ids.shape[0], num_columns, dtype=torch.bool, device=item_ids.device)
    seen.scatter_(1, item_ids, True)
    seen[:, 0] = True
    return seen


def sample_items(
    log_probs: torch.Tensor, num_samples: int, replacement: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw items from categorical policies with torch's global RNG.

    Args:
        log_probs: (C, A) log-probabilities (−inf = never drawn).
        num_samples: S draws per row.
        replacement: i.i.d. draws (`torch.multinomial`); otherwise S distinct items by Gumbel-top-k, which is
            sampling without replacement in proportion to the probabilities.

    Returns:
        items (C, S) and valid (C, S) bool (False where a row had fewer than S items with positive mass).
    """
    if replacement:
        items = torch.multinomial(log_probs.exp(), num_samples, replacement=True)
        return items, torch.ones_like(items, dtype=torch.bool)
    uniform = torch.rand(log_probs.shape, device=log_probs.device).clamp_(min=1e-20)
    keys = log_probs - torch.log(-torch.log(uniform))  # log p + Gumbel(0, 1)
    items = keys.topk(min(num_samples, log_probs.shape[1]), dim=1).indices  # (C, S)
    return items, torch.isfinite(log_probs.gather(1, items))


# --------------------------------------------------------------------------------- reference and PEFT
# `disable_dropout_in_model` (TRL) and `is_peft_model` (accelerate) are re-exported here, where the post-training
# trainers have always found them.


def create_reference_model(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` in eval mode (no gradients, no dropout).

    TRL 1.16 has the same function only as `trl.experimental.utils.create_reference_model` (its
    `trl.models` alias warns that it moved), which warns on import as unstable: this stays ours.
    """
    reference = copy.deepcopy(model)
    reference.eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


def prepare_frozen_model(model: nn.Module, trainer: GenRecTrainer) -> nn.Module:
    """Place a frozen model (the reference policy) for the trainer's distributed setup, as TRL's trainers do.

    DeepSpeed: TRL's `prepare_deepspeed` (ZeRO-3 shards it like the policy; other stages keep a full copy);
    FSDP: TRL's `prepare_fsdp` (sharded, so it must be queried through its forward); otherwise (one process,
    DDP) the model is moved to the device, unchanged. Returns the model to query (a DeepSpeed engine under
    DeepSpeed).
    """
    if trainer.is_deepspeed_enabled:
        return prepare_deepspeed(model, trainer.accelerator)
    if trainer.is_fsdp_enabled:
        return prepare_fsdp(model, trainer.accelerator)
    return model.to(trainer.accelerator.device)


def recommender_peft_config(peft_config: Any):
    """The PEFT config `get_peft_model` applies to a next-item recommender, or `None` to train every weight.

    Args:
        peft_config: a `peft.PeftConfig` (e.g. `LoraConfig`), a `trl.ModelConfig` (turned into a `LoraConfig` by
            `trl.get_peft_config`; `None` when its `use_peft` is False), or `None`.

    Returns a copy with `task_type=None`: the task type `"CAUSAL_LM"` (TRL's default) is dropped, as a recommender
    is no causal LM, and any other task type is refused. A `LoraConfig` without `target_modules` (and without
    `target_parameters`) gets the HSTU projections, `DEFAULT_LORA_TARGET_MODULES`.
    """
    from peft import LoraConfig, PeftConfig
    from trl import ModelConfig, get_peft_config

    if isinstance(peft_config, ModelConfig):
        peft_config = get_peft_config(peft_config)
    if peft_config is None:
        return None
    if not isinstance(peft_config, PeftConfig):
        raise TypeError(
            f"peft_config must be a peft.PeftConfig (e.g. LoraConfig) or a trl.ModelConfig, got "
            f"{type(peft_config).__name__}; build one with peft.LoraConfig(...) or trl.ModelConfig(use_peft=True, ...)."
        )
    task_type = peft_config.task_type
    if task_type is not None and task_type != COERCED_TASK_TYPE:
        raise ValueError(
            f"peft_config task_type={str(task_type)!r} does not fit a next-item recommender; set task_type=None "
            f"(trl.ModelConfig: keep lora_task_type at TRL's default {COERCED_TASK_TYPE!r}, which is dropped)."
        )
    peft_config = copy.deepcopy(peft_config)
    if task_type is not None:
        logger.info("PEFT: task_type=%r dropped (a recommender is no causal LM): the adapter wraps the model "
                    "as a plain PeftModel.", str(task_type))
        peft_config.task_type = None
    if isinstance(peft_config, LoraConfig) and peft_config.target_modules is None and not peft_config.target_parameters:
        peft_config.target_modules = set(DEFAULT_LORA_TARGET_MODULES)
    return peft_config


# -------------------------------------------------------------------------------------------------- heads
class PolicyHead(nn.Module):
    """Base of the extra modules a post-training method attaches to the recommender (CQL's Q scalars, PPO's
    value head). The trainer sets their initial biases from the training data when it builds them
    (`PolicyTrainer._mean_over_training_rows`)."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Heads saved while their biases were still set lazily, at the first step, carry a `bias_initialized`
        # flag; it is no longer state, and an old `<head>.safetensors` still loads.
        state_dict.pop(prefix + "bias_initialized", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


REWARD_MODEL_METHODS = ("predict_candidates", "predict_positions", "value_positions")


def load_reward_model(reward_model: Any) -> Any:
    """A reward ensemble: an object with the `RewardEnsemble` methods, or a directory to load one from."""
    if isinstance(reward_model, (str, os.PathLike)):
        from ..rewards import RewardEnsemble

        reward_model = RewardEnsemble.from_pretrained(reward_model)
    missing = [name for name in REWARD_MODEL_METHODS if not hasattr(reward_model, name)]
    if missing:
        raise TypeError(
            f"reward_model {type(reward_model).__name__} lacks {missing}; pass a hf_genrec.rewards.RewardEnsemble "
            "(or a directory written by `hf-genrec reward`)."
        )
    return reward_model


# ------------------------------------------------------------------------------------------ the trainer
class PolicyTrainer(GenRecTrainer):
    """Base of the post-training trainers: the reference policy, the reward ensemble, extra heads, PEFT and
    the step-normalised loss described in the module docstring.

    A method trainer implements:
    - `_prepare_micro_batch(inputs)` (optional): no-gradient work, stored in `inputs[PREPARED]`;
    - `_loss_units(inputs)` (optional, default: supervised positions): the micro-batch's units;
    - `_loss_sum(model, inputs, mode)`: (sum of the micro-batch's per-unit losses, model outputs);
    - `_build_heads(model, args)` and `_initialize_heads()` (optional): extra modules and their initial
      values, set from the training data when the trainer is built.

    Args:
        model: a next-item recommender ([`HSTUForNextItemPrediction`]) or the directory/Hub id of one.
        ref_model: the frozen reference policy for methods that need one; default: a frozen copy of
            `model` (with PEFT: the same model with its adapter disabled).
        reward_model: a `RewardEnsemble` (or its directory) for methods that query rewards.
        args: the method's config.
        peft_config: a `peft.LoraConfig` or a `trl.ModelConfig(use_peft=True, ...)` to train a LoRA adapter
            instead of all weights (read by `recommender_peft_config`: TRL's task type `"CAUSAL_LM"` is dropped,
            and the adapter goes on the HSTU projections `uvqk` and `o_proj` unless it names its targets).

    Saving (`save_model`) writes a directory `AutoModelForNextItemPrediction.from_pretrained` loads as the
    recommender: extra heads (CQL's scalars, PPO's value head) go to `<head>.safetensors` beside it, and under
    PEFT the directory holds the merged model and `adapter/` the adapter. Checkpoints are saved the same
    way, plus the whole trained state (`TRAINING_STATE_FILE`), from which `resume_from_checkpoint` restores
    heads and adapter too, as does `load_best_model_at_end` (`GenRecTrainer._load_best_model`). The
    post-training defaults save no checkpoints.
    """

    # Extra modules the method attaches to the model (trained with it, saved beside it as `<name>.safetensors`).
    _head_names: tuple[str, ...] = ()

    def __init__(
        self,
        model=None,
        ref_model=None,
        reward_model=None,
        args: PostTrainConfig | None = None,
        data_collator=None,
        train_dataset=None,
        eval_dataset=None,
        processing_class=None,
        callbacks=None,
        optimizers=(None, None),
        peft_config=None,
        **kwargs,
    ):
        if args is None:
            raise ValueError(f"{type(self).__name__} needs args (its config dataclass).")
        # Before loading models or checking the reward model: a stream the trainer cannot read is the first error.
        self._check_streamed_training(args, train_dataset)
        if isinstance(model, (str, os.PathLike)):
            model = AutoModelForNextItemPrediction.from_pretrained(model)
        peft_config = recommender_peft_config(peft_config)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        if args.disable_dropout:  # after wrapping, as TRL does, so the adapter's dropout is off too
            disable_dropout_in_model(model)
        self.is_peft = is_peft_model(model)

        self.ref_model = None
        if self.needs_reference(args):
            if ref_model is not None:
                if isinstance(ref_model, (str, os.PathLike)):
                    ref_model = AutoModelForNextItemPrediction.from_pretrained(ref_model)
                self.ref_model = create_reference_model(ref_model)
            elif not self.is_peft:
                self.ref_model = create_reference_model(model)
        if self.needs_reward_model(args, train_dataset) and reward_model is None:
            raise ValueError(
                f"{type(self).__name__} with these settings queries a reward model: pass reward_model= (a "
                "hf_genrec.rewards.RewardEnsemble or its directory, written by `hf-genrec reward`)."
            )
        self.reward_model = load_reward_model(reward_model) if reward_model is not None else None

        # Built before `Trainer.__init__` seeds torch, so their random initial weights do not shift the random
        # stream of training; `_initialize_heads` sets their data-dependent values at the end.
        for name, head in self._build_heads(model, args).items():
            setattr(model, name, head)

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
        device = self.accelerator.device
        if self.ref_model is not None:
            self.ref_model = prepare_frozen_model(self.ref_model, self)
        if self.reward_model is not None:
            # A full copy on each device under every setup: its scoring methods (`predict_candidates`, ...) read
            # the item table outside any forward, which a sharded copy would not have gathered.
            self.reward_model = self.reward_model.to(device)
            self.reward_model.eval()
        with torch.no_grad():
            self._initialize_heads()

    def train(self, *args, **kwargs):
        """`Trainer.train`, with the reward ensemble's state cache on for its duration (`cache_reward_states`)."""
        caching = getattr(self.args, "cache_reward_states", False) and hasattr(self.reward_model, "enable_state_cache")
        if caching:
            self.reward_model.enable_state_cache()
        try:
            return super().train(*args, **kwargs)
        finally:
            if caching:
                self.reward_model.clear_state_cache()

    # -------------------------------------------------------------------------------- method hooks
    @classmethod
    def needs_reference(cls, args) -> bool:
        """Whether the method uses the frozen reference policy π_ref with these settings."""
        return False

    @classmethod
    def needs_reward_model(cls, args, train_dataset: Any = None) -> bool:
        """Whether the method queries the reward ensemble with these settings (and, when given, this training
        data: offline DPO on a preference dataset needs none)."""
        return False

    def _build_heads(self, model: nn.Module, args) -> dict[str, nn.Module]:
        """The method's extra modules (`PolicyHead`s) by attribute name (default: none)."""
        return {}

    def _initialize_heads(self) -> None:
        """Set the heads' initial values that depend on the training data, once, at the end of `__init__`
        (the models are then on the device; see `_mean_over_training_rows`)."""

    def _prepare_micro_batch(self, inputs: dict[str, Any]) -> dict[str, Any]:
        inputs[PREPARED] = {}
        return inputs

    def _prepare_step(self, batch_samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self._prepare_micro_batch(inputs) for inputs in batch_samples]

    def _loss_sum(self, model, inputs: dict[str, Any], mode: str):
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ helpers
    @property
    def policy(self) -> nn.Module:
        """The recommender being trained (unwrapped from DDP; a `PeftModel` under PEFT)."""
        return self.accelerator.unwrap_model(self.model)

    def head(self, name: str) -> nn.Module:
        return getattr(self.policy, name)

    @contextmanager
    def reference_policy(self):
        """The frozen reference π_ref, in eval mode: the frozen copy, or under PEFT the adapter-disabled model."""
        if self.ref_model is not None:
            yield self.ref_model
            return
        policy = self.policy
        if not self.is_peft:
            raise RuntimeError(f"{type(self).__name__} has no reference model.")
        was_training = policy.training
        policy.eval()
        try:
            with policy.disable_adapter():
                yield policy
        finally:
            policy.train(was_training)

    def _record_mean(self, mode: str, name: str, values: torch.Tensor) -> None:
        """Buffer the mean of `values` over all processes (skipped when there are none anywhere)."""
        values = values.detach().float().reshape(-1)
        stats = torch.stack([values.sum(), values.new_tensor(float(values.numel()))])
        if self.accelerator.num_processes > 1:
            stats = self.accelerator.gather(stats[None]).sum(dim=0)
        if stats[1].item() > 0:
            self._metrics[mode][name].append((stats[0] / stats[1]).item())

    @torch.no_grad()
    def _mean_over_training_rows(self, unit_values: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> float:
        """The mean of `unit_values(batch)` ((U,) values of a batch's units) over up to `HEAD_INIT_ROWS`
        training rows spread evenly over the training set, with the policy in eval mode (no dropout).

        This sets the extra heads' initial biases when they are built: deterministic (no RNG, so the
        training's random stream is untouched), the same on every process without any communication, and
        independent of the batch order and of where a run resumes. 0.0 without training rows.
        """
        dataset, policy = self.train_dataset, self.policy
        if dataset is None or len(dataset) == 0:
            return 0.0
        count = min(len(dataset), HEAD_INIT_ROWS)
        rows = torch.linspace(0, len(dataset) - 1, count, dtype=torch.float64).round().long().tolist()
        device, was_training, batch_size = next(policy.parameters()).device, policy.training, self.args.eval_batch_size
        total, count = 0.0, 0
        policy.eval()
        try:
            for start in range(0, len(rows), batch_size):
                batch = self.data_collator([dataset[i] for i in rows[start : start + batch_size]])
                batch = {key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()}
                with self.autocast_smart_context_manager():
                    values = unit_values(batch).double()
                total, count = total + values.sum().item(), count + values.numel()
        finally:
            policy.train(was_training)
        return total / max(count, 1)

    # ------------------------------------------------------------------------------ training loop
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        if PREPARED not in inputs:  # called outside the training loop: this batch alone is the step
            with torch.no_grad(), self.autocast_smart_context_manager():
                inputs = self._prepare_step([inputs])[0]
            num_items_in_batch = None  # `step_loss` counts the prepared batch
        loss_sum, outputs = self._loss_sum(model, inputs, mode)
        loss = self.step_loss(loss_sum, inputs, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    # ------------------------------------------------------------------------------------- saving
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Save the recommender so that `AutoModelForNextItemPrediction.from_pretrained(output_dir)` loads it.

        Extra heads are left out of `model.safetensors` and written as `<head>.safetensors`; under PEFT the
        adapter goes to `output_dir/adapter/` and the directory holds the merged recommender.
        """
        if not self._head_names and not self.is_peft:
            return super()._save(output_dir, state_dict)
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        model = self.policy
        heads = {name: getattr(model, name) for name in self._head_names if hasattr(model, name)}
        if self.is_peft:
            model.save_pretrained(os.path.join(output_dir, ADAPTER_DIR))
            recommender = copy.deepcopy(model).merge_and_unload()
        else:
            recommender = model
        state = {
            key: value for key, value in recommender.state_dict().items() if key.split(".", 1)[0] not in heads
        }
        recommender.save_pretrained(output_dir, state_dict=state)
        for name, head in heads.items():
            tensors = {key: value.detach().cpu().contiguous() for key, value in head.state_dict().items()}
            safetensors.torch.save_file(tensors, os.path.join(output_dir, f"{name}.safetensors"))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))


__all__ = [
    "ADAPTER_DIR",
    "COERCED_TASK_TYPE",
    "DEFAULT_LORA_TARGET_MODULES",
    "HEAD_INIT_ROWS",
    "PREPARED",
    "PolicyHead",
    "PolicyTrainer",
    "PostTrainConfig",
    "catalogue_log_probs",
    "context_batch",
    "context_rewards",
    "create_reference_model",
    "disable_dropout_in_model",
    "is_peft_model",
    "items_log_softmax",
    "load_reward_model",
    "policy_forward",
    "positions_mask",
    "prepare_frozen_model",
    "recommender_peft_config",
    "sample_contexts",
    "sample_items",
    "seen_item_mask",
    "supervised_mask",
]
