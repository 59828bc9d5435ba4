"""`gathered_item_scores`: the blocked sampled-softmax scores equal the plain `(U @ Iᵀ).gather` and its gradients."""

import pytest
import torch

from hf_genrec.losses.next_item import (
    MIN_SCORE_BLOCK_ROWS,
    gathered_item_scores,
    sampled_softmax_loss,
)


def _plain(users: torch.Tensor, items: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return (users @ items.T).gather(1, indices)


def _inputs(num_positions: int, num_items: int, dim: int = 8, k: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(num_positions, dim, generator=g, dtype=torch.float64)
    items = torch.randn(num_items + 1, dim, generator=g, dtype=torch.float64)
    indices = torch.randint(0, num_items + 1, (num_positions, k), generator=g)
    return users, items, indices


@pytest.mark.parametrize("num_positions", [1, MIN_SCORE_BLOCK_ROWS - 1, 3 * MIN_SCORE_BLOCK_ROWS + 7])
def test_scores_and_gradients_equal_the_plain_expression(num_positions):
    users, items, indices = _inputs(num_positions, num_items=40)
    # Repeated indices in a row (the positive drawn again as a negative) must add their gradients.
    indices[:, 1] = indices[:, 0]
    upstream = torch.randn(num_positions, indices.shape[1], dtype=torch.float64)
    grads = []
    for fn in (gathered_item_scores, _plain):
        u, i = users.clone().requires_grad_(), items.clone().requires_grad_()
        scores = fn(u, i, indices)
        (scores * upstream).sum().backward()
        grads.append((scores.detach(), u.grad, i.grad))
    for blocked, plain in zip(grads[0], grads[1]):
        torch.testing.assert_close(blocked, plain, rtol=1e-12, atol=1e-12)


def test_a_frozen_item_table_and_an_empty_batch():
    users, items, indices = _inputs(10, num_items=20)
    grads = []
    for fn in (gathered_item_scores, _plain):
        u = users.clone().requires_grad_()
        fn(u, items, indices).sum().backward()
        grads.append(u.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    users = torch.zeros(0, 8, requires_grad=True)
    empty = gathered_item_scores(users, items.float(), indices[:0])
    assert empty.shape == (0, 5)
    empty.sum().backward()
    assert users.grad.shape == (0, 8)


def test_blocked_sampled_softmax_trains_like_the_plain_one():
    """The loss on a batch larger than one block: same value and gradients as the unblocked formula."""
    torch.manual_seed(0)
    num_positions, num_items, dim = 2 * MIN_SCORE_BLOCK_ROWS + 3, 4000, 16
    users = torch.nn.functional.normalize(torch.randn(num_positions, dim), dim=-1)
    items = torch.nn.functional.normalize(torch.randn(num_items + 1, dim), dim=-1)
    labels = torch.randint(1, num_items + 1, (num_positions,))
    results = []
    for blocked in (True, False):
        u, i = users.clone().requires_grad_(), items.clone().requires_grad_()
        generator = torch.Generator().manual_seed(1)
        if blocked:
            loss = sampled_softmax_loss(u, i, labels, 0.05, 32, generator=generator)
        else:  # the same negatives, scored by the plain expression
            negatives = torch.randint(1, num_items + 1, (num_positions, 32), generator=generator)
            logits = _plain(u, i, torch.cat([labels[:, None], negatives], 1)).float() / 0.05
            logits[:, 1:] = logits[:, 1:].masked_fill(negatives == labels[:, None], -5e4)
            loss = -torch.log_softmax(logits, -1)[:, 0].mean()
        loss.backward()
        results.append((loss.detach(), u.grad, i.grad))
    for blocked, plain in zip(*results):
        torch.testing.assert_close(blocked, plain, rtol=1e-5, atol=1e-7)


def test_autocast_gives_the_plain_expressions_dtype():
    users, items, indices = _inputs(70, num_items=30)
    users, items = users.float().requires_grad_(), items.float().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        blocked, plain = gathered_item_scores(users, items, indices), _plain(users, items, indices)
    assert blocked.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(blocked, plain)
    blocked.float().sum().backward()
    assert users.grad.dtype == torch.float32 and items.grad.dtype == torch.float32
