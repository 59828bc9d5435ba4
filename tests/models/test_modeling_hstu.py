import math

import pytest
import torch
import torch.nn.functional as F
from hstu_helpers import batch, tiny_config
from transformers import AutoConfig, AutoModel

from hf_genrec import AutoModelForNextItemPrediction, HSTUConfig, HSTUForNextItemPrediction, HSTUModel
from hf_genrec.data.history import query_timestamps
from hf_genrec.losses.next_item import MASKED_NEGATIVE_LOGIT, full_softmax_loss, sampled_softmax_loss
from hf_genrec.models.hstu.modeling_hstu import HSTULayer, time_bucket_indices


def test_auto_classes_and_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()

    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, HSTUConfig) and config.model_type == "hstu"
    backbone = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(backbone, HSTUModel)
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, HSTUForNextItemPrediction)

    expected = model.score_next_items(item_ids, mask, timestamps)
    assert torch.equal(loaded.score_next_items(item_ids, mask, timestamps), expected)
    hidden = backbone(item_ids, mask, timestamps).last_hidden_state
    assert torch.equal(hidden, model.model(item_ids, mask, timestamps).last_hidden_state)


def reference_layer(layer: HSTULayer, x: torch.Tensor, timestamps: torch.Tensor, query_timestamps, config) -> torch.Tensor:
    """The HSTU layer written out loop by loop from the brief (section 2), for one sequence without padding."""
    n, d = x.shape
    h, dqk, dv, big_n = config.num_attention_heads, config.attention_dim, config.linear_dim, config.max_position_embeddings
    normed = (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)
    projected = F.silu(normed @ layer.uvqk.weight.T)
    u, v = projected[:, : h * dv], projected[:, h * dv : 2 * h * dv]
    q, k = projected[:, 2 * h * dv : 2 * h * dv + h * dqk], projected[:, 2 * h * dv + h * dqk :]
    out = torch.zeros(n, h * dv, dtype=x.dtype)
    for head in range(h):
        for i in range(n):
            for j in range(i + 1):  # causal, diagonal included
                dt = abs(int(query_timestamps[i]) - int(timestamps[j]))
                bucket = min(max(math.floor(math.log(max(dt, 1)) / 0.301), 0), 128)
                rab = layer.relative_bias.position_weights[big_n - 1 + j - i] + layer.relative_bias.time_weights[bucket]
                s = q[i, head * dqk : (head + 1) * dqk] @ k[j, head * dqk : (head + 1) * dqk] + rab
                out[i, head * dv : (head + 1) * dv] += F.silu(s) / big_n * v[j, head * dv : (head + 1) * dv]
    out = (out - out.mean(-1, keepdim=True)) / torch.sqrt(out.var(-1, unbiased=False, keepdim=True) + 1e-6)
    return x + (u * out) @ layer.o_proj.weight.T + layer.o_proj.bias


