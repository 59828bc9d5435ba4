"""Loss functions, one module per method."""

from .asft import advantage_weights, user_mean_baseline
from .cql import cql_loss
from .dpo import DPO_LOSS_TYPES, preference_loss, separated_pairs
from .next_item import full_softmax_loss, sampled_softmax_loss
from .ppo import categorical_kl, clipped_policy_loss, value_loss
from .weighted_nll import weighted_nll

__all__ = [
    "DPO_LOSS_TYPES",
    "advantage_weights",
    "categorical_kl",
    "clipped_policy_loss",
    "cql_loss",
    "full_softmax_loss",
    "preference_loss",
    "sampled_softmax_loss",
    "separated_pairs",
    "user_mean_baseline",
    "value_loss",
    "weighted_nll",
]
