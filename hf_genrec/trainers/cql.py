"""CQL for a one-step recommender (Kumar et al., NeurIPS 2020, arXiv 2006.04779; brief, section 4).

The Q function over the catalogue is the recommender's own scoring, affinely rescaled:

    Q(x, a) = s · cos(u_x, e_a) + b,   s = exp(log_scale) > 0,

with u_x the (fine-tuned) backbone's user vector and e_a the item embedding, i.e. Q = s·τ_sim·logits + b.
`s` starts at 1/τ_sim (so softmax(Q) is exactly the pretrained policy and the conservative penalty starts
as the SFT loss) and `b` at the mean of r − s·cos(x, y) over the training data's logged items (so that
Q(x, y) starts on the reward scale), set when the trainer is built. The loss per supervised position is

    (Q(x, y) − r)² + α · (logsumexp_a Q(x, a) − Q(x, y)).

Ranking by argmax Q equals ranking by the cosine because s > 0, so the saved `HSTUForNextItemPrediction` is
the CQL recommender; its softmax is the policy softmax(Q/τ) at τ = s·τ_sim. The two scalars are saved
beside it in `cql_head.safetensors` (`from_pretrained` ignores them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..data.columns import LABEL_RATINGS, LABELS
from ..losses.cql import cql_loss, scaled_logsumexp
from .policy import PolicyHead, PolicyTrainer, PostTrainConfig, policy_forward, supervised_mask

CQL_HEAD = "cql_head"


class CQLHead(PolicyHead):
    """Q(x, a) = exp(log_scale) · cos(u_x, e_a) + bias: two learnable scalars over the recommender's cosines."""

    def __init__(self, scale: float, bias: float = 0.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, cosines: torch.Tensor) -> torch.Tensor:
        """(..., A) cosines (−inf on non-actions) -> (..., A) Q-values."""
        return self.scale * cosines + self.bias


@dataclass
class CQLConfig(PostTrainConfig):
    r"""
    Configuration of [`CQLTrainer`].

    Args:
        alpha (`float`, *optional*, defaults to `1.0`):
            α ≥ 0, weight of the conservative penalty logsumexp_a Q(x, a) − Q(x, y). 0 is plain reward
            regression of the logged items; larger values keep Q (and the ranking) closer to the data.
        q_scale_init (`float` or `None`, *optional*, defaults to `None`):
            Initial s of Q = s·cos + b; `None` uses 1/similarity_temperature, so softmax(Q) starts as the
            pretrained policy.

    See [`PostTrainConfig`] for the defaults that differ from `TrainingArguments`.
    """

    alpha: float = field(default=1.0, metadata={"help": "Weight α of the CQL penalty logsumexp Q − Q(x, y)."})
    q_scale_init: float | None = field(
        default=None, metadata={"help": "Initial scale s of Q = s·cos + b (None: 1/similarity_temperature)."}
    )

    def __post_init__(self):
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}.")
        if self.q_scale_init is not None and not self.q_scale_init > 0:
            raise ValueError(f"q_scale_init must be > 0 (ranking follows the cosine), got {self.q_scale_init}.")
        super().__post_init__()


class CQLTrainer(PolicyTrainer):
    """Conservative Q-learning with a Q head over the catalogue initialised from the policy logits.

    Example (TRL's shape: config -> trainer -> `train()`; `examples/trl_quickstarts.py`):

    ```python
    >>> from hf_genrec.trainers import CQLConfig, CQLTrainer
    >>> trainer = CQLTrainer("runs/ml1m-hstu", args=CQLConfig("out", alpha=1.0), train_dataset=splits["train"],
    ...                      processing_class=vocabulary)  # the logged ratings are the rewards
    >>> trainer.train()
    >>> trainer.save_model("out/final")  # the recommender, plus cql_head.safetensors
    ```
    """

    _tag_names = ["hf_genrec", "hstu", "cql"]
    trains_from_streams = False  # the head's starting values are fitted on training rows read by index
    _name = "CQL"
    _paper = {"title": "Conservative Q-Learning for Offline Reinforcement Learning", "id": "2006.04779"}
    _head_names = (CQL_HEAD,)

    def _build_heads(self, model, args):
        scale = args.q_scale_init or 1.0 / model.config.similarity_temperature
        return {CQL_HEAD: CQLHead(scale)}

    @staticmethod
    def _forward_cosines(model, inputs: dict[str, torch.Tensor], supervised: torch.Tensor):
        """The forward of `model` on `inputs` and the (P, V + 1) float32 cosines at the (B, N) `supervised`
        positions, scored inside it (cosine / 1.0; column 0, padding, is −inf)."""
        outputs = policy_forward(model, inputs, supervised, logits_temperature=1.0)
        return outputs, outputs.logits

    def _initialize_heads(self):
        # b = mean(r − s·cos(x, y)) over the logged items, so that Q(x, y) starts on the reward scale.
        self.head(CQL_HEAD).bias.fill_(self._mean_over_training_rows(self._reward_residuals))

    def _reward_residuals(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(P,) r − s·cos(x, y) of the batch's logged items (Q(x, y) − b for the reward r)."""
        supervised = supervised_mask(batch[LABELS])
        labels = batch[LABELS][supervised]
        _, cosines = self._forward_cosines(self.policy, batch, supervised)  # (P, V + 1), column 0 −inf
        logged = cosines.gather(1, labels[:, None]).squeeze(1)  # (P,)
        return batch[LABEL_RATINGS][supervised].float() - self.head(CQL_HEAD).scale * logged

    def _loss_sum(self, model, inputs, mode):
        supervised = supervised_mask(inputs[LABELS])  # (B, N)
        labels = inputs[LABELS][supervised]
        outputs, cosines = self._forward_cosines(model, inputs, supervised)  # cosines (P, V + 1)
        head = self.head(CQL_HEAD)
        # Q = s·cos + b, fused into the loss (no (P, V + 1) Q-values; see `hf_genrec.losses.cql`).
        losses, regression, penalty = cql_loss(
            cosines, labels, inputs[LABEL_RATINGS][supervised].float(), self.args.alpha, scale=head.scale,
            bias=head.bias
        )

        # Log the metrics
        with torch.no_grad():
            logged = cosines.gather(1, labels[:, None]).squeeze(1)  # (P,)
            self._record_mean(mode, "q/logged", head(logged))
            self._record_mean(mode, "loss/regression", regression)
            self._record_mean(mode, "loss/penalty", penalty)
            # log π(y|x) of the policy softmax(cos / τ_sim); column 0 (−inf) has probability 0.
            inverse_temperature = 1.0 / self.policy.config.similarity_temperature
            log_normalizers, _ = scaled_logsumexp(cosines, inverse_temperature)
            self._record_mean(mode, "logps/logged", logged * inverse_temperature - log_normalizers)
            self._record_mean(mode, "q/scale", head.scale.reshape(1))
            self._record_mean(mode, "q/bias", head.bias.reshape(1))
        return losses.sum(), outputs


__all__ = ["CQLConfig", "CQLHead", "CQLTrainer", "CQL_HEAD"]
