"""Conservative Q-learning for a one-step (contextual bandit) recommender with discrete actions.

    L = (Q(x, y) − r)² + α · (logsumexp_a Q(x, a) − Q(x, y))

(Kumar et al., "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020, arXiv 2006.04779,
the CQL(H) penalty; with one step the Bellman target is the observed reward r.)
"""

from __future__ import annotations

import torch


def cql_loss(
    q_values: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position CQL loss.

    Args:
        q_values: (P, A) Q(x_p, a) over the catalogue (−inf on columns that are not actions, e.g. padding).
        actions: (P,) logged actions y_p.
        rewards: (P,) observed rewards r_p.
        alpha: weight α ≥ 0 of the conservative penalty.

    Returns:
        losses (P,) = regression + α · penalty, regression (P,) = (Q(x, y) − r)², penalty (P,) =
        logsumexp_a Q(x, a) − Q(x, y) (≥ 0).
    """
    q_logged = q_values.gather(1, actions[:, None]).squeeze(1)  # (P,)
    regression = (q_logged - rewards.to(q_logged.dtype)) ** 2
    penalty = torch.logsumexp(q_values, dim=1) - q_logged
    return regression + alpha * penalty, regression, penalty


__all__ = ["cql_loss"]
