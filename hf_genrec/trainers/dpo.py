"""RS-DPO and RS-IPO: rejection-sampled preference pairs scored by a reward ensemble (Netflix Technology Blog,
Oct 2025; brief, section 4), trained with the DPO or IPO loss on full-catalogue item log-probabilities.

Per optimizer step, before any gradient (see `PolicyTrainer`):

1. contexts: `contexts_per_sequence` random supervised positions per training row (the history up to
   position t; `None` = every position);
2. candidates: `num_candidates` distinct items drawn from the FROZEN reference policy π_ref(·|x) without
   replacement (items of the history excluded), plus the logged next item;
3. the reward ensemble scores them at the context (mean and std over its members); the pair
   y_w = argmax LB, y_l = argmin UB with LB/UB = mean ∓ z·std is kept only when LB(y_w) > UB(y_l).
   Contexts without a separated pair contribute nothing (`pairs/kept_frac`).

The loss is the mean over the step's kept pairs of −log σ(β h) (DPO) or (h − 1/(2β))² (IPO), with
h = [log π_θ(y_w) − log π_ref(y_w)] − [log π_θ(y_l) − log π_ref(y_l)] and log π from the full-catalogue
softmax (the history exclusion used for sampling cancels in h).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data.columns import LABELS
from ..losses.dpo import DPO_LOSS_TYPES, preference_loss, separated_pairs
from .policy import (
    PREPARED,
    PolicyTrainer,
    PostTrainConfig,
    catalogue_log_probs,
    context_batch,
    policy_forward,
    sample_contexts,
    sample_items,
    seen_item_mask,
)

# Keys of `inputs[PREPARED]`.
ROWS, POSITIONS, CHOSEN, REJECTED = "rows", "positions", "chosen", "rejected"
REF_CHOSEN_LOGPS, REF_REJECTED_LOGPS = "ref_chosen_logps", "ref_rejected_logps"


@dataclass
class DPOConfig(PostTrainConfig):
    r"""
    Configuration of [`DPOTrainer`] (RS-DPO and RS-IPO).

    Args:
        beta (`float`, *optional*, defaults to `0.1`):
            β: for DPO the inverse temperature of the implicit reward, for IPO the regularisation (the target
            margin is 1/(2β)). Higher β stays closer to the reference policy. TRL's default.
        loss_type (`str`, *optional*, defaults to `"sigmoid"`):
            `"sigmoid"` (DPO, Rafailov et al. 2023) or `"ipo"` (IPO, Azar et al. 2023).
        num_candidates (`int`, *optional*, defaults to `16`):
            M, items drawn per context from the reference policy without replacement (history excluded).
        include_logged_item (`bool`, *optional*, defaults to `True`):
            Add the logged next item to the candidates.
        confidence_z (`float`, *optional*, defaults to `1.0`):
            z of the intervals mean ± z·std over the ensemble members; a pair is kept only when the
            intervals are separated. 0 compares the means.
        contexts_per_sequence (`int` or `None`, *optional*, defaults to `4`):
            Contexts drawn per training row (random supervised positions, new each epoch); `None` uses every
            supervised position.

    Other defaults: `disable_dropout=True` (as TRL), see [`PostTrainConfig`] for the rest.
    """

    beta: float = field(default=0.1, metadata={"help": "β of DPO/IPO; higher stays closer to the reference."})
    loss_type: str = field(
        default="sigmoid",
        metadata={"help": "'sigmoid' (DPO) or 'ipo' (IPO, Eq. 17 of arXiv 2310.12036).", "choices": list(DPO_LOSS_TYPES)},
    )
    num_candidates: int = field(default=16, metadata={"help": "Items sampled per context from π_ref."})
    include_logged_item: bool = field(default=True, metadata={"help": "Add the logged item to the candidates."})
    confidence_z: float = field(
        default=1.0, metadata={"help": "Interval half-width in ensemble standard deviations (mean ± z·std)."}
    )
    contexts_per_sequence: int | None = field(
        default=4, metadata={"help": "Random contexts per training row; None = every supervised position."}
    )
    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout (as TRL's DPO)."})

    def __post_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta}.")
        if self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {DPO_LOSS_TYPES}, got {self.loss_type!r}.")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {self.num_candidates}.")
        if self.num_candidates < 2 and not self.include_logged_item:
            raise ValueError("a pair needs two candidates: set num_candidates >= 2 or include_logged_item=True.")
        if self.confidence_z < 0:
            raise ValueError(f"confidence_z must be >= 0, got {self.confidence_z}.")
        if self.contexts_per_sequence is not None and self.contexts_per_sequence < 1:
            raise ValueError(
                f"contexts_per_sequence must be a positive integer or None (every position), got {self.contexts_per_sequence}."
            )
        super().__post_init__()


class DPOTrainer(PolicyTrainer):
    """RS-DPO / RS-IPO on item ids (see the module docstring). Needs a reward ensemble."""

    _tag_names = ["hf_genrec", "hstu", "dpo"]
    _name = "RS-DPO"
    _paper = {
        "title": "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
        "id": "2305.18290",
    }

    def __init__(self, model=None, ref_model=None, reward_model=None, args: DPOConfig | None = None, **kwargs):
        if args is not None and args.loss_type == "ipo":
            self._name = "RS-IPO"
            self._tag_names = ["hf_genrec", "hstu", "ipo"]
            self._paper = {
                "title": "A General Theoretical Paradigm to Understand Learning from Human Preferences",
                "id": "2310.12036",
            }
        super().__init__(model=model, ref_model=ref_model, reward_model=reward_model, args=args, **kwargs)

    @classmethod
    def needs_reference(cls, args) -> bool:
        return True

    @classmethod
    def needs_reward_model(cls, args) -> bool:
        return True

    def _prepare_micro_batch(self, inputs):
        args = self.args
        labels = inputs[LABELS]
        rows, positions = sample_contexts(labels, args.contexts_per_sequence)  # (C,)
        prefixes = context_batch(inputs, rows, positions)  # (C, L)

        # Reference log-probabilities over the catalogue at each context.
        with self.reference_policy() as reference:
            user = policy_forward(reference, inputs).user_embeddings[rows, positions]  # (C, d)
            ref_log_probs = catalogue_log_probs(reference, user)  # (C, V + 1)

        # Candidates: M distinct items from π_ref with the history excluded, plus the logged item.
        exclude = seen_item_mask(prefixes.item_ids, ref_log_probs.shape[1])
        candidates, valid = sample_items(ref_log_probs.masked_fill(exclude, float("-inf")), args.num_candidates)
        if args.include_logged_item:
            logged = labels[rows, positions]
            candidates = torch.cat([logged[:, None], candidates], dim=1)  # (C, M + 1)
            valid = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)

        # Score with the ensemble; keep the most separated pair when its intervals are separated.
        scores = self.reward_model.predict_candidates(**prefixes.model_inputs(), candidate_item_ids=candidates)
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
        outputs = policy_forward(model, inputs)
        user = outputs.user_embeddings[prepared[ROWS], prepared[POSITIONS]]  # (K, d), K kept pairs
        log_probs = catalogue_log_probs(self.policy, user)  # (K, V + 1)
        chosen_logps = log_probs.gather(1, prepared[CHOSEN][:, None]).squeeze(1)
        rejected_logps = log_probs.gather(1, prepared[REJECTED][:, None]).squeeze(1)
        losses, chosen_rewards, rejected_rewards = preference_loss(
            chosen_logps,
            rejected_logps,
            prepared[REF_CHOSEN_LOGPS],
            prepared[REF_REJECTED_LOGPS],
            beta=self.args.beta,
            loss_type=self.args.loss_type,
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
