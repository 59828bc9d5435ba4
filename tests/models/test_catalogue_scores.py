"""`item_logits`: the catalogue scores' custom backward equals autograd's through the plain three ops."""

import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction


def _plain(users, items, temperature):
    scores = users @ items.T / temperature
    scores[..., 0] = float("-inf")
    return scores


@pytest.mark.parametrize("temperature", [1.0, 0.05])
@pytest.mark.parametrize("shape", [(7,), (5, 7), (2, 3, 7)])
def test_scores_and_gradients_equal_the_plain_ops(temperature, shape):
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=9, hidden_size=8, attention_dim=8, linear_dim=8,
                                                 max_seq_len=10, max_position_embeddings=12)).double()
    g = torch.Generator().manual_seed(0)
    users = torch.randn(*shape[:-1], 8, generator=g, dtype=torch.float64)
    items = torch.randn(10, 8, generator=g, dtype=torch.float64)
    # What a consumer of the scores sends back: finite everywhere except the padding column, which gets a value
    # too (autograd's version drops it; so must this one).
    upstream = torch.randn(*shape[:-1], 10, generator=g, dtype=torch.float64)
    results = []
    for fn in (lambda u, i: model.item_logits(u, i, temperature=temperature), lambda u, i: _plain(u, i, temperature)):
        u, i = users.clone().requires_grad_(), items.clone().requires_grad_()
        scores = fn(u, i)
        scores.backward(upstream)
        results.append((scores.detach(), u.grad, i.grad))
    for mine, plain in zip(*results):
        torch.testing.assert_close(mine, plain, rtol=1e-12, atol=1e-12)
    assert torch.isneginf(results[0][0][..., 0]).all()
    assert results[0][2][0].abs().max() == 0  # the padding row of the table gets no gradient


def test_bf16_autocast_scores_and_float32_gradients():
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=9, hidden_size=8, attention_dim=8, linear_dim=8,
                                                 max_seq_len=10, max_position_embeddings=12))
    users, items = torch.randn(4, 8, requires_grad=True), torch.randn(10, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores = model.item_logits(users, items, temperature=0.5)
        plain = _plain(users, items, 0.5)
    assert scores.dtype == plain.dtype == torch.bfloat16
    torch.testing.assert_close(scores, plain)
    scores[:, 1:].float().sum().backward()
    assert users.grad.dtype == torch.float32 and items.grad.dtype == torch.float32
