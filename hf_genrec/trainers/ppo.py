"""PPO with the reward ensemble as the environment (brief, section 4), for a one-step (contextual bandit)
recommender: an action is one item, its reward the ensemble's R̂(x, y).

How it fits `transformers.Trainer` (no loop of its own):

- The train sampler repeats every optimizer step's rows `ppo_epochs` times in a row (`RepeatBatchesSampler`),
  so one rollout batch is optimised for `ppo_epochs` consecutive optimizer steps. Each step is a normal
  `Trainer` step: gradient accumulation, clipping, the LR scheduler, logging and DDP are untouched;
  `global_step` counts PPO updates and an epoch is `ppo_epochs` passes over the data.
- Every row carries the rollout id of its group (`ROLLOUT_ID`, set by the sampler and kept by
  `RolloutRows` / `RolloutCollator`): a step whose rows carry the id of the stored rollout reuses it, any
  other step rolls out.
- The rollout runs when a step's rows arrive for the first time (`_prepare_step`, no gradient):
  `contexts_per_sequence` random supervised positions per row; `samples_per_context` items y ~ π_θ(·|x)
  drawn from the current policy over the catalogue (items of the history excluded: the policy is the
  softmax over unseen items, for sampling, ratios and KL alike); rewards R̂(x, y) = ensemble mean (or one
  member, `reward_member`); old log-probabilities; the baseline b; advantages A = R̂ − b, whitened over the
  step; and π_ref(·|x) over the catalogue for the KL.
- The baseline (`baseline`): `value_head` (default), b = V(x) from the value head; or `group_mean`, the RLOO
  leave-one-out baseline b_j = mean of the rewards of the OTHER `samples_per_context` − 1 items sampled at the
  same context (no learning, no value head; advantages sum to zero per context). Its explained variance of
  the rewards, 1 − Var(R̂ − b) / Var(R̂) over the rollout batch, is logged as `baseline/explained_variance`
  (whitening rescales the advantages, so this is where a baseline that explains nothing shows).
- The loss per context: mean over its samples of the clipped surrogate −min(ρA, clip(ρ, 1 ± ε)A), plus
  `kl_coef` · KL(π_θ(·|x) ‖ π_ref(·|x)) computed exactly over the catalogue, plus (value head only)
  `vf_coef` · ½(V(x) − R̂)².

The value head is a small MLP on the detached last hidden state at the context (it does not move the
policy's features). Its output bias starts at the reward ensemble's mean value estimate E[r | x] over the
training contexts (the logging policy's expected reward, which the pretrained policy imitates). It is a
submodule of the trained model, so it reaches the loss and DDP syncs it; it is saved beside the
recommender as `value_head.safetensors` and `from_pretrained` ignores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

from ..data.columns import LABELS
from ..data.history import History
from ..losses.ppo import (
    PPO_BASELINES,
    categorical_kl,
    clipped_policy_loss,
    explained_variance,
    leave_one_out_baseline,
    value_loss,
)
from .policy import (
    PREPARED,
    PolicyHead,
    PolicyTrainer,
    PostTrainConfig,
    context_batch,
    context_rewards,
    items_log_softmax,
    policy_forward,
    positions_mask,
    sample_contexts,
    sample_items,
    seen_item_mask,
    supervised_mask,
)

VALUE_HEAD = "value_head"
# Batch key of each row's rollout id: the rows of one repeated group (one optimizer step) share it.
ROLLOUT_ID = "rollout_id"
# Keys of `inputs[PREPARED]`.
ROWS, POSITIONS, EXCLUDE, ACTIONS = "rows", "positions", "exclude", "actions"
OLD_LOGPS, REF_LOG_PROBS, REWARDS, ADVANTAGES = "old_logps", "ref_log_probs", "rewards", "advantages"


class ValueHead(PolicyHead):
    """V(x): Linear(d, d) → SiLU → Linear(d, 1) on the hidden state at the context."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (...) values."""
        return self.out(nn.functional.silu(self.dense(hidden_states))).squeeze(-1)


