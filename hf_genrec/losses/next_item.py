"""Next-item losses of the generative recommender: sampled softmax (the HSTU reference) and full softmax.

Both take L2-normalised user vectors of the supervised positions and the L2-normalised item table, so
that scores are cosine / temperature as in the reference code. On CPU both score the catalogue in cache-sized
blocks of rows (`gathered_item_scores`, `catalogue_label_log_probs`), never holding the (P, V + 1) matrix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The reference masks a sampled negative that equals the positive with this logit.
MASKED_NEGATIVE_LOGIT = -5e4
# Below this catalogue size, one (P, V) matmul followed by a gather is faster on CPU than gathering
# (P, R, d) negative embeddings, although it does more FLOPs (the gather is memory-bound).
FULL_LOGITS_MAX_ITEMS = 16384
# Elements of one block of (rows, V + 1) scores on CPU: 4 MB of float32 (2 MB of bf16), which stays in the last-level
# cache. The whole (P, V + 1) matrix (400 MB for a MovieLens-1M batch) would be written to memory, read back by the
# gathers, then zero-filled, scattered into and read twice more in the backward: on two cores that traffic cost as
# much time as the matmuls themselves. Smaller blocks (2^19) made the bf16 matmuls (inner dimension d = 50) run 20%
# slower in the loss, float32 ones 10% slower, on a 2-core EPYC with AVX-512.
SCORE_BLOCK_ELEMENTS = 1 << 20
MIN_SCORE_BLOCK_ROWS = 64


def masked_catalogue_scores(users: torch.Tensor, items: torch.Tensor, temperature: float) -> torch.Tensor:
    """(..., d) user vectors -> (..., V + 1) scores `users @ items.T / temperature`, column 0 (padding, never a
    class) set to -inf. Plain tensor ops (autograd, autocast and the graph compiler see them as such); the division
    is skipped at τ = 1, where it changes nothing."""
    return _divide_and_mask(users @ items.T, temperature)  # (..., V + 1)


def _divide_and_mask(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """(..., V + 1) fresh products -> scores / temperature (in place), column 0 (padding) -inf."""
    if temperature != 1.0:
        scores.div_(temperature)
    scores[..., 0] = float("-inf")
    return scores


def _accumulate_block_gradients(
    grad_scores: torch.Tensor,
    users: torch.Tensor,
    items: torch.Tensor,
    grad_users: torch.Tensor | None,
    grad_items_t: torch.Tensor | None,
) -> None:
    """The two matmuls of a block's backward: `grad_users` (rows, d) = grad_scores @ items, and users.T @
    grad_scores added into `grad_items_t` (d, V + 1), the item gradient transposed (that product runs 1.4x faster
    than grad_scores.T @ users in bf16 and as fast in float32); either may be None (no gradient asked for).
    `grad_items_t` may be float32 under bf16 matmuls: the blocks' sum is then kept in float32, not rounded to
    bf16 once per block."""
    if grad_users is not None:
        torch.mm(grad_scores, items, out=grad_users)
    if grad_items_t is None:
        return
    if grad_items_t.dtype == grad_scores.dtype:  # `out=`, not `addmm_`: torch's FLOP counter skips in-place addmm
        torch.addmm(grad_items_t, users.T, grad_scores, out=grad_items_t)
    else:
        grad_items_t.add_(users.T @ grad_scores)


def _score_block_rows(num_positions: int, num_scores: int, device: torch.device) -> int:
    """Rows per block: the cache-sized block on CPU, all rows at once on accelerators (memory bandwidth there is
    not the limit, kernel launches are)."""
    if device.type != "cpu":
        return max(num_positions, 1)
    return max(MIN_SCORE_BLOCK_ROWS, SCORE_BLOCK_ELEMENTS // num_scores)


class _GatheredItemScores(torch.autograd.Function):
    """`(user_embeddings @ item_embeddings.T).gather(1, indices)`, a block of rows at a time, forward and backward.

    Neither pass holds the (P, V + 1) score matrix: the forward scores a block, gathers from it and drops it; the
    backward scatters the block's gradient into one reused (rows, V + 1) buffer and multiplies it out. The matmuls
    are the same as the unblocked expression's (and so are their FLOPs); only the memory traffic around them goes.
    """

    @staticmethod
    def forward(ctx, user_embeddings: torch.Tensor, item_embeddings: torch.Tensor, indices: torch.Tensor):
        num_positions, num_scores = user_embeddings.shape[0], item_embeddings.shape[0]
        rows = _score_block_rows(num_positions, num_scores, user_embeddings.device)
        # The first block's matmul, under autocast when it is on, gives the compute dtype as the unblocked
        # expression would; the two inputs are cast to it once, not once per block.
        first = user_embeddings[:rows] @ item_embeddings.T  # (rows, V + 1)
        users, items_t = user_embeddings.to(first.dtype), item_embeddings.T.to(first.dtype).contiguous()  # (d, V + 1)
        gathered = first.new_empty(num_positions, indices.shape[1])  # (P, K)
        for start in range(0, num_positions, rows):
            block = first if start == 0 else users[start : start + rows] @ items_t  # (rows, V + 1)
            torch.gather(block, 1, indices[start : start + rows], out=gathered[start : start + rows])
        ctx.save_for_backward(user_embeddings, item_embeddings, indices)
        ctx.rows = rows
        ctx.compute_dtype = first.dtype
        return gathered

    @staticmethod
    def backward(ctx, grad_scores: torch.Tensor):
        user_embeddings, item_embeddings, indices = ctx.saved_tensors
        dtype, rows = ctx.compute_dtype, ctx.rows
        users, items = user_embeddings.to(dtype), item_embeddings.to(dtype)
        need_users, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_users = torch.empty_like(users) if need_users else None  # (P, d)
        # Item gradients are summed over the blocks in the item table's own precision (float32 under autocast).
        grad_items_t = item_embeddings.new_zeros(item_embeddings.shape[::-1]) if need_items else None  # (d, V + 1)
        # Scattered in at least float32 (bf16 `scatter_add_` converts the whole block to float32 and back on CPU),
        # then cast once to the matmuls' dtype.
        grad_scores = grad_scores.to(torch.promote_types(dtype, torch.float32))  # (P, K)
        buffer = grad_scores.new_empty(min(rows, users.shape[0]), items.shape[0])  # (rows, V + 1)
        cast_buffer = None if dtype == buffer.dtype else buffer.to(dtype)  # (rows, V + 1)
        for start in range(0, users.shape[0], rows):
            stop = min(start + rows, users.shape[0])
            block = buffer[: stop - start].zero_().scatter_add_(1, indices[start:stop], grad_scores[start:stop])
            if cast_buffer is not None:
                block = cast_buffer[: stop - start].copy_(block)
            _accumulate_block_gradients(block, users[start:stop], items,
                                        grad_users[start:stop] if need_users else None, grad_items_t)
        return (
            None if grad_users is None else grad_users.to(user_embeddings.dtype),
            None if grad_items_t is None else grad_items_t.T.contiguous(),
            None,
        )


def gathered_item_scores(
    user_embeddings: torch.Tensor, item_embeddings: torch.Tensor, indices: torch.Tensor
) -> torch.Tensor:
    """Dot products of each position's user vector with K chosen items, from the full score matrix's matmul.

    Args:
        user_embeddings: (P, d) user vectors.
        item_embeddings: (V + 1, d) item table.
        indices: (P, K) item indices per position.

    Returns:
        (P, K) scores, equal to `(user_embeddings @ item_embeddings.T).gather(1, indices)`; on CPU computed in
        cache-sized blocks of rows.
    """
    if torch.compiler.is_compiling():  # the graph compiler fuses the plain expression itself
        return (user_embeddings @ item_embeddings.T).gather(1, indices)
    return _GatheredItemScores.apply(user_embeddings, item_embeddings, indices)


def _float32_block_scores(users: torch.Tensor, items_t: torch.Tensor, temperature: float) -> torch.Tensor:
    """(rows, d) @ (d, V + 1) in the inputs' dtype -> float32 scores / temperature, column 0 (padding) -inf."""
    return _divide_and_mask((users @ items_t).float(), temperature)  # no copy when the matmul ran in float32