def test_layer_matches_hand_written_reference():
    torch.manual_seed(1)
    config = tiny_config(num_time_buckets=128)
    layer = HSTULayer(config).double()
    for p in layer.parameters():  # random, non-trivial values everywhere
        torch.nn.init.normal_(p, std=0.3)
    n = 7
    x = torch.randn(1, n, config.hidden_size, dtype=torch.float64)
    timestamps = torch.cumsum(torch.randint(1, 10**6, (1, n)), 1)
    query = query_timestamps(timestamps, torch.ones_like(timestamps))
    buckets = time_bucket_indices(timestamps, query, 128, 0.301)
    causal_scale = torch.ones(n, n, dtype=torch.float64).tril() / config.max_position_embeddings
    got = layer(x, causal_scale, buckets)[0]
    expected = reference_layer(layer, x[0], timestamps[0], query[0], config)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_time_buckets_use_next_timestamp():
    timestamps = torch.tensor([[100, 200, 1200, 0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    query = query_timestamps(timestamps, mask)
    assert query.tolist() == [[200, 1200, 1200, 0]]  # last real position falls back to its own time
    buckets = time_bucket_indices(timestamps, query, 128, 0.301)
    # query 0 (t=200) vs key 0 (t=100): dt = 100 -> floor(ln 100 / 0.301) = 15
    assert buckets[0, 0, 0].item() == math.floor(math.log(100) / 0.301) == 15
    # dt = 0 -> ln(max(0, 1)) = 0 -> bucket 0
    assert buckets[0, 2, 2].item() == 0
    # huge dt is clamped to the last bucket
    far = time_bucket_indices(torch.tensor([[0]]), torch.tensor([[2**62]]), 128, 0.301)
    assert math.log(2**62) / 0.301 > 128 and far.item() == 128


def test_causal_and_padding_invariance():
    torch.manual_seed(2)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch(seq_len=10)
    out = model(item_ids, mask, timestamps).user_embeddings
    # Changing a later item does not change earlier positions.
    changed = item_ids.clone()
    changed[0, 8] = (changed[0, 8] % 40) + 1
    out_changed = model(changed, mask, timestamps).user_embeddings
    torch.testing.assert_close(out_changed[0, :8], out[0, :8])
    assert not torch.allclose(out_changed[0, 8], out[0, 8])
    # Extra right padding (a longer batch) leaves real positions unchanged: the 1/N normaliser is fixed.
    pad = torch.zeros(3, 3, dtype=torch.long)
    out_padded = model(torch.cat([item_ids, pad], 1), torch.cat([mask, pad], 1),
                       torch.cat([timestamps, pad], 1)).user_embeddings
    real = mask.bool()
    torch.testing.assert_close(out_padded[:, :10][real], out[real])


def test_timestamps_are_optional_and_change_the_output():
    torch.manual_seed(3)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    without = model.score_next_items(item_ids, mask)
    with_time = model.score_next_items(item_ids, mask, timestamps)
    assert without.shape == (3, 41)
    assert not torch.allclose(without[:, 1:], with_time[:, 1:])
    assert torch.isinf(without[:, 0]).all()


def test_input_longer_than_positions_is_a_clear_error():
    model = HSTUForNextItemPrediction(tiny_config())
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.ones(1, 16, dtype=torch.long))


def test_sampled_softmax_matches_hand_computation():
    torch.manual_seed(4)
    users = F.normalize(torch.randn(5, 8), dim=-1)
    items = F.normalize(torch.randn(11, 8), dim=-1)
    items[0] = 0
    labels = torch.tensor([1, 4, 4, 10, 2])
    temperature, r = 0.05, 6
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    loss = sampled_softmax_loss(users, items, labels, temperature, r, generator=g1)
    negatives = torch.randint(1, 11, (5, r), generator=g2)
    expected = []
    for p in range(5):
        pos = users[p] @ items[labels[p]] / temperature
        negs = [MASKED_NEGATIVE_LOGIT if negatives[p, j] == labels[p] else users[p] @ items[negatives[p, j]] / temperature
                for j in range(r)]
        logits = torch.stack([pos] + [torch.as_tensor(x) for x in negs])
        expected.append(-(pos - torch.logsumexp(logits, 0)))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_full_softmax_is_cross_entropy_without_padding_class():
    torch.manual_seed(5)
    users = F.normalize(torch.randn(4, 8), dim=-1)
    items = F.normalize(torch.randn(9, 8), dim=-1)
    labels = torch.tensor([1, 2, 8, 3])
    loss = full_softmax_loss(users, items, labels, 0.1)
    logits = users @ items[1:].T / 0.1
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels - 1))


def test_forward_loss_uses_only_labelled_positions_and_trains():
    torch.manual_seed(6)
    model = HSTUForNextItemPrediction(tiny_config(loss_type="full_softmax"))
    item_ids, mask, timestamps = batch()
    labels = torch.roll(item_ids, -1, 1) * mask
    labels[:, -1] = 0
    out = model(item_ids, mask, timestamps, labels=labels)
    manual = full_softmax_loss(out.user_embeddings[labels > 0], model.normalized_item_embeddings(), labels[labels > 0],
                               model.config.similarity_temperature)
    torch.testing.assert_close(out.loss, manual)
    out.loss.backward()
    assert model.model.layers[0].relative_bias.time_weights.grad.abs().sum() > 0
    assert model.model.item_embeddings.weight.grad[0].abs().sum() == 0  # padding row never learns


def test_recommend_excludes_history_and_respects_k():
    torch.manual_seed(7)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    rec = model.recommend(item_ids, mask, timestamps, k=5)
    assert rec.item_ids.shape == (3, 5)
    for row in range(3):
        seen = set(item_ids[row][mask[row].bool()].tolist())
        assert not seen & set(rec.item_ids[row].tolist())
        assert 0 not in rec.item_ids[row].tolist()
    scores = model.score_next_items(item_ids, mask, timestamps)
    scores.scatter_(1, item_ids, float("-inf"))
    assert torch.equal(rec.item_ids, scores.topk(5).indices)
    assert model.recommend(item_ids, mask, k=500).item_ids.shape == (3, 40)
    with pytest.raises(ValueError, match="k must be"):
        model.recommend(item_ids, mask, k=0)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("similarity_temperature", 0.0, "similarity_temperature"),
        ("num_attention_heads", 0, "num_attention_heads"),
        ("input_dropout", 1.5, "input_dropout"),
        ("loss_type", "bpr", "loss_type"),
        ("max_position_embeddings", 5, "max_position_embeddings"),
        ("num_negatives", 0, "num_negatives"),
    ],
)
def test_config_rejects_impossible_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_initialisation_follows_the_reference():
    torch.manual_seed(8)
    model = HSTUForNextItemPrediction(tiny_config(num_items=4000, hidden_size=32))
    items = model.model.item_embeddings.weight
    assert items[0].abs().sum() == 0
    assert 0.015 < items[1:].std().item() < 0.02  # normal(0.02) truncated at 2 std
    assert items[1:].abs().max().item() <= 0.04 + 1e-6
    layer = model.model.layers[0]
    assert 0.017 < layer.uvqk.weight.std().item() < 0.023
    assert 0.01 < layer.relative_bias.time_weights.std().item() < 0.04