# ------------------------------------------------------------------------------------------ rollout ids
class RepeatBatchesSampler(Sampler[tuple[int, int]]):
    """Yields each consecutive group of `chunk_size` indices of `sampler` `repeats` times in a row, as
    `(index, rollout_id)` pairs.

    PPO uses it so that one rollout batch (one optimizer step's worth of rows) comes back for `ppo_epochs`
    consecutive optimizer steps. All passes over a group carry the group's rollout id, which is never
    reused over the sampler's life (epochs included), so the trainer knows a repeat by its id. A last
    group shorter than `chunk_size` is dropped, so that every repeated group maps onto whole micro-batches.
    """

    def __init__(self, sampler: Sampler[int] | list[int], chunk_size: int, repeats: int):
        self.sampler, self.chunk_size, self.repeats = sampler, chunk_size, repeats
        self._next_rollout_id = 0

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return (len(self.sampler) // self.chunk_size) * self.chunk_size * self.repeats

    def __iter__(self) -> Iterator[tuple[int, int]]:
        chunk: list[int] = []
        for index in self.sampler:
            chunk.append(int(index))
            if len(chunk) == self.chunk_size:
                rollout_id, self._next_rollout_id = self._next_rollout_id, self._next_rollout_id + 1
                for _ in range(self.repeats):
                    yield from ((row, rollout_id) for row in chunk)
                chunk = []


class RolloutRows(Dataset):
    """The rows of `dataset` addressed by `RepeatBatchesSampler`'s `(index, rollout_id)` pairs; each row comes
    back with its `ROLLOUT_ID`."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        index, rollout_id = key
        return {**self.dataset[index], ROLLOUT_ID: rollout_id}


class RolloutCollator:
    """`collator` on the rows without their rollout ids, plus the (B,) `ROLLOUT_ID` tensor when the rows have
    one (training rows from `RolloutRows`; evaluation rows have none)."""

    def __init__(self, collator: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.collator = collator

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        if not features or ROLLOUT_ID not in features[0]:
            return self.collator(features)
        batch = self.collator([{k: v for k, v in row.items() if k != ROLLOUT_ID} for row in features])
        batch[ROLLOUT_ID] = torch.tensor([row[ROLLOUT_ID] for row in features], dtype=torch.long)
        return batch


# ------------------------------------------------------------------------------------------ config
@dataclass
class PPOConfig(PostTrainConfig):
    r"""
    Configuration of [`PPOTrainer`].

    Args:
        ppo_epochs (`int`, *optional*, defaults to `4`):
            Optimizer steps on each rollout batch (TRL's `num_ppo_epochs`).
        cliprange (`float`, *optional*, defaults to `0.2`):
            ε of the clipped ratio clip(π_θ/π_old, 1 − ε, 1 + ε).
        kl_coef (`float`, *optional*, defaults to `0.05`):
            β_KL of the penalty KL(π_θ ‖ π_ref), computed exactly over the catalogue.
        vf_coef (`float`, *optional*, defaults to `0.1`):
            Weight of the value-head regression.
        contexts_per_sequence (`int` or `None`, *optional*, defaults to `4`):
            Random contexts (supervised positions) per training row per rollout; `None` = every position.
        samples_per_context (`int`, *optional*, defaults to `4`):
            Items drawn i.i.d. from π_θ(·|x) per context (scored by the ensemble in one call); the group size
            of the `group_mean` baseline (at least 2 there).
        baseline (`str`, *optional*, defaults to `"value_head"`):
            b of the advantage R̂ − b: `"value_head"` (V(x), a small MLP trained with the policy) or
            `"group_mean"` (RLOO: the mean reward of the other items sampled at the same context; needs no
            learning, builds no value head and ignores `vf_coef`).
        whiten_advantages (`bool`, *optional*, defaults to `True`):
            Standardise the advantages over the rollout batch.
        reward_member (`int` or `None`, *optional*, defaults to `None`):
            Use this ensemble member's reward instead of the ensemble mean.
        exclude_seen_items (`bool`, *optional*, defaults to `True`):
            The policy acts over the items not yet in the history (as the evaluation ranks them).

    Other defaults: `disable_dropout=True` (ratios are not dropout noise), see [`PostTrainConfig`].
    """

    ppo_epochs: int = field(default=4, metadata={"help": "Optimizer steps per rollout batch."})
    cliprange: float = field(default=0.2, metadata={"help": "ε of the clipped ratio."})
    kl_coef: float = field(default=0.05, metadata={"help": "Coefficient of KL(π_θ ‖ π_ref)."})
    vf_coef: float = field(default=0.1, metadata={"help": "Coefficient of the value loss."})
    contexts_per_sequence: int | None = field(
        default=4, metadata={"help": "Contexts per training row per rollout; None = every supervised position."}
    )
    samples_per_context: int = field(default=4, metadata={"help": "Items sampled from π_θ per context."})
    baseline: str = field(
        default="value_head",
        metadata={"help": "Baseline of the advantages: 'value_head' (learned V(x)) or 'group_mean' (RLOO: mean "
                  "reward of the other items sampled at the same context; no learning).",
                  "choices": list(PPO_BASELINES)},
    )
    whiten_advantages: bool = field(default=True, metadata={"help": "Standardise advantages per rollout batch."})
    reward_member: int | None = field(
        default=None, metadata={"help": "Ensemble member used as the reward (None: the ensemble mean)."}
    )
    exclude_seen_items: bool = field(default=True, metadata={"help": "Act only over items not in the history."})
    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout."})

    def __post_init__(self):
        if self.ppo_epochs < 1:
            raise ValueError(f"ppo_epochs must be at least 1, got {self.ppo_epochs}.")
        if not 0 < self.cliprange < 1:
            raise ValueError(f"cliprange must be in (0, 1), got {self.cliprange}.")
        for name in ("kl_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.contexts_per_sequence is not None and self.contexts_per_sequence < 1:
            raise ValueError(
                f"contexts_per_sequence must be a positive integer or None, got {self.contexts_per_sequence}."
            )
        if self.samples_per_context < 1:
            raise ValueError(f"samples_per_context must be at least 1, got {self.samples_per_context}.")
        if self.baseline not in PPO_BASELINES:
            raise ValueError(f"baseline must be one of {PPO_BASELINES}, got {self.baseline!r}.")
        if self.baseline == "group_mean" and self.samples_per_context < 2:
            raise ValueError(
                f"baseline='group_mean' compares each sample with the others of its context, but "
                f"samples_per_context={self.samples_per_context}; set samples_per_context >= 2."
            )
        if self.reward_member is not None and self.reward_member < 0:
            raise ValueError(f"reward_member must be a member index >= 0 or None, got {self.reward_member}.")
        super().__post_init__()


class PPOTrainer(PolicyTrainer):
    """PPO against a reward ensemble, fitted into `transformers.Trainer` (see the module docstring).

    Example (TRL's shape: config -> trainer -> `train()`; `examples/trl_quickstarts.py`):

    ```python
    >>> from hf_genrec.trainers import PPOConfig, PPOTrainer
    >>> args = PPOConfig("out", ppo_epochs=4, cliprange=0.2, kl_coef=0.05, samples_per_context=4)
    >>> trainer = PPOTrainer("runs/ml1m-hstu", reward_model="runs/ml1m-reward", args=args,
    ...                      train_dataset=splits["train"], processing_class=vocabulary)
    >>> trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "ppo"]
    trains_from_streams = False  # each rollout batch is revisited ppo_epochs times by index (RepeatBatchesSampler)
    _name = "PPO"
    _paper = {"title": "Proximal Policy Optimization Algorithms", "id": "1707.06347"}
    _head_names = (VALUE_HEAD,)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.data_collator = RolloutCollator(self.data_collator)
        # The last rollout (one `PREPARED` dict per micro-batch) and the rollout id of its rows.
        self._rollouts: list[dict] | None = None
        self._rollout_id: int | None = None
        members = getattr(self.reward_model, "num_members", None)
        if self.args.reward_member is not None and members is not None and self.args.reward_member >= members:
            raise ValueError(f"reward_member={self.args.reward_member} but the ensemble has {members} members.")

    @classmethod
    def needs_reference(cls, args) -> bool:
        return True

    @classmethod
    def needs_reward_model(cls, args, train_dataset=None) -> bool:
        return True

    def _build_heads(self, model, args):
        if args.baseline != "value_head":
            return {}
        return {VALUE_HEAD: ValueHead(model.config.hidden_size)}

    @property
    def _uses_value_head(self) -> bool:
        return self.args.baseline == "value_head"

    def _initialize_heads(self):
        if not self._uses_value_head:
            return
        # V(x) starts at the ensemble's mean value estimate over the training contexts: the logging policy's
        # expected reward, which the pretrained policy imitates (advantages are centred from the first step).
        self.head(VALUE_HEAD).out.bias.fill_(self._mean_over_training_rows(self._context_values))

    def _context_values(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(P,) the reward ensemble's value estimate E[r | x] at the batch's supervised positions."""
        values = self.reward_model.value_positions(**History.from_batch(batch).model_inputs())  # (B, N)
        return values[supervised_mask(batch[LABELS]).to(values.device)].float()

    def get_train_dataloader(self):
        """Training batches whose rows carry their rollout id (`RepeatBatchesSampler`, `RolloutRows`)."""
        if self.train_dataset is None:
            raise ValueError("Trainer: training requires a train_dataset.")
        return self._get_dataloader(
            dataset=RolloutRows(self.train_dataset),
            description="Training",
            batch_size=self._train_batch_size,
            sampler_fn=lambda _: self._get_train_sampler(),  # built on the training rows themselves
            is_training=True,
        )

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        sampler = super()._get_train_sampler(train_dataset)
        if sampler is None:
            sampler = range(len(dataset))
        chunk = self.args.train_batch_size * self.args.gradient_accumulation_steps * max(1, self.args.world_size)
        if len(dataset) < chunk:
            raise ValueError(
                f"PPO repeats whole optimizer steps, which need {chunk} rows (batch size x accumulation x "
                f"processes), but the training set has {len(dataset)}. Lower per_device_train_batch_size."
            )
        return RepeatBatchesSampler(sampler, chunk, self.args.ppo_epochs)

    # --------------------------------------------------------------------------------------- rollouts
    def _prepare_step(self, batch_samples):
        rollout_id = self._step_rollout_id(batch_samples)
        if rollout_id is not None and rollout_id == self._rollout_id and len(batch_samples) == len(self._rollouts):
            for inputs, prepared in zip(batch_samples, self._rollouts):
                inputs[PREPARED] = prepared
            return batch_samples

        batch_samples = [self._rollout(inputs) for inputs in batch_samples]
        self._record_baseline_quality(batch_samples)
        if self.args.whiten_advantages:
            advantages = torch.cat([inputs[PREPARED][ADVANTAGES].reshape(-1) for inputs in batch_samples])
            count = self._sum_over_processes(advantages.numel())
            mean = self._sum_over_processes(advantages.sum()) / count.clamp(min=1)
            variance = self._sum_over_processes(((advantages - mean) ** 2).sum()) / (count - 1).clamp(min=1)
            for inputs in batch_samples:
                inputs[PREPARED][ADVANTAGES] = (inputs[PREPARED][ADVANTAGES] - mean) / (variance.sqrt() + 1e-8)
        self._rollouts = [inputs[PREPARED] for inputs in batch_samples]
        self._rollout_id = rollout_id
        return batch_samples

    def _record_baseline_quality(self, batch_samples: list[dict[str, Any]]) -> None:
        """Log the explained variance of the step's rewards by the baseline (advantages are R̂ − b here, before
        whitening), over all micro-batches and processes."""
        rewards = torch.cat([inputs[PREPARED][REWARDS].reshape(-1) for inputs in batch_samples])
        advantages = torch.cat([inputs[PREPARED][ADVANTAGES].reshape(-1) for inputs in batch_samples])
        num_processes = self.accelerator.num_processes
        ratio = explained_variance(
            rewards,
            rewards - advantages,
            (lambda stats: self.accelerator.gather(stats[None]).sum(dim=0)) if num_processes > 1 else None,
        )
        if torch.isfinite(ratio):  # all rewards equal: nothing to explain
            self._metrics["train"]["baseline/explained_variance"].append(ratio.item())

    @staticmethod
    def _step_rollout_id(batch_samples: list[dict[str, Any]]) -> int | None:
        """The rollout id all rows of the step share, or None (rows without ids, e.g. outside training, or
        from several groups: the step then rolls out and its rollout is never reused)."""
        if any(ROLLOUT_ID not in inputs for inputs in batch_samples):
            return None
        ids = torch.cat([inputs[ROLLOUT_ID].reshape(-1) for inputs in batch_samples]).unique()
        return int(ids[0]) if ids.numel() == 1 else None

    def _rollout(self, inputs):
        args = self.args
        rows, positions = sample_contexts(inputs[LABELS], args.contexts_per_sequence)  # (C,)
        prefixes = context_batch(inputs, rows, positions)
        mask = positions_mask(inputs[LABELS].shape, rows, positions)  # (B, N)
        outputs = policy_forward(self.model, inputs, mask)
        num_columns = self.policy.config.num_items + 1
        exclude = seen_item_mask(prefixes.item_ids, num_columns) if args.exclude_seen_items else None
        log_probs = items_log_softmax(outputs.logits, exclude)  # (C, V + 1)
        actions, _ = sample_items(log_probs, args.samples_per_context, replacement=True)  # (C, S)
        with self.reference_policy() as reference:
            ref_log_probs = items_log_softmax(policy_forward(reference, inputs, mask).logits, exclude)  # (C, V + 1)

        scores = context_rewards(self.reward_model, inputs, rows, positions, actions)  # (C, S) fields
        rewards = (scores.mean if args.reward_member is None else scores.members[args.reward_member]).float()

        if self._uses_value_head:
            baselines = self.head(VALUE_HEAD)(outputs.last_hidden_state[rows, positions].float())[:, None]  # (C, 1)
        else:
            baselines = leave_one_out_baseline(rewards)  # (C, S)

        # Log the metrics
        self._record_mean("train", "objective/scores", rewards)
        self._record_mean("train", "objective/entropy", -(log_probs.exp() * log_probs.nan_to_num(neginf=0.0)).sum(-1))

        inputs[PREPARED] = {
            ROWS: rows,
            POSITIONS: positions,
            EXCLUDE: exclude,
            ACTIONS: actions,
            OLD_LOGPS: log_probs.gather(1, actions),
            REF_LOG_PROBS: ref_log_probs,
            REWARDS: rewards,
            ADVANTAGES: rewards - baselines,
        }
        return inputs

    # ------------------------------------------------------------------------------------------- loss
    def _loss_units(self, inputs):
        return inputs[PREPARED][ROWS].numel()  # contexts

    def _loss_sum(self, model, inputs, mode):
        args, prepared = self.args, inputs[PREPARED]
        rows, positions = prepared[ROWS], prepared[POSITIONS]
        outputs = policy_forward(model, inputs, positions_mask(inputs[LABELS].shape, rows, positions))
        log_probs = items_log_softmax(outputs.logits, prepared[EXCLUDE])  # (C, V + 1)
        log_probs_taken = log_probs.gather(1, prepared[ACTIONS])  # (C, S)
        policy_losses, clipped, ratios = clipped_policy_loss(
            log_probs_taken, prepared[OLD_LOGPS], prepared[ADVANTAGES], args.cliprange
        )
        kl = categorical_kl(log_probs, prepared[REF_LOG_PROBS])  # (C,)
        losses = policy_losses.mean(dim=1) + args.kl_coef * kl  # (C,)
        if self._uses_value_head:
            values = self.head(VALUE_HEAD)(outputs.last_hidden_state[rows, positions].detach().float())  # (C,)
            value_losses = value_loss(values[:, None].expand_as(prepared[REWARDS]), prepared[REWARDS]).mean(dim=1)
            losses = losses + args.vf_coef * value_losses

        # Log the metrics
        with torch.no_grad():
            self._record_mean(mode, "objective/kl", kl)
            self._record_mean(mode, "policy/clipfrac_avg", clipped.float())
            self._record_mean(mode, "policy/approxkl_avg", 0.5 * (log_probs_taken - prepared[OLD_LOGPS]) ** 2)
            self._record_mean(mode, "loss/policy_avg", policy_losses)
            self._record_mean(mode, "val/ratio", ratios)
            if self._uses_value_head:
                self._record_mean(mode, "loss/value_avg", value_losses)
                self._record_mean(mode, "val/value", values)
        return losses.sum(), outputs


__all__ = [
    "PPOConfig",
    "PPOTrainer",
    "ROLLOUT_ID",
    "RepeatBatchesSampler",
    "RolloutCollator",
    "RolloutRows",
    "VALUE_HEAD",
    "ValueHead",
]
