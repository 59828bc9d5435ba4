"""`hstu_pointwise_attention` works in place on its temporaries: values and gradients equal the plain formula."""

import pytest
import torch
import torch.nn.functional as F

from hf_genrec.models.hstu.modeling_hstu import hstu_pointwise_attention


def _plain(query, key, value, bias, causal_scale):
    scores = torch.einsum("bnhd,bmhd->bhnm", query, key)
    if bias is not None:
        scores = scores + bias[:, None]
    if causal_scale.dim() == 3:
        causal_scale = causal_scale[:, None]
    weights = F.silu(scores) * causal_scale
    out = torch.einsum("bhnm,bmhd->bnhd", weights, value)
    return out.reshape(out.shape[0], out.shape[1], -1)


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("last_query_only", [False, True])
def test_values_and_gradients_equal_the_out_of_place_formula(with_bias, last_query_only):
    g = torch.Generator().manual_seed(0)
    batch, length, heads, dim = 3, 7, 2, 4
    num_queries = 1 if last_query_only else length
    leaves = {
        "query": torch.randn(batch, num_queries, heads, dim, generator=g, dtype=torch.float64),
        "key": torch.randn(batch, length, heads, dim, generator=g, dtype=torch.float64),
        "value": torch.randn(batch, length, heads, dim, generator=g, dtype=torch.float64),
        "bias": torch.randn(batch, num_queries, length, generator=g, dtype=torch.float64) if with_bias else None,
    }
    mask = torch.ones(length, length, dtype=torch.float64).tril_() / length
    causal_scale = mask[torch.tensor([length - 1, 3, 5])][:, None] if last_query_only else mask
    upstream = torch.randn(batch, num_queries, heads * dim, generator=g, dtype=torch.float64)
    results = []
    for fn in (hstu_pointwise_attention, _plain):
        inputs = {k: None if v is None else v.clone().requires_grad_() for k, v in leaves.items()}
        out = fn(inputs["query"], inputs["key"], inputs["value"], inputs["bias"], causal_scale)
        (out * upstream).sum().backward()
        results.append([out.detach()] + [v.grad for v in inputs.values() if v is not None])
    for mine, plain in zip(*results):
        torch.testing.assert_close(mine, plain, rtol=1e-12, atol=1e-12)


def test_bf16_autocast_keeps_the_float32_sum_of_scores_and_bias():
    """Under bf16 autocast the bias (float32) must not be added into the bf16 scores in place."""
    g = torch.Generator().manual_seed(1)
    query, key, value = (torch.randn(2, 6, 1, 8, generator=g) for _ in range(3))
    bias = torch.randn(2, 6, 6, generator=g) * 100  # large: a bf16 sum would round it visibly
    causal_scale = torch.ones(6, 6).tril_() / 6
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mine = hstu_pointwise_attention(query, key, value.bfloat16(), bias, causal_scale)
        scores = torch.einsum("bnhd,bmhd->bhnm", query, key)  # bf16 under autocast
        plain = torch.einsum("bhnm,bmhd->bnhd", (F.silu(scores + bias[:, None]) * causal_scale).bfloat16(),
                             value.bfloat16()).reshape(2, 6, 8)
    torch.testing.assert_close(mine, plain, rtol=0, atol=0)