def test_pickle_weights_are_refused(tmp_path):
    model = HSTUForNextItemPrediction(tiny_config())
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="pickle-based weights.*pytorch_model.bin"):
        HSTUForNextItemPrediction.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="never loads pickled"):
        AutoModelForNextItemPrediction.from_pretrained(tmp_path)
    with pytest.raises(OSError, match="safetensors"):
        AutoModel.from_pretrained(tmp_path)


def test_last_position_only_matches_the_full_forward():
    torch.manual_seed(9)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch(seq_len=10)
    full = model.model(item_ids, mask, timestamps).last_hidden_state  # (B, N, d)
    last = model.model(item_ids, mask, timestamps, last_position_only=True).last_hidden_state  # (B, 1, d)
    expected = full[torch.arange(3), mask.sum(1) - 1]
    torch.testing.assert_close(last[:, 0], expected, rtol=1e-5, atol=1e-6)


def test_query_positions_match_the_full_forward_rows():
    torch.manual_seed(9)
    model = HSTUForNextItemPrediction(tiny_config(num_hidden_layers=2)).eval()
    item_ids, mask, timestamps = batch(seq_len=10)
    full = model.model(item_ids, mask, timestamps).last_hidden_state  # (B, N, d)
    lengths = mask.sum(1)
    positions = torch.stack([lengths - 3, lengths - 1, torch.zeros_like(lengths), lengths - 1], dim=1).clamp(min=0)
    some = model.model(item_ids, mask, timestamps, query_positions=positions).last_hidden_state  # (B, 4, d)
    assert some.shape == (3, 4, full.shape[-1])
    torch.testing.assert_close(some, full[torch.arange(3)[:, None], positions], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="query_positions must be"):
        model.model(item_ids, mask, timestamps, query_positions=positions[0])
    with pytest.raises(ValueError, match=r"query_positions must lie in 0\.\.9"):
        model.model(item_ids, mask, timestamps, query_positions=positions + 10)
    with pytest.raises(ValueError, match="not both"):
        model.model(item_ids, mask, timestamps, last_position_only=True, query_positions=positions)


def test_recommend_in_chunks_equals_one_batch_and_rejects_empty_histories():
    torch.manual_seed(10)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    item_ids, mask, timestamps = batch(seed=3)
    whole = model.recommend(item_ids, mask, timestamps, k=7, chunk_size=512)
    chunked = model.recommend(item_ids, mask, timestamps, k=7, chunk_size=1)
    assert torch.equal(whole.item_ids, chunked.item_ids)
    torch.testing.assert_close(whole.scores, chunked.scores)
    empty = item_ids.clone()
    empty[1] = 0
    with pytest.raises(ValueError, match=r"rows \[1\] have an empty history"):
        model.recommend(empty, k=3)


def test_recommend_groups_by_length_without_changing_the_answer():
    # recommend() sorts rows by length and crops each chunk's trailing padding; the answer must be what the
    # uncropped batch scores give, in the caller's row order.
    torch.manual_seed(11)
    model = HSTUForNextItemPrediction(tiny_config()).eval()
    g = torch.Generator().manual_seed(5)
    lengths = torch.tensor([12, 1, 7, 3, 12, 5, 2, 9, 4, 11])
    mask = (torch.arange(14)[None] < lengths[:, None]).long()  # (10, 14), trailing padding beyond every row
    item_ids = torch.randint(1, 41, (10, 14), generator=g) * mask
    timestamps = (torch.cumsum(torch.randint(1, 200_000, (10, 14), generator=g), 1) + 10**9) * mask
    with torch.no_grad():
        scores = model.score_next_items(item_ids, mask, timestamps)  # (10, 41) on the full padded width
    scores.scatter_(1, item_ids, float("-inf"))
    expected_scores, expected_items = scores.topk(6, dim=-1)
    for chunk_size in (3, 512):
        rec = model.recommend(item_ids, mask, timestamps, k=6, chunk_size=chunk_size)
        assert torch.equal(rec.item_ids, expected_items)
        torch.testing.assert_close(rec.scores, expected_scores, rtol=1e-5, atol=1e-5)
