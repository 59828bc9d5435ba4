"""The blocked catalogue scores (`gathered_item_scores`, `catalogue_label_log_probs`) equal the plain formulas and
their gradients."""

import pytest
import torch
import torch.nn.functional as F

from hf_genrec.losses.next_item import (
    MIN_SCORE_BLOCK_ROWS,
    catalogue_label_log_probs,
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


@pytest.mark.parametrize("num_positions", [1, MIN_SCORE_BLOCK_ROWS + 5, 3 * MIN_SCORE_BLOCK_ROWS])
@pytest.mark.parametrize("freeze_items", [False, True])
def test_catalogue_label_log_probs_equal_the_log_softmax(num_positions, freeze_items):
    """float32 blocks against the float64 log-softmax of the same normalised vectors (as the model passes them)."""
    users, items, _ = _inputs(num_positions, num_items=50)
    users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
    labels = torch.randint(1, 51, (num_positions,), generator=torch.Generator().manual_seed(2))
    upstream = torch.randn(num_positions, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def exact(u, i):
        scores = u @ i.T / 0.05
        scores[:, 0] = float("-inf")
        return torch.log_softmax(scores, dim=-1).gather(1, labels[:, None])[:, 0]

    results = []
    for blocked in (True, False):
        u, i = users.clone().requires_grad_(), items.clone().requires_grad_(not freeze_items)
        log_probs = catalogue_label_log_probs(u.float(), i.float(), labels, 0.05) if blocked else exact(u, i)
        assert log_probs.dtype == (torch.float32 if blocked else torch.float64)
        (log_probs.double() * upstream).sum().backward()
        results.append((log_probs.detach().double(), u.grad, i.grad))
    for blocked, reference in zip(*results):
        if reference is None:
            assert blocked is None
        else:
            torch.testing.assert_close(blocked, reference, rtol=1e-4, atol=1e-4)


def test_the_model_returns_label_log_probs_equal_to_its_logits():
    from hf_genrec import HSTUConfig, HSTUForNextItemPrediction

    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=30, hidden_size=8, attention_dim=8, linear_dim=8,
                                                 max_seq_len=10, max_position_embeddings=12)).eval()
    item_ids = torch.randint(1, 31, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, :2] = False
    labels = torch.randint(1, 31, (int(mask.sum()),))
    logits = model(item_ids, logits_mask=mask).logits
    expected = torch.log_softmax(logits, dim=-1).gather(1, labels[:, None])[:, 0]
    outputs = model(item_ids, logits_mask=mask, logits_labels=labels)
    assert outputs.logits is None
    torch.testing.assert_close(outputs.label_log_probs, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="logits_labels needs logits_mask"):
        model(item_ids, logits_labels=labels)


def test_bf16_item_gradients_are_summed_over_blocks_in_float32(monkeypatch):
    """Under bf16 autocast each block's item-gradient product is bf16, but their sum over the 60 blocks is kept in
    float32: rounding the running sum to bf16 once per block (as a bf16 accumulator would) puts the gradient 8.8e-3
    (relative) off the exact sum of the same bf16 inputs; summed in float32 it is within 2e-3."""
    import hf_genrec.losses.next_item as next_item

    monkeypatch.setattr(next_item, "SCORE_BLOCK_ELEMENTS", 1)  # blocks of MIN_SCORE_BLOCK_ROWS rows
    g = torch.Generator().manual_seed(0)
    num_positions, num_items = 60 * MIN_SCORE_BLOCK_ROWS, 30
    users, items = torch.randn(num_positions, 8, generator=g), torch.randn(num_items + 1, 8, generator=g)
    indices = torch.randint(1, num_items + 1, (num_positions, 6), generator=g)
    upstream = torch.randn(num_positions, 6, generator=g).bfloat16()
    items.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = gathered_item_scores(users, items, indices)
    scores.backward(upstream)
    grad_scores = torch.zeros(num_positions, num_items + 1, dtype=torch.float64)
    grad_scores.scatter_add_(1, indices, upstream.double())
    exact = grad_scores.T @ users.bfloat16().double()  # (V + 1, d)
    assert items.grad.dtype == torch.float32
    assert ((items.grad.double() - exact).norm() / exact.norm()).item() < 4e-3


def test_catalogue_label_log_probs_under_autocast_run_their_matmuls_in_bf16():
    """Under bf16 autocast: the log-softmax of the bf16 matmul's scores, taken in float32, over several blocks;
    gradients as autograd gives them for that expression, the item gradient summed in float32."""
    num_items = 16383  # 64-row blocks: 4 of them
    g = torch.Generator().manual_seed(4)
    users = F.normalize(torch.randn(3 * MIN_SCORE_BLOCK_ROWS + 5, 16, generator=g), dim=-1)
    items = F.normalize(torch.randn(num_items + 1, 16, generator=g), dim=-1)
    labels = torch.randint(1, num_items + 1, (users.shape[0],), generator=g)
    upstream = torch.randn(users.shape[0], generator=g)

    def bf16_matmul_reference(u, i):
        scores = (u.bfloat16() @ i.bfloat16().T).float() / 0.05
        scores[:, 0] = float("-inf")
        return torch.log_softmax(scores, dim=-1).gather(1, labels[:, None])[:, 0]

    results = []
    for blocked in (True, False):
        u, i = users.clone().requires_grad_(), items.clone().requires_grad_()
        if blocked:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                log_probs = catalogue_label_log_probs(u, i, labels, 0.05)
        else:
            log_probs = bf16_matmul_reference(u, i)
        assert log_probs.dtype == torch.float32
        (log_probs * upstream).sum().backward()
        assert u.grad.dtype == i.grad.dtype == torch.float32
        results.append((log_probs.detach(), u.grad, i.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    for blocked, reference in zip(results[0][1:], results[1][1:]):
        torch.testing.assert_close(blocked, reference, rtol=2e-2, atol=2e-2 * reference.abs().max().item())
    # The bf16 scores are what changed: the float32 path differs from them by more than the tolerance above.
    float32 = catalogue_label_log_probs(users, items, labels, 0.05)
    assert (float32 - results[0][0]).abs().max() > 1e-3
    assert (float32 - results[0][0]).abs().max() < 0.1  # cosines rounded to bf16, divided by tau = 0.05
