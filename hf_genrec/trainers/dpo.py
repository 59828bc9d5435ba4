"""RS-DPO and RS-IPO: rejection-sampled preference pairs scored by a reward ensemble (Netflix Technology Blog,
Oct 2025; brief, section 4), trained with the DPO or IPO loss on full-catalogue item log-probabilities.

Per optimizer step, before any gradient (see `PolicyTrainer`):

1. contexts: `contexts_per_sequence` random supervised positions per training row (the history up to
   position t; `None` = every position);
2. candidates: `num_candidates` distinct items drawn from the FROZEN reference policy π_ref(·|x) without
   replacement (items of the history excluded), plus the logged next item;
3. the reward ensemble scores them at the context (mean and std over its members), LB/UB = mean ∓ z·std, and
   `pair_rule` picks one pair per context, kept only when LB(y_w) > UB(y_l):
   `confident_extremes` (default) y_w = argmax LB, y_l = argmin UB; `logged_vs_worse` y_w = the logged item,
   y_l = the first sampled candidate with UB(y_l) < LB(logged) (a draw from π_ref among the confidently worse
   items). Contexts without such a pair contribute nothing; `pairs/kept_frac` logs the fraction of contexts
   with a kept pair.

The loss is the mean over the step's kept pairs of −log σ(β h) (DPO), (h − 1/(2β))² (IPO) or TRL's `robust`
DPO (`hf_genrec.losses.dpo`), or a weighted sum of them (`loss_type` as a list, with `loss_weights`, as TRL), with
h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)] and log π from the full-catalogue
softmax (the history exclusion used for sampling cancels in h).

**Offline mode** (TRL's usual DPO): when `train_dataset` is a preference dataset (`history`, `chosen`,
`rejected` columns, see `hf_genrec.data.preferences`), the pairs are the dataset's: the context is the whole
history, no candidates are sampled and no reward model is needed; the loss is the same.

**TR-DPO** (`sync_ref_model=True`): TRL's own `SyncRefModelCallback` mixes the policy into the frozen reference
copy every `ref_model_sync_steps` optimizer steps, π_ref ← α π_θ + (1 − α) π_ref (α = `ref_model_mixup_alpha`).
In the sampled mode the candidates are then drawn from the updated reference too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from transformers import Trainer
from trl.trainer.callbacks import SyncRefModelCallback

from ..data.columns import ATTENTION_MASK, ITEM_IDS, LABELS
from ..data.preferences import CHOSEN_ITEM_IDS, REJECTED_ITEM_IDS, PreferenceCollator, is_preference_dataset
from ..losses.dpo import (
    DPO_LOSS_TYPES,
    DPO_PAIR_RULES,
    logged_vs_worse_pairs,
    preference_loss,
    separated_pairs,
)
from .policy import (
    PREPARED,
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
)

# Keys of `inputs[PREPARED]`.
ROWS, POSITIONS, CHOSEN, REJECTED = "rows", "positions", "chosen", "rejected"
REF_CHOSEN_LOGPS, REF_REJECTED_LOGPS = "ref_chosen_logps", "ref_rejected_logps"
# Loss types that read `label_smoothing` (TRL 1.16 reads it in `robust`, `exo_pair` and `aot*`).
LABEL_SMOOTHING_LOSS_TYPES = ("robust",)


@dataclass
class DPOConfig(PostTrainConfig):
    r"""
    Configuration of [`DPOTrainer`] (RS-DPO and RS-IPO, or DPO on a preference dataset). The DPO fields mirror
    TRL 1.16's `trl.DPOConfig` (names, defaults and meaning) for the subset that applies to items.

    Args:
        beta (`float`, *optional*, defaults to `0.1`):
            β: for DPO the inverse temperature of the implicit reward, for IPO the regularisation (the target
            margin is 1/(2β)). Higher β stays closer to the reference policy. TRL's default.
        loss_type (`list[str]`, *optional*, defaults to `["sigmoid"]`):
            Loss types, any of `"sigmoid"` (DPO, Rafailov et al. 2023), `"ipo"` (IPO, Azar et al. 2023) and
            `"robust"` (robust DPO, Chowdhury et al. 2024); several are combined with `loss_weights`, as TRL
            does. A single string is read as a one-element list.
        loss_weights (`list[float]`, *optional*):
            One weight per loss type; default 1 each.
        label_smoothing (`float`, *optional*, defaults to `0.0`):
            ε, as TRL defines it: the probability that a preference label is flipped, used by `"robust"` (in
            [0, 0.5)); the conservative, unbiased-under-noise DPO loss. The other loss types ignore it (a
            warning says so).
        sync_ref_model (`bool`, *optional*, defaults to `False`):
            TR-DPO (arXiv 2404.09656): every `ref_model_sync_steps` steps, TRL's `SyncRefModelCallback` sets
            π_ref ← α π_θ + (1 − α) π_ref. Needs the frozen reference copy (not PEFT, whose reference is the
            adapter-disabled policy). Checkpoints do not hold the reference: a resumed run restarts it from the
            reference it is given (as TRL).
        ref_model_mixup_alpha (`float`, *optional*, defaults to `0.6`):
            α of the TR-DPO update, in [0, 1].
        ref_model_sync_steps (`int`, *optional*, defaults to `512`):
            τ of TR-DPO: optimizer steps between updates of the reference.
        num_candidates (`int`, *optional*, defaults to `16`):
            M, items drawn per context from the reference policy without replacement (history excluded).
            Sampled mode only, as are the next three fields.
        include_logged_item (`bool`, *optional*, defaults to `True`):
            Add the logged next item to the candidates.
        confidence_z (`float`, *optional*, defaults to `1.0`):
            z of the intervals mean ± z·std over the ensemble members; a pair is kept only when the
            intervals are separated. 0 compares the means.
        pair_rule (`str`, *optional*, defaults to `"confident_extremes"`):
            How a context's pair is picked among its scored candidates: `"confident_extremes"` (the highest lower
            bound vs the lowest upper bound) or `"logged_vs_worse"` (the logged item vs the first sampled
            candidate whose upper bound is below the logged item's lower bound; needs `include_logged_item`).
        contexts_per_sequence (`int` or `None`, *optional*, defaults to `4`):
            Contexts drawn per training row (random supervised positions, new each epoch); `None` uses every
            supervised position.

    Other defaults: `disable_dropout=True` (as TRL), see [`PostTrainConfig`] for the rest.
    """

    beta: float = field(default=0.1, metadata={"help": "β of DPO/IPO; higher stays closer to the reference."})
    loss_type: list[str] = field(
        default_factory=lambda: ["sigmoid"],
        metadata={
            "help": "Loss types: 'sigmoid' (DPO), 'ipo' (IPO, Eq. 17 of arXiv 2310.12036), 'robust' (robust DPO); "
            "several are combined with `loss_weights`.",
            "choices": list(DPO_LOSS_TYPES),
        },
    )
    loss_weights: list[float] | None = field(
        default=None, metadata={"help": "One weight per loss type (default: 1 each)."}
    )
    label_smoothing: float = field(
        default=0.0,
        metadata={"help": "Probability that a preference label is flipped, in [0, 0.5); used by the 'robust' loss."},
    )
    sync_ref_model: bool = field(
        default=False,
        metadata={"help": "TR-DPO: mix the policy into the reference every `ref_model_sync_steps` steps."},
    )
    ref_model_mixup_alpha: float = field(
        default=0.6, metadata={"help": "α of TR-DPO: π_ref ← α π_θ + (1 − α) π_ref."}
    )
    ref_model_sync_steps: int = field(
        default=512, metadata={"help": "τ of TR-DPO: optimizer steps between reference updates."}
    )
    num_candidates: int = field(default=16, metadata={"help": "Items sampled per context from π_ref."})
    include_logged_item: bool = field(default=True, metadata={"help": "Add the logged item to the candidates."})
    confidence_z: float = field(
        default=1.0, metadata={"help": "Interval half-width in ensemble standard deviations (mean ± z·std)."}
    )
    pair_rule: str = field(
        default="confident_extremes",
        metadata={"help": "Pair per context: 'confident_extremes' (highest lower bound vs lowest upper bound) or "
                  "'logged_vs_worse' (logged item vs a sampled candidate confidently worse than it).",
                  "choices": list(DPO_PAIR_RULES)},
    )
    contexts_per_sequence: int | None = field(
        default=4, metadata={"help": "Random contexts per training row; None = every supervised position."}
    )
    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout (as TRL's DPO)."})

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}.")
        self._check_loss()
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {self.num_candidates}.")
        if self.num_candidates < 2 and not self.include_logged_item:
            raise ValueError("a pair needs two candidates: set num_candidates >= 2 or include_logged_item=True.")
        if self.confidence_z < 0:
            raise ValueError(f"confidence_z must be >= 0, got {self.confidence_z}.")
        if self.pair_rule not in DPO_PAIR_RULES:
            raise ValueError(f"pair_rule must be one of {DPO_PAIR_RULES}, got {self.pair_rule!r}.")
        if self.pair_rule == "logged_vs_worse" and not self.include_logged_item:
            raise ValueError(
                "pair_rule='logged_vs_worse' compares the candidates with the logged item, but "
                "include_logged_item=False; set include_logged_item=True or pair_rule='confident_extremes'."
            )
        if self.contexts_per_sequence is not None and self.contexts_per_sequence < 1:
            raise ValueError(
                f"contexts_per_sequence must be a positive integer or None (every position), got {self.contexts_per_sequence}."
            )
        if not 0.0 <= self.ref_model_mixup_alpha <= 1.0:
            raise ValueError(f"ref_model_mixup_alpha must be in [0, 1], got {self.ref_model_mixup_alpha}.")
        if self.ref_model_sync_steps < 1:
            raise ValueError(f"ref_model_sync_steps must be at least 1, got {self.ref_model_sync_steps}.")
        super().__post_init__()

    def _check_loss(self) -> None:
        """`loss_type` as TRL's list, checked with `loss_weights` and `label_smoothing`."""
        if isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        self.loss_type = list(self.loss_type)
        unknown = [name for name in self.loss_type if name not in DPO_LOSS_TYPES]
        if not self.loss_type or unknown:
            raise ValueError(
                f"loss_type must be a non-empty list of {DPO_LOSS_TYPES}, got {self.loss_type!r}; e.g. ['sigmoid']."
            )
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights must have one weight per loss type: got {len(self.loss_weights)} weights "
                f"{self.loss_weights} for loss_type {self.loss_type}."
            )
        uses_smoothing = [name for name in self.loss_type if name in LABEL_SMOOTHING_LOSS_TYPES]
        if uses_smoothing and not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(
                f"label_smoothing must be in [0, 0.5) for loss_type {uses_smoothing}, got {self.label_smoothing}."
            )
        if self.label_smoothing != 0.0 and not uses_smoothing:
            warnings.warn(
                f"label_smoothing={self.label_smoothing} has no effect with loss_type {self.loss_type} (as in TRL "
                "1.16); use loss_type=['robust'] for the label-noise-robust DPO loss.",
                UserWarning,
                stacklevel=3,
            )


