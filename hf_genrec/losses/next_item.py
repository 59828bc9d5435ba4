"""Next-item losses of the generative recommender: sampled softmax (the HSTU reference) and full softmax.

Both take L2-normalised user vectors of the supervised positions and the L2-normalised item table, so
that scores are cosine / temperature as in the reference code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# The reference masks a sampled negative that equals the positive with this logit.
MASKED_NEGATIVE_LOGIT = -5e4
# Below this catalogue size, one (P, V) matmul followed by a gather is faster on CPU than gathering
# (P, R, d) negative embeddings, although it does more FLOPs (the gather is memory-bound).
FULL_LOGITS_MAX_ITEMS = 16384


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
    logits = user_embeddings @ item_embeddings.T / temperature  # (P, V + 1)
    logits[:, 0] = float("-inf")
    nll = F.cross_entropy(logits.float(), labels, reduction="none")  # (P,)
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
        all_logits = user_embeddings @ item_embeddings.T  # (P, V + 1)
        positive_logits = all_logits.gather(1, labels[:, None])  # (P, 1)
        negative_logits = all_logits.gather(1, negatives)  # (P, R)
    else:
        positive_logits = (user_embeddings * item_embeddings[labels]).sum(-1, keepdim=True)  # (P, 1)
        negative_logits = torch.einsum("pd,prd->pr", user_embeddings, item_embeddings[negatives])  # (P, R)
    logits = torch.cat([positive_logits, negative_logits], dim=1).float() / temperature  # (P, 1 + R)
    logits[:, 1:] = logits[:, 1:].masked_fill(negatives == labels[:, None], MASKED_NEGATIVE_LOGIT)
    nll = -F.log_softmax(logits, dim=-1)[:, 0]  # (P,)
    if weights is not None:
        nll = nll * weights
    return nll.mean()


__all__ = ["full_softmax_loss", "sampled_softmax_loss", "MASKED_NEGATIVE_LOGIT", "FULL_LOGITS_MAX_ITEMS"]
