"""Conservative Q-learning for a one-step (contextual bandit) recommender with discrete actions.

    L = (Q(x, y) − r)² + α · (logsumexp_a Q(x, a) − Q(x, y)),   Q(x, a) = s · score(x, a) + b

(Kumar et al., "Conservative Q-Learning for Offline Reinforcement Learning", NeurIPS 2020, arXiv 2006.04779,
the CQL(H) penalty; with one step the Bellman target is the observed reward r.)

The loss is one fused autograd function over the (P, A) scores: the bias cancels in the penalty
(logsumexp_a (s·c_a + b) − (s·c_y + b) = logsumexp_a s·c_a − s·c_y), the scale enters only the elementwise
`exp`, nothing of size (P, A) is saved for the backward, and the backward recomputes the softmax straight into
the gradient. That is 6 passes over the (P, A) scores forward and 3 backward, against about 25 (with as many
(P, A) temporaries) for the same formula written with tensor ops (affine map, masks, logsumexp, gather and
their backwards); CQL's step was 2.5x a pretraining step, most of it in those passes.
"""

from __future__ import annotations

import torch

# Elements of one row block (2^26 floats = 256 MB, a whole MovieLens-1M batch): blocks bound the one temporary
# for large catalogues. Not smaller: on a shared CPU every op is a parallel region that waits for all its threads
# to be scheduled, so many small ops were 10x slower than a few large ones (measured, 2 threads, load ~8).
_BLOCK_ELEMENTS = 1 << 26


