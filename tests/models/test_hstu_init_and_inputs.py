"""Weight initialisation by module type, loaded weights left alone, and strict forward arguments."""

import pytest
import torch
from hstu_helpers import batch, tiny_config
from torch import nn

from hf_genrec import HSTUForNextItemPrediction, HSTUForRewardModeling, HSTUModel
from hf_genrec.data.history import History, query_timestamps
from hf_genrec.models.hstu import modeling_hstu

MODEL_CLASSES = [HSTUModel, HSTUForNextItemPrediction, HSTUForRewardModeling]


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_every_parameter_is_set_by_an_init_rule(model_class):
    # Poison every parameter, forget that the modules were initialised, and run transformers' initialisation
    # again: a parameter that no rule of `_init_weights` writes keeps its NaNs.
    model = model_class(tiny_config(reward_head_hidden_size=8))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    for module in model.modules():
        module._is_hf_initialized = False
    model.initialize_weights()
    for name, parameter in model.named_parameters():
        assert not parameter.isnan().any(), f"{name} is not initialised by any rule"
        if name.endswith("item_embeddings.weight"):
            assert parameter[0].abs().sum() == 0  # padding row


def test_a_module_without_an_init_rule_is_an_error(monkeypatch):
    class LayerWithGate(modeling_hstu.HSTULayer):
        def __init__(self, config):
            super().__init__(config)
            self.gate = nn.Linear(config.hidden_size, 1)  # a plain Linear: no rule says how to initialise it

    monkeypatch.setattr(modeling_hstu, "HSTULayer", LayerWithGate)
    with pytest.raises(TypeError, match=r"no initialisation rule for the Linear module 'layers\.0\.gate'"):
        HSTUModel(tiny_config())
    with pytest.raises(TypeError, match=r"Linear module 'layers\.0\.gate'"):  # raised while building the backbone
        HSTUForRewardModeling(tiny_config())


def test_a_head_module_without_an_init_rule_is_an_error(monkeypatch):
    class HeadWithSkip(modeling_hstu.HSTURegressionHead):
        def __init__(self, in_features, config):
            super().__init__(in_features, config)
            self.skip = nn.Linear(in_features, 1)

    monkeypatch.setattr(modeling_hstu, "HSTURegressionHead", HeadWithSkip)
    with pytest.raises(TypeError, match=r"no initialisation rule for the Linear module 'reward_head\.skip'"):
        HSTUForRewardModeling(tiny_config(reward_head_hidden_size=8))


def test_loaded_weights_are_never_reinitialised(tmp_path):
    torch.manual_seed(0)
    model = HSTUForRewardModeling(tiny_config(reward_head_hidden_size=8))
    with torch.no_grad():
        for parameter in model.parameters():  # values no initialisation rule would produce
            parameter.copy_(torch.linspace(-3.0, 3.0, parameter.numel()).reshape(parameter.shape))
    assert model.model.item_embeddings.weight[0].abs().sum() > 0  # even the padding row
    model.save_pretrained(tmp_path)
    expected = model.state_dict()
    for model_class in (HSTUForRewardModeling, HSTUForNextItemPrediction):
        loaded = model_class.from_pretrained(tmp_path).state_dict()
        for name, value in loaded.items():
            assert torch.equal(value, expected[name]), name
    backbone = HSTUModel.from_pretrained(tmp_path).state_dict()
    for name, value in backbone.items():
        assert torch.equal(value, expected[f"model.{name}"]), name


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_misspelt_forward_argument_is_an_error(model_class):
    model = model_class(tiny_config(reward_head_hidden_size=8))
    item_ids, mask, timestamps = batch()
    with pytest.raises(TypeError, match="unexpected keyword argument 'timestamp'"):
        model(item_ids=item_ids, attention_mask=mask, timestamp=timestamps)
    # Trainer must not hand the models a `num_items_in_batch` they would not use.
    assert model.accepts_loss_kwargs is False


def test_default_query_times_are_the_shared_rule():
    torch.manual_seed(1)
    model = HSTUModel(tiny_config()).eval()
    item_ids, mask, timestamps = batch()
    default = model(item_ids, mask, timestamps).last_hidden_state
    shared = model(item_ids, mask, timestamps, query_timestamps(timestamps, mask)).last_hidden_state
    assert torch.equal(default, shared)
    # ... and the query times matter: asking the last position about a later request changes its output.
    later = query_timestamps(timestamps, mask, timestamps.amax(dim=1) + 10**6)
    moved = model(item_ids, mask, timestamps, later).last_hidden_state
    last = mask.sum(dim=1) - 1
    assert not torch.allclose(moved[torch.arange(3), last], default[torch.arange(3), last])


def test_scoring_methods_take_a_history_as_keywords():
    torch.manual_seed(2)
    item_ids, mask, timestamps = batch()
    history = History.from_events(item_ids, mask, timestamps, timestamps.amax(dim=1) + 60)
    next_item = HSTUForNextItemPrediction(tiny_config()).eval()
    reward = HSTUForRewardModeling(tiny_config(reward_head_hidden_size=8)).eval()
    positional = (item_ids, mask, timestamps, history.query_timestamps)
    with torch.no_grad():
        assert torch.equal(next_item.score_next_items(**history.model_inputs()), next_item.score_next_items(*positional))
        assert torch.equal(
            next_item.recommend(**history.model_inputs(), k=4).item_ids, next_item.recommend(*positional, k=4).item_ids
        )
        assert torch.equal(reward.value_last(**history.model_inputs()), reward.value_last(*positional))
        candidates = torch.tensor([[1, 2], [3, 4], [5, 6]])
        assert torch.equal(
            reward.score_candidates(**history.model_inputs(), candidate_item_ids=candidates),
            reward.score_candidates(*positional, candidates),
        )
