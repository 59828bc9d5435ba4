import math

import pytest
import torch
import torch.nn.functional as F
from hstu_helpers import batch
from hstu_helpers import tiny_config as base_tiny_config

from hf_genrec import (
    AutoModelForRewardModeling,
    HSTUConfig,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
)


def tiny_config(**overrides) -> HSTUConfig:
    return base_tiny_config(**{"reward_head_hidden_size": 8, **overrides})


def constant_heads(model: HSTUForRewardModeling, reward: float, value: float) -> None:
    """Make the heads ignore their input: reward head -> `reward`, value head -> `value` everywhere."""
    with torch.no_grad():
        for head, constant in ((model.reward_head, reward), (model.value_head, value)):
            head.out_proj.weight.zero_()
            head.out_proj.bias.fill_(constant)


# A hand-built batch: 2 histories of 3 positions; position (0, 2) and row 1 after position 0 are padding.
ITEM_IDS = torch.tensor([[1, 2, 3], [4, 0, 0]])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
LABELS = torch.tensor([[2, 3, 0], [5, 0, 0]])
# 99 sits on positions without a label: it must not enter the loss.
LABEL_RATINGS = torch.tensor([[4.0, 2.0, 99.0], [5.0, 99.0, 99.0]])


def test_reward_loss_on_hand_built_batch():
    torch.manual_seed(0)
    model = HSTUForRewardModeling(tiny_config(value_loss_weight=0.5)).eval()
    constant_heads(model, reward=3.0, value=3.5)
    out = model(ITEM_IDS, MASK, labels=LABELS, label_ratings=LABEL_RATINGS)
    # Labelled targets 4, 2, 5. Reward 3: errors 1, 1, 2 -> MSE 6/3. Value 3.5: 0.25 + 2.25 + 2.25 = 4.75 -> /3.
    assert out.reward_loss.item() == pytest.approx(2.0)
    assert out.value_loss.item() == pytest.approx(4.75 / 3)
    assert out.loss.item() == pytest.approx(2.0 + 0.5 * 4.75 / 3)
    assert out.next_item_loss is None
    assert out.rewards.shape == out.values.shape == (2, 3)

    huber = HSTUForRewardModeling(tiny_config(reward_loss_type="huber", huber_delta=1.0)).eval()
    constant_heads(huber, reward=3.0, value=3.5)
    out = huber(ITEM_IDS, MASK, labels=LABELS, label_ratings=LABEL_RATINGS)
    # Huber(delta=1): |e| = 1 -> 0.5, |e| = 2 -> 2 - 0.5 = 1.5; the value head stays MSE.
    assert out.reward_loss.item() == pytest.approx((0.5 + 0.5 + 1.5) / 3)
    assert out.value_loss.item() == pytest.approx(4.75 / 3)


def test_co_training_adds_the_weighted_next_item_loss():
    torch.manual_seed(1)
    model = HSTUForRewardModeling(tiny_config(next_item_loss_weight=0.25, loss_type="full_softmax")).eval()
    out = model(ITEM_IDS, MASK, labels=LABELS, label_ratings=LABEL_RATINGS)
    user = F.normalize(model.model(ITEM_IDS, MASK).last_hidden_state, dim=-1, eps=1e-6)
    supervised = LABELS > 0
    logits = user[supervised] @ F.normalize(model.model.item_embeddings.weight, dim=-1).T / 0.05
    logits[:, 0] = float("-inf")
    expected = F.cross_entropy(logits, LABELS[supervised])
    torch.testing.assert_close(out.next_item_loss, expected)
    torch.testing.assert_close(out.loss, out.reward_loss + out.value_loss + 0.25 * expected)


def test_reward_head_formula():
    torch.manual_seed(2)
    model = HSTUForRewardModeling(tiny_config()).eval()
    for p in (*model.reward_head.parameters(), *model.value_head.parameters()):
        torch.nn.init.normal_(p, std=0.3)
    out = model(ITEM_IDS, MASK, labels=LABELS)
    d = model.config.hidden_size
    u = F.normalize(out.last_hidden_state[0, 1], dim=-1) * math.sqrt(d)  # history up to position 1
    e = F.normalize(model.model.item_embeddings.weight[3], dim=-1) * math.sqrt(d)  # the next item, 3
    head = model.reward_head
    expected = head.out_proj(F.silu(head.dense(torch.cat([u, e, u * e])))).squeeze()
    torch.testing.assert_close(out.rewards[0, 1], expected)
    value = model.value_head.out_proj(F.silu(model.value_head.dense(u))).squeeze()
    torch.testing.assert_close(out.values[0, 1], value)