class _CatalogueLabelLogProbs(torch.autograd.Function):
    """log softmax(u · Iᵀ / τ)[y] over the catalogue (column 0 excluded), a block of rows at a time.

    The forward keeps only each row's log-sum-exp; the backward scores each block again (one matmul more than
    autograd's, none of the (P, V + 1) memory traffic) and turns it into the gradient in place:
    d log p_y / d s = onehot(y) − softmax(s). The matmuls run in `compute_dtype` (the inputs are cast to it once);
    everything else (division by τ, log-sum-exp, softmax, the item gradient's sum over blocks) in float32.
    """

    @staticmethod
    def forward(ctx, users, items, labels, temperature: float, compute_dtype: torch.dtype):
        num_positions = users.shape[0]
        rows = _score_block_rows(num_positions, items.shape[0], users.device)
        users_c, items_t = users.to(compute_dtype), items.T.to(compute_dtype)  # (P, d), (d, V + 1)
        log_probs, log_normalisers = users.new_empty(num_positions), users.new_empty(num_positions)  # (P,), (P,)
        for start in range(0, num_positions, rows):
            stop = min(start + rows, num_positions)
            scores = _float32_block_scores(users_c[start:stop], items_t, temperature)  # (rows, V + 1)
            torch.logsumexp(scores, dim=1, out=log_normalisers[start:stop])
            log_probs[start:stop] = scores.gather(1, labels[start:stop, None])[:, 0] - log_normalisers[start:stop]
        ctx.save_for_backward(users, items, labels, log_normalisers)
        ctx.temperature, ctx.rows, ctx.compute_dtype = temperature, rows, compute_dtype
        return log_probs

    @staticmethod
    def backward(ctx, grad_log_probs: torch.Tensor):
        users, items, labels, log_normalisers = ctx.saved_tensors
        temperature, rows, dtype = ctx.temperature, ctx.rows, ctx.compute_dtype
        users_c, items_c = users.to(dtype), items.to(dtype)  # (P, d), (V + 1, d)
        items_t = items_c.T
        need_users, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_users = torch.empty_like(users_c) if need_users else None  # (P, d)
        grad_items_t = items.new_zeros(items.shape[::-1]) if need_items else None  # (d, V + 1), float32
        grad_scores_scale = grad_log_probs / temperature  # (P,): the chain rule through s = u · i / τ
        for start in range(0, users.shape[0], rows):
            stop = min(start + rows, users.shape[0])
            block_scale = grad_scores_scale[start:stop, None]  # (rows, 1)
            scores = _float32_block_scores(users_c[start:stop], items_t, temperature)  # (rows, V + 1)
            grad_scores = scores.sub_(log_normalisers[start:stop, None]).exp_().mul_(-block_scale)  # −g·softmax/τ
            grad_scores.scatter_add_(1, labels[start:stop, None], block_scale)  # + g/τ at the label
            _accumulate_block_gradients(grad_scores.to(dtype), users_c[start:stop], items_c,
                                        grad_users[start:stop] if need_users else None, grad_items_t)
        return (None if grad_users is None else grad_users.to(users.dtype),
                None if grad_items_t is None else grad_items_t.T.contiguous(), None, None, None)