class DPOTrainer(PolicyTrainer):
    """RS-DPO / RS-IPO on item ids, or DPO on a preference dataset (see the module docstring). The sampled mode
    needs a reward ensemble; the offline mode needs none.

    Example (offline, TRL's shape: config -> trainer -> `train()`):

    ```python
    >>> from hf_genrec.data.preferences import build_preference_dataset
    >>> from hf_genrec.trainers import DPOConfig, DPOTrainer
    >>> pairs = build_preference_dataset(splits["train"], high_rating=4.0, low_rating=2.0)
    >>> args = DPOConfig("out", loss_type=["sigmoid"], beta=0.1, sync_ref_model=True, ref_model_sync_steps=64)
    >>> trainer = DPOTrainer("runs/ml1m-hstu", args=args, train_dataset=pairs, processing_class=vocabulary)
    >>> trainer.train()
    ```

    Example (sampled pairs, RS-DPO: the training sequences and a reward ensemble):

    ```python
    >>> args = DPOConfig("out", beta=0.1, loss_type=["sigmoid"], num_candidates=16, confidence_z=1.0)
    >>> trainer = DPOTrainer("runs/ml1m-hstu", reward_model="runs/ml1m-reward", args=args,
    ...                      train_dataset=splits["train"], processing_class=vocabulary)
    >>> trainer.train()
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "dpo"]
    _name = "RS-DPO"
    _paper = {
        "title": "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
        "id": "2305.18290",
    }

    def __init__(self, model=None, ref_model=None, reward_model=None, args: DPOConfig | None = None,
                 data_collator=None, train_dataset=None, **kwargs):
        self.offline = is_preference_dataset(train_dataset)
        if args is not None and args.loss_type == ["ipo"]:
            self._name = "IPO" if self.offline else "RS-IPO"
            self._tag_names = ["hf_genrec", "hstu", "ipo"]
            self._paper = {
                "title": "A General Theoretical Paradigm to Understand Learning from Human Preferences",
                "id": "2310.12036",
            }
        elif self.offline:
            self._name = "DPO"
        super().__init__(model=model, ref_model=ref_model, reward_model=reward_model, args=args,
                         data_collator=data_collator, train_dataset=train_dataset, **kwargs)
        if self.offline and data_collator is None:
            # Collates the preference rows, and any ranking evaluation rows as `SequenceCollator` does.
            self.data_collator = PreferenceCollator(max_seq_len=self.policy.config.max_seq_len)
        if self.args.sync_ref_model:
            if self.ref_model is None:
                raise ValueError(
                    "sync_ref_model=True needs a separate reference model, but under PEFT the reference is the "
                    "adapter-disabled policy (as in TRL); set sync_ref_model=False or train without peft_config."
                )
            self.add_callback(SyncRefModelCallback(ref_model=self.ref_model, accelerator=self.accelerator))

    @classmethod
    def needs_reference(cls, args) -> bool:
        return True

    @classmethod
    def needs_reward_model(cls, args, train_dataset=None) -> bool:
        # Sampled pairs are ranked by the reward ensemble; offline pairs come from the dataset.
        return not is_preference_dataset(train_dataset)

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if is_preference_dataset(dataset):
            # Length bucketing reads `item_ids` lengths, which preference rows do not have: plain shuffling.
            return Trainer._get_train_sampler(self, train_dataset)
        return super()._get_train_sampler(train_dataset)

    def _prepare_micro_batch(self, inputs):
        if CHOSEN_ITEM_IDS in inputs:
            return self._logged_pairs(inputs)
        return self._sampled_pairs(inputs)

    def _logged_pairs(self, inputs):
        """A preference batch's own pairs, at the state after the whole history (its last real position)."""
        chosen, rejected = inputs[CHOSEN_ITEM_IDS], inputs[REJECTED_ITEM_IDS]
        rows = torch.arange(chosen.shape[0], device=chosen.device)  # (B,)
        positions = inputs[ATTENTION_MASK].sum(dim=1) - 1  # (B,)
        with self.reference_policy() as reference:
            mask = positions_mask(inputs[ITEM_IDS].shape, rows, positions)  # (B, N)
            ref_log_probs = items_log_softmax(policy_forward(reference, inputs, mask).logits)  # (B, V + 1)
        num_columns = ref_log_probs.shape[1]
        for name, items in (("chosen", chosen), ("rejected", rejected)):
            if ((items < 1) | (items >= num_columns)).any():
                bad = items[(items < 1) | (items >= num_columns)][0].item()
                raise ValueError(f"a preference row has {name}={bad}, outside the catalogue's item indices "
                                 f"1..{num_columns - 1}; map raw item ids with the model's vocabulary first.")
        inputs[PREPARED] = {
            ROWS: rows,
            POSITIONS: positions,
            CHOSEN: chosen,
            REJECTED: rejected,
            REF_CHOSEN_LOGPS: ref_log_probs.gather(1, chosen[:, None]).squeeze(1),
            REF_REJECTED_LOGPS: ref_log_probs.gather(1, rejected[:, None]).squeeze(1),
        }
        return inputs

    def _sampled_pairs(self, inputs):
        """Rejection-sampled pairs at random contexts of a batch of training sequences (module docstring)."""
        args = self.args
        labels = inputs[LABELS]
        rows, positions = sample_contexts(labels, args.contexts_per_sequence)  # (C,)
        prefixes = context_batch(inputs, rows, positions)  # (C, L)

        # Reference log-probabilities over the catalogue at each context.
        with self.reference_policy() as reference:
            mask = positions_mask(labels.shape, rows, positions)  # (B, N)
            ref_log_probs = items_log_softmax(policy_forward(reference, inputs, mask).logits)  # (C, V + 1)

        # Candidates: M distinct items from π_ref with the history excluded, plus the logged item.
        exclude = seen_item_mask(prefixes.item_ids, ref_log_probs.shape[1])
        candidates, valid = sample_items(ref_log_probs.masked_fill(exclude, float("-inf")), args.num_candidates)
        if args.include_logged_item:
            logged = labels[rows, positions]
            candidates = torch.cat([logged[:, None], candidates], dim=1)  # (C, M + 1)
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)

        # Score with the ensemble; keep the rule's pair when its intervals are separated.
        scores = context_rewards(self.reward_model, inputs, rows, positions, candidates)  # (C, M + 1) fields
        if args.pair_rule == "logged_vs_worse":  # column 0 is the logged item; its repeats are no rejected item
            chosen_col, rejected_col, keep = logged_vs_worse_pairs(
                scores.mean.float(), scores.std.float(), args.confidence_z, valid & (candidates != logged[:, None])
            )
        else:
            chosen_col, rejected_col, keep = separated_pairs(
                scores.mean.float(), scores.std.float(), args.confidence_z, valid
            )
        chosen = candidates.gather(1, chosen_col[:, None]).squeeze(1)
        rejected = candidates.gather(1, rejected_col[:, None]).squeeze(1)

        # Log the metrics
        self._record_mean("train", "pairs/kept_frac", keep.float())
        self._record_mean("train", "reward_model/chosen", scores.mean.gather(1, chosen_col[:, None])[keep])
        self._record_mean("train", "reward_model/rejected", scores.mean.gather(1, rejected_col[:, None])[keep])
        self._record_mean("train", "reward_model/candidates", scores.mean[valid])

        inputs[PREPARED] = {
            ROWS: rows[keep],
            POSITIONS: positions[keep],
            CHOSEN: chosen[keep],
            REJECTED: rejected[keep],
            REF_CHOSEN_LOGPS: ref_log_probs.gather(1, chosen[:, None]).squeeze(1)[keep],
            REF_REJECTED_LOGPS: ref_log_probs.gather(1, rejected[:, None]).squeeze(1)[keep],
        }
        return inputs

    def _loss_units(self, inputs):
        return inputs[PREPARED][CHOSEN].numel()  # kept pairs

    def _loss_sum(self, model, inputs, mode):
        prepared = inputs[PREPARED]
        mask = positions_mask(inputs[ITEM_IDS].shape, prepared[ROWS], prepared[POSITIONS])  # (B, N)
        outputs = policy_forward(model, inputs, mask)  # the scores of the K kept pairs' contexts
        log_probs = items_log_softmax(outputs.logits)  # (K, V + 1)
        chosen_logps = log_probs.gather(1, prepared[CHOSEN][:, None]).squeeze(1)
        rejected_logps = log_probs.gather(1, prepared[REJECTED][:, None]).squeeze(1)
        losses, chosen_rewards, rejected_rewards = preference_loss(
            chosen_logps,
            rejected_logps,
            prepared[REF_CHOSEN_LOGPS],
            prepared[REF_REJECTED_LOGPS],
            beta=self.args.beta,
            loss_type=self.args.loss_type,
            loss_weights=self.args.loss_weights,
            label_smoothing=self.args.label_smoothing,
        )

        # Log the metrics
        self._record_mean(mode, "rewards/chosen", chosen_rewards)
        self._record_mean(mode, "rewards/rejected", rejected_rewards)
        self._record_mean(mode, "rewards/margins", chosen_rewards - rejected_rewards)
        self._record_mean(mode, "rewards/accuracies", (chosen_rewards > rejected_rewards).float())
        self._record_mean(mode, "logps/chosen", chosen_logps)
        self._record_mean(mode, "logps/rejected", rejected_logps)
        return losses.sum(), outputs


__all__ = ["DPOConfig", "DPOTrainer"]
