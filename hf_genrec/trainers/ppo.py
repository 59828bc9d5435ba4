"""PPO with the reward ensemble as the environment (brief, section 4), for a one-step (contextual bandit)
recommender: an action is one item, its reward the ensemble's R̂(x, y).

How it fits `transformers.Trainer` (no loop of its own):

- The train sampler repeats every optimizer step's rows `ppo_epochs` times in a row (`RepeatBatchesSampler`),
  so one rollout batch is optimised for `ppo_epochs` consecutive optimizer steps. Each step is a normal
  `Trainer` step: gradient accumulation, clipping, the LR scheduler, logging and DDP are untouched;
  `global_step` counts PPO updates and an epoch is `ppo_epochs` passes over the data.
- The rollout runs when a step's rows arrive for the first time (`_prepare_step`, no gradient):
  `contexts_per_sequence` random supervised positions per row; `samples_per_context` items y ~ π_θ(·|x)
  drawn from the current policy over the catalogue (items of the history excluded: the policy is the
  softmax over unseen items, for sampling, ratios and KL alike); rewards R̂(x, y) = ensemble mean (or one
  member, `reward_member`); old log-probabilities; values V(x) from the value head; advantages
  A = R̂ − V(x), whitened over the step; and π_ref(·|x) over the catalogue for the KL.
- The loss per context: mean over its samples of the clipped surrogate −min(ρA, clip(ρ, 1 ± ε)A), plus
  `kl_coef` · KL(π_θ(·|x) ‖ π_ref(·|x)) computed exactly over the catalogue, plus `vf_coef` · ½(V(x) − R̂)².

The value head is a small MLP on the detached last hidden state at the context (it does not move the
policy's features). It is a submodule of the trained model, so it reaches the loss and DDP syncs it; it is
saved beside the recommender as `value_head.safetensors` and `from_pretrained` ignores it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.columns import ITEM_IDS, LABELS
from ..losses.ppo import categorical_kl, clipped_policy_loss, value_loss
from .policy import (
    PREPARED,
    PolicyTrainer,
    PostTrainConfig,
    RepeatBatchesSampler,
    catalogue_log_probs,
    context_batch,
    policy_forward,
    sample_contexts,
    sample_items,
    seen_item_mask,
)

logger = logging.getLogger(__name__)

VALUE_HEAD = "value_head"
# Keys of `inputs[PREPARED]`.
ROWS, POSITIONS, EXCLUDE, ACTIONS = "rows", "positions", "exclude", "actions"
OLD_LOGPS, REF_LOG_PROBS, REWARDS, ADVANTAGES = "old_logps", "ref_log_probs", "rewards", "advantages"


class ValueHead(nn.Module):
    """V(x): Linear(d, d) → SiLU → Linear(d, 1) on the hidden state at the context."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, 1)
        self.register_buffer("bias_initialized", torch.tensor(False))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (...) values."""
        return self.out(nn.functional.silu(self.dense(hidden_states))).squeeze(-1)


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
            Items drawn i.i.d. from π_θ(·|x) per context (scored by the ensemble in one call).
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
        if self.reward_member is not None and self.reward_member < 0:
            raise ValueError(f"reward_member must be a member index >= 0 or None, got {self.reward_member}.")
        super().__post_init__()


class PPOTrainer(PolicyTrainer):
    """PPO against a reward ensemble, fitted into `transformers.Trainer` (see the module docstring)."""

    _tag_names = ["hf_genrec", "hstu", "ppo"]
    _name = "PPO"
    _paper = {"title": "Proximal Policy Optimization Algorithms", "id": "1707.06347"}
    _head_names = (VALUE_HEAD,)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rollouts: list[dict] | None = None
        self._rollout_inputs: list[torch.Tensor] | None = None
        self._reuses_left = 0
        members = getattr(self.reward_model, "num_members", None)
        if self.args.reward_member is not None and members is not None and self.args.reward_member >= members:
            raise ValueError(f"reward_member={self.args.reward_member} but the ensemble has {members} members.")

    @classmethod
    def needs_reference(cls, args) -> bool:
        return True

    @classmethod
    def needs_reward_model(cls, args) -> bool:
        return True

    def _build_heads(self, model, args):
        return {VALUE_HEAD: ValueHead(model.config.hidden_size)}

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
        item_ids = [inputs[ITEM_IDS] for inputs in batch_samples]
        same_rows = self._rollout_inputs is not None and len(item_ids) == len(self._rollout_inputs) and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(item_ids, self._rollout_inputs)
        )
        if self._reuses_left > 0 and same_rows:
            self._reuses_left -= 1
            for inputs, prepared in zip(batch_samples, self._rollouts):
                inputs[PREPARED] = prepared
            return batch_samples
        if self._reuses_left > 0:
            logger.warning("PPO: a rollout batch came back with different rows; rolling out again.")

        batch_samples = [self._rollout(inputs) for inputs in batch_samples]
        if self.args.whiten_advantages:
            advantages = torch.cat([inputs[PREPARED][ADVANTAGES].reshape(-1) for inputs in batch_samples])
            count = self._step_total(advantages.numel())
            mean = self._step_total(advantages.sum()) / count.clamp(min=1)
            variance = self._step_total(((advantages - mean) ** 2).sum()) / (count - 1).clamp(min=1)
            for inputs in batch_samples:
                inputs[PREPARED][ADVANTAGES] = (inputs[PREPARED][ADVANTAGES] - mean) / (variance.sqrt() + 1e-8)
        self._rollouts = [inputs[PREPARED] for inputs in batch_samples]
        self._rollout_inputs = item_ids
        self._reuses_left = self.args.ppo_epochs - 1
        return batch_samples

    def _rollout(self, inputs):
        args = self.args
        rows, positions = sample_contexts(inputs[LABELS], args.contexts_per_sequence)  # (C,)
        prefixes = context_batch(inputs, rows, positions)
        outputs = policy_forward(self.model, inputs)
        user = outputs.user_embeddings[rows, positions]  # (C, d)
        num_columns = self.policy.config.num_items + 1
        exclude = seen_item_mask(prefixes[ITEM_IDS], num_columns) if args.exclude_seen_items else None
        log_probs = catalogue_log_probs(self.policy, user, exclude)  # (C, V + 1)
        actions, _ = sample_items(log_probs, args.samples_per_context, replacement=True)  # (C, S)
        with self.reference_policy() as reference:
            ref_user = policy_forward(reference, inputs).user_embeddings[rows, positions]
            ref_log_probs = catalogue_log_probs(reference, ref_user, exclude)  # (C, V + 1)

        scores = self.reward_model.predict_candidates(**prefixes, candidate_item_ids=actions)
        rewards = (scores.mean if args.reward_member is None else scores.members[args.reward_member]).float()

        value_head = self.head(VALUE_HEAD)
        if not bool(value_head.bias_initialized):  # start V(x) at the mean reward of the first rollout
            mean_reward = self._step_total(rewards.sum()) / self._step_total(rewards.numel()).clamp(min=1)
            value_head.out.bias.data.fill_(mean_reward.item())
            value_head.bias_initialized.fill_(True)
        values = value_head(outputs.last_hidden_state[rows, positions].float())  # (C,)

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
            ADVANTAGES: rewards - values[:, None],
        }
        return inputs

    # ------------------------------------------------------------------------------------------- loss
    def _loss_denominator(self, inputs):
        return inputs[PREPARED][ROWS].numel()

    def _loss_sum(self, model, inputs, mode):
        args, prepared = self.args, inputs[PREPARED]
        rows, positions = prepared[ROWS], prepared[POSITIONS]
        outputs = policy_forward(model, inputs)
        log_probs = catalogue_log_probs(self.policy, outputs.user_embeddings[rows, positions], prepared[EXCLUDE])
        log_probs_taken = log_probs.gather(1, prepared[ACTIONS])  # (C, S)
        policy_losses, clipped, ratios = clipped_policy_loss(
            log_probs_taken, prepared[OLD_LOGPS], prepared[ADVANTAGES], args.cliprange
        )
        kl = categorical_kl(log_probs, prepared[REF_LOG_PROBS])  # (C,)
        values = self.head(VALUE_HEAD)(outputs.last_hidden_state[rows, positions].detach().float())  # (C,)
        value_losses = value_loss(values[:, None].expand_as(prepared[REWARDS]), prepared[REWARDS]).mean(dim=1)
        losses = policy_losses.mean(dim=1) + args.kl_coef * kl + args.vf_coef * value_losses  # (C,)

        # Log the metrics
        with torch.no_grad():
            self._record_mean(mode, "objective/kl", kl)
            self._record_mean(mode, "policy/clipfrac_avg", clipped.float())
            self._record_mean(mode, "policy/approxkl_avg", 0.5 * (log_probs_taken - prepared[OLD_LOGPS]) ** 2)
            self._record_mean(mode, "loss/policy_avg", policy_losses)
            self._record_mean(mode, "loss/value_avg", value_losses)
            self._record_mean(mode, "val/ratio", ratios)
            self._record_mean(mode, "val/value", values)
        return losses.sum(), outputs


__all__ = ["PPOConfig", "PPOTrainer", "ValueHead", "VALUE_HEAD"]