def _block_rows(columns: int) -> int:
    """Rows of a block of `columns` columns: `_BLOCK_ELEMENTS // columns`, at least 1."""
    return max(1, _BLOCK_ELEMENTS // max(columns, 1))


def _row_blocks(rows: int, columns: int):
    """Slices of at most `_block_rows(columns)` consecutive rows covering `rows`."""
    step = _block_rows(columns)
    for start in range(0, rows, step):
        yield slice(start, min(start + step, rows))


@torch.no_grad()
def scaled_logsumexp(
    scores: torch.Tensor, scale: torch.Tensor | float, with_mean: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Row-wise logsumexp_a (scale · scores[p, a]) and, optionally, the mean Σ_a softmax_p(a) · scores[p, a].

    Computed in row blocks with one temporary of at most `_BLOCK_ELEMENTS` elements; no autograd graph.

    Args:
        scores: (P, A) float scores, −inf on entries that are not actions (they get probability 0).
        scale: scale > 0 (a float or a 0-dim tensor), so that −inf stays −inf.
        with_mean: also return the (P,) softmax-weighted mean of the scores (the gradient of the logsumexp
            with respect to the scale).

    Returns:
        (P,) logsumexp (−inf for a row without actions, as `torch.logsumexp`) and the (P,) mean or None.
    """
    scale = torch.as_tensor(scale, dtype=scores.dtype, device=scores.device)
    lse = scores.new_empty(scores.shape[0])
    mean = scores.new_empty(scores.shape[0]) if with_mean else None
    block = scores.new_empty(min(scores.shape[0], _block_rows(scores.shape[1])), scores.shape[1])
    for rows in _row_blocks(*scores.shape):
        maxes = scores[rows].amax(dim=1, keepdim=True).mul_(scale)  # max_a s·c_a, as s > 0
        maxes.masked_fill_(maxes.isinf(), 0.0)  # a row of −inf gives −inf, not nan (as torch.logsumexp)
        exps = torch.addcmul(-maxes, scores[rows], scale, out=block[: rows.stop - rows.start]).exp_()
        sums = exps.sum(dim=1)
        lse[rows] = sums.log().add_(maxes.squeeze(1))
        if mean is not None:
            # nansum: a non-action has probability 0 and score −inf, and 0 · (−inf) is nan.
            mean[rows] = torch.nansum(exps.mul_(scores[rows]), dim=1).div_(sums)
    return lse, mean


class _AffineCQLLoss(torch.autograd.Function):
    """The CQL loss of Q = scale · scores + bias, with a backward that recomputes the softmax block by block."""

    @staticmethod
    def forward(ctx, scores, scale, bias, actions, rewards, alpha: float):
        # (P,) logsumexp_a s·c_a, and Σ_a softmax(a)·c_a only when the scale's gradient needs it.
        lse, mean = scaled_logsumexp(scores, scale, with_mean=ctx.needs_input_grad[1])
        logged = scores.gather(1, actions[:, None]).squeeze(1)  # (P,) c_y
        q_logged = scale * logged + bias
        residual = q_logged - rewards.to(q_logged.dtype)
        regression = residual**2
        penalty = lse - scale * logged  # the bias cancels
        ctx.save_for_backward(scores, scale, actions, lse, mean, logged, residual)
        ctx.alpha, ctx.bias_shape = alpha, bias.shape
        return regression + alpha * penalty, regression, penalty

    @staticmethod
    def backward(ctx, grad_losses, grad_regression, grad_penalty):
        scores, scale, actions, lse, mean, logged, residual = ctx.saved_tensors
        # Weights of the two terms per position: d/d regression and d/d penalty of the caller's objective.
        w_regression = _sum_grads(grad_losses, grad_regression, residual)
        alpha_grad_losses = None if grad_losses is None else ctx.alpha * grad_losses
        w_penalty = _sum_grads(alpha_grad_losses, grad_penalty, residual)
        # d regression / d Q(x, y) = 2 (Q(x, y) − r); d penalty / d Q(x, a) = softmax(a) − [a = y].
        d_logged = 2 * residual * w_regression - w_penalty  # (P,) d/dQ(x, y) besides the softmax term
        grad_scores = grad_scale = grad_bias = grad_rewards = None
        if ctx.needs_input_grad[0]:
            grad_scores = _softmax_times(scores, scale, lse, w_penalty * scale)  # s · w · softmax
            grad_scores.scatter_add_(1, actions[:, None], (d_logged * scale)[:, None])
        if ctx.needs_input_grad[1]:
            grad_scale = (w_penalty * mean + d_logged * logged).sum().reshape(scale.shape)
        if ctx.needs_input_grad[2]:
            grad_bias = (2 * residual * w_regression).sum().reshape(ctx.bias_shape)
        if ctx.needs_input_grad[4]:
            grad_rewards = -2 * residual * w_regression
        return grad_scores, grad_scale, grad_bias, None, grad_rewards, None


def _softmax_times(
    scores: torch.Tensor, scale: torch.Tensor, lse: torch.Tensor, coefficients: torch.Tensor
) -> torch.Tensor:
    """(P, A) coefficients[p] · softmax_a(scale · scores[p, a]), given the rows' logsumexp `lse`.

    Non-negative coefficients (the usual case: α ≥ 0 and positive loss weights) enter the exponent as
    log(coefficient), which saves a pass over the (P, A) result; others multiply it.
    """
    result = torch.empty_like(scores)
    fold = bool((coefficients >= 0).all())
    shifts = (lse - coefficients.log()) if fold else lse  # log 0 = −inf: a zero coefficient gives 0
    for rows in _row_blocks(*scores.shape):
        block = torch.addcmul(-shifts[rows, None], scores[rows], scale, out=result[rows]).exp_()
        if not fold:
            block.mul_(coefficients[rows, None])
    return result


def _sum_grads(first: torch.Tensor | None, second: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """first + second, either of which autograd may pass as None (an output that got no gradient)."""
    if first is None and second is None:
        return torch.zeros_like(like)
    if first is None or second is None:
        return first if second is None else second
    return first + second


def cql_loss(
    q_values: torch.Tensor,
    actions: torch.Tensor,
    rewards: torch.Tensor,
    alpha: float,
    scale: torch.Tensor | float = 1.0,
    bias: torch.Tensor | float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position CQL loss of Q = scale · q_values + bias (the identity by default).

    Args:
        q_values: (P, A) scores over the catalogue (−inf on columns that are not actions, e.g. padding).
        actions: (P,) logged actions y_p.
        rewards: (P,) observed rewards r_p.
        alpha: weight α ≥ 0 of the conservative penalty.
        scale: s > 0 of the affine map (a float or a 0-dim tensor, e.g. a learnable parameter's `exp`).
        bias: b of the affine map (a float or a 0-dim tensor).

    Returns:
        losses (P,) = regression + α · penalty, regression (P,) = (Q(x, y) − r)², penalty (P,) =
        logsumexp_a Q(x, a) − Q(x, y) (≥ 0); all three differentiable in q_values, scale and bias.
    """
    if not isinstance(scale, torch.Tensor) and not scale > 0:
        raise ValueError(f"scale must be > 0 (so that -inf scores stay -inf), got {scale}.")
    scale = torch.as_tensor(scale, dtype=q_values.dtype, device=q_values.device)
    bias = torch.as_tensor(bias, dtype=q_values.dtype, device=q_values.device)
    return _AffineCQLLoss.apply(q_values, scale, bias, actions, rewards, alpha)


__all__ = ["cql_loss", "scaled_logsumexp"]
