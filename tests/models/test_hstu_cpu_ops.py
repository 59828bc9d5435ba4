"""The CPU fast paths of the HSTU model file are exact stand-ins: `HSTUDropout` for `nn.Dropout` (same
distribution, reproducible from the seed, also under gradient checkpointing) and `_GatherBias` for
`weight[indices]` (same values, same gradients)."""

import math

import torch
from hstu_helpers import batch, tiny_config

from hf_genrec import HSTUForNextItemPrediction
from hf_genrec.data.history import query_timestamps
from hf_genrec.models.hstu.modeling_hstu import HSTUDropout, _GatherBias


def test_dropout_keeps_one_minus_p_scales_the_rest_and_follows_the_seed():
    dropout = HSTUDropout(0.3)
    inputs = torch.rand(500, 1000, dtype=torch.float64) + 0.5
    inputs.requires_grad_()
    torch.manual_seed(0)
    outputs = dropout(inputs)
    kept = outputs != 0
    assert abs(kept.double().mean().item() - 0.7) < 4 * math.sqrt(0.7 * 0.3 / kept.numel())
    torch.testing.assert_close(outputs[kept], inputs[kept] / 0.7, rtol=1e-12, atol=0)
    # Rows and columns alike: the mask has no structure (a mask reused across a dimension would show here).
    assert (kept.double().mean(dim=0) - 0.7).abs().max() < 0.1 and (kept.double().mean(dim=1) - 0.7).abs().max() < 0.1
    outputs.sum().backward()
    torch.testing.assert_close(inputs.grad, kept.double() / 0.7, rtol=1e-12, atol=0)  # d out / d in = mask / (1 - p)
    torch.manual_seed(0)
    assert torch.equal(dropout(inputs), outputs)
    assert not torch.equal(dropout(inputs), outputs)  # the next call draws a new mask
    dropout.eval()
    assert torch.equal(dropout(inputs), inputs)


def test_dropout_keeps_a_bf16_input_bf16_and_p_zero_is_the_identity():
    inputs = torch.ones(64, 64, dtype=torch.bfloat16)
    outputs = HSTUDropout(0.2)(inputs)
    assert outputs.dtype == torch.bfloat16
    assert set(outputs.unique().tolist()) == {0.0, torch.tensor(1.25, dtype=torch.bfloat16).item()}
    assert torch.equal(HSTUDropout(0.0)(inputs), inputs)


def test_gradient_checkpointing_recomputes_the_same_dropout_masks():
    model = HSTUForNextItemPrediction(tiny_config(input_dropout=0.3, linear_dropout=0.3))
    model.train()
    item_ids, mask, timestamps = batch(seed=3)
    labels = torch.roll(item_ids, -1, dims=1) * mask
    queries = query_timestamps(timestamps, mask)
    gradients = []
    for checkpointing in (False, True):
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            assert all(layer.gradient_checkpointing for layer in model.model.layers)
        model.zero_grad()
        torch.manual_seed(11)
        model(item_ids, mask, timestamps, queries, labels=labels).loss.backward()
        gradients.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert gradients[0].keys() == gradients[1].keys()
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, rtol=1e-5, atol=1e-7, msg=name)


def test_gather_bias_equals_indexing_in_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(33, dtype=torch.float64, generator=generator)
    indices = torch.randint(0, 33, (4, 9, 9), generator=generator)
    indices[0, 0, :] = 32  # a repeated index must add up its gradients
    upstream = torch.randn(4, 9, 9, dtype=torch.float64, generator=generator)
    results = []
    for gather in (_GatherBias.apply, lambda table, index: table[index]):
        table = weight.clone().requires_grad_()
        values = gather(table, indices)
        (values * upstream).sum().backward()
        results.append((values.detach(), table.grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-12)
    # A bf16 table's gradient is summed in float32 and handed back in bf16.
    table = weight.bfloat16().requires_grad_()
    _GatherBias.apply(table, indices).backward(upstream.bfloat16())
    expected = torch.zeros(33, dtype=torch.float64).index_add_(0, indices.reshape(-1),
                                                               upstream.bfloat16().double().reshape(-1))
    assert table.grad.dtype == torch.bfloat16
    torch.testing.assert_close(table.grad.double(), expected, rtol=2**-8, atol=1e-6)