def test_nan_and_missing_rewards_are_clear_errors():
    model = HSTUForRewardModeling(tiny_config())
    bad = LABEL_RATINGS.clone()
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="label_ratings holds 1 NaN"):
        model(ITEM_IDS, MASK, labels=LABELS, label_ratings=bad)
    bad[0, 1] = 3.0
    bad[1, 1] = float("nan")  # on a padding position: ignored
    assert torch.isfinite(model(ITEM_IDS, MASK, labels=LABELS, label_ratings=bad).loss)
    with pytest.raises(ValueError, match="without labels"):
        model(ITEM_IDS, MASK, label_ratings=LABEL_RATINGS)
    with pytest.raises(ValueError, match=r"candidate_item_ids must hold item indices in 0\.\.40"):
        model.score_candidates(ITEM_IDS, MASK, candidate_item_ids=torch.tensor([[41], [1]]))


def test_batched_candidate_scoring_equals_one_at_a_time():
    torch.manual_seed(3)
    model = HSTUForRewardModeling(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    candidates = torch.randint(1, 41, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        batched = model.score_candidates(item_ids, mask, timestamps, None, candidates)  # (3, 7)
        assert batched.shape == (3, 7)
        for b in range(3):
            length = int(mask[b].sum())
            for c in range(7):
                single = model.score_candidates(
                    item_ids[b : b + 1, :length], mask[b : b + 1, :length], timestamps[b : b + 1, :length], None,
                    candidates[b : b + 1, c : c + 1],
                )
                torch.testing.assert_close(single[0, 0], batched[b, c], rtol=1e-5, atol=1e-6)
        # The same number as the forward pass's reward at the last position with that label.
        labels = torch.zeros_like(item_ids)
        last = mask.sum(1) - 1
        labels[torch.arange(3), last] = candidates[:, 2]
        rewards = model(item_ids, mask, timestamps, labels=labels).rewards
        torch.testing.assert_close(
            rewards[torch.arange(3), last].clamp(1, 5), batched[:, 2], rtol=1e-5, atol=1e-6
        )


def test_positions_values_and_clamping():
    torch.manual_seed(4)
    model = HSTUForRewardModeling(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    labels = torch.roll(item_ids, -1, 1) * mask
    with torch.no_grad():
        rewards = model.score_positions(item_ids, mask, timestamps, None, labels)
        assert rewards.shape == (3, 10) and (rewards[labels == 0] == 0).all()
        values = model.value_positions(item_ids, mask, timestamps)
        assert (values[mask == 0] == 0).all()
        last = mask.sum(1) - 1
        torch.testing.assert_close(model.value_last(item_ids, mask, timestamps), values[torch.arange(3), last])
        constant_heads(model, reward=9.0, value=-4.0)  # outside the 1-5 scale
        assert (model.score_positions(item_ids, mask, timestamps, None, labels)[labels > 0] == 5.0).all()
        assert (model.value_last(item_ids, mask, timestamps) == 1.0).all()
        unclamped = model.score_candidates(item_ids, mask, timestamps, None, labels[:, :1], clamp=False)
        assert torch.allclose(unclamped, torch.full_like(unclamped, 9.0))


def test_auto_class_loads_a_reward_checkpoint(tmp_path):
    torch.manual_seed(5)
    model = HSTUForRewardModeling(tiny_config(reward_min=0.5, reward_max=10.0)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForRewardModeling.from_pretrained(tmp_path).eval()
    assert type(loaded) is HSTUForRewardModeling
    assert loaded.config.reward_max == 10.0 and loaded.config.reward_head_hidden_size == 8
    item_ids, mask, timestamps = batch()
    candidates = torch.randint(1, 41, (3, 4))
    with torch.no_grad():
        assert torch.equal(
            loaded.score_candidates(item_ids, mask, timestamps, None, candidates),
            model.score_candidates(item_ids, mask, timestamps, None, candidates),
        )


def test_backbone_loads_from_a_pretrained_next_item_checkpoint(tmp_path):
    torch.manual_seed(6)
    pretrained = HSTUForNextItemPrediction(tiny_config())
    pretrained.save_pretrained(tmp_path)
    model = HSTUForRewardModeling.from_pretrained(tmp_path)
    for name, parameter in pretrained.model.state_dict().items():
        assert torch.equal(model.model.state_dict()[name], parameter), name
    # The heads are new: default init with the output bias at the middle of the rating scale.
    assert model.reward_head.out_proj.bias.item() == 3.0 and model.value_head.out_proj.bias.item() == 3.0
    assert 0.01 < model.reward_head.dense.weight.std().item() < 0.03
    assert type(AutoModelForRewardModeling.from_pretrained(tmp_path)) is HSTUForRewardModeling

    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.model.parameters())
    assert all(p.requires_grad for p in model.reward_head.parameters())
    assert all(p.requires_grad for p in model.value_head.parameters())


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"reward_min": 5.0, "reward_max": 1.0}, "reward_min"),
        ({"reward_loss_type": "l1"}, "reward_loss_type must be one of"),
        ({"reward_head_hidden_size": 0}, "reward_head_hidden_size"),
        ({"next_item_loss_weight": -1.0}, "next_item_loss_weight"),
        ({"huber_delta": 0.0}, "huber_delta"),
    ],
)
def test_reward_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**overrides)