def catalogue_label_log_probs(
    user_embeddings: torch.Tensor, item_embeddings: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """log π(y | x) of one item per position under the full-catalogue softmax, as float32.

    Equal to `log_softmax(user_embeddings @ item_embeddings.T / temperature)` (column 0 set to −inf first) at
    `labels`, without the (P, V + 1) matrix: on CPU the scores are made and used in cache-sized blocks of rows.
    Under autocast the score matmuls run in its dtype (bf16), as the pretraining loss's do, and the rest in float32:
    this is a training loss (SFT, reward-weighted BC, A-SFT), and with its four matmuls per block in float32 their
    epochs took 2.3-2.7x pretraining's on a CPU with bf16 (1.3-1.6x with bf16 matmuls, same test metrics over three
    seeds). The log-probabilities that enter ratios and penalties (DPO, IPO, PPO, CQL) come from the float32 scores
    of `item_logits_float32` instead.

    Args:
        user_embeddings: (P, d) normalised user vectors.
        item_embeddings: (V + 1, d) normalised item table.
        labels: (P,) item indices in 1..V.
        temperature: scores are cosine / temperature.

    Returns:
        (P,) float32 log-probabilities.
    """
    device_type = user_embeddings.device.type
    autocast = torch.is_autocast_enabled(device_type)
    compute_dtype = torch.get_autocast_dtype(device_type) if autocast else torch.float32
    with torch.autocast(device_type=device_type, enabled=False):
        users, items = user_embeddings.float(), item_embeddings.float()
        if torch.compiler.is_compiling():  # the graph compiler fuses the plain ops itself
            scores = _float32_block_scores(users.to(compute_dtype), items.T.to(compute_dtype), temperature)
            return torch.log_softmax(scores, dim=-1).gather(1, labels[:, None])[:, 0]
        return _CatalogueLabelLogProbs.apply(users, items, labels, temperature, compute_dtype)


def full_softmax_loss(
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the next item over the whole catalogue.

    Args:
        user_embeddings: (P, d) normalised user vectors of the supervised positions.
        item_embeddings: (V + 1, d) normalised item table; row 0 (padding) is never a class.
        labels: (P,) target item indices in 1..V.
        temperature: scores are cosine / temperature.
        weights: optional (P,) per-position weights; the loss is then sum(w * nll) / P.

    Returns:
        Scalar mean negative log-likelihood.
    """
    nll = -catalogue_label_log_probs(user_embeddings, item_embeddings, labels, temperature)  # (P,)
    if weights is not None:
        nll = nll * weights
    return nll.mean()


def sampled_softmax_loss(
    user_embeddings: torch.Tensor,
    item_embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    num_negatives: int,
    generator: torch.Generator | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sampled softmax of the HSTU reference: the positive against R uniform negatives per position.

    Negatives are drawn uniformly with replacement from items 1..V, independently per position (the
    reference's "local" sampler); a negative equal to the positive gets logit -5e4. No logQ correction.

    Args:
        user_embeddings: (P, d) normalised user vectors of the supervised positions.
        item_embeddings: (V + 1, d) normalised item table.
        labels: (P,) target item indices in 1..V.
        temperature: scores are cosine / temperature.
        num_negatives: R.
        generator: optional RNG for the negatives (defaults to torch's global RNG).
        weights: optional (P,) per-position weights.

    Returns:
        Scalar mean of -log softmax([pos, neg_1..R])[0].
    """
    num_positions = labels.shape[0]
    num_items = item_embeddings.shape[0] - 1
    # No `generator=None` keyword: torch.compile cannot trace randint's generator overload with a dynamic P.
    rng = {} if generator is None else {"generator": generator}
    negatives = torch.randint(1, num_items + 1, (num_positions, num_negatives), device=labels.device, **rng)  # (P, R)
    if num_items + 1 <= FULL_LOGITS_MAX_ITEMS:
        candidates = torch.cat([labels[:, None], negatives], dim=1)  # (P, 1 + R): the positive first
        logits = gathered_item_scores(user_embeddings, item_embeddings, candidates)  # (P, 1 + R)
    else:
        positive_logits = (user_embeddings * item_embeddings[labels]).sum(-1, keepdim=True)  # (P, 1)
        negative_logits = torch.einsum("pd,prd->pr", user_embeddings, item_embeddings[negatives])  # (P, R)
        logits = torch.cat([positive_logits, negative_logits], dim=1)  # (P, 1 + R)
    logits = logits.float() / temperature  # (P, 1 + R)
    logits[:, 1:] = logits[:, 1:].masked_fill(negatives == labels[:, None], MASKED_NEGATIVE_LOGIT)
    nll = -F.log_softmax(logits, dim=-1)[:, 0]  # (P,)
    if weights is not None:
        nll = nll * weights
    return nll.mean()


__all__ = [
    "catalogue_label_log_probs",
    "full_softmax_loss",
    "gathered_item_scores",
    "masked_catalogue_scores",
    "sampled_softmax_loss",
    "MASKED_NEGATIVE_LOGIT",
    "FULL_LOGITS_MAX_ITEMS",
]
