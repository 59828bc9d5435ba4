"""The Python serving API (`Recommender.recommend`, `HSTUForNextItemPrediction.recommend`) on bad inputs: a
`ValueError` (or `UnknownItemError` for ids outside the vocabulary) naming the argument, the value and the fix,
never a raw torch error and never a silently wrong ranking. Left padding is refused, not guessed at.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import ItemVocabulary, UnknownItemError
from hf_genrec.pipelines import Recommender

RAW_IDS = list(range(100, 130))
HISTORY = [[100, 101, 102]]


@pytest.fixture(scope="module")
def model() -> HSTUForNextItemPrediction:
    torch.manual_seed(0)
    config = HSTUConfig(num_items=30, hidden_size=8, attention_dim=4, linear_dim=4, max_seq_len=10,
                        max_position_embeddings=21, num_negatives=4, input_dropout=0.0, linear_dropout=0.0)
    return HSTUForNextItemPrediction(config).eval()


@pytest.fixture(scope="module")
def recommender(model) -> Recommender:
    return Recommender(model, ItemVocabulary.from_items(RAW_IDS))


# ------------------------------------------------------------------------------------------------ Recommender
@pytest.mark.parametrize("k", [2.5, "3", True, None, 0, -1])
def test_recommender_refuses_a_k_that_is_not_a_positive_integer(k, recommender):
    """Before the fix, 2.5, "3", True and None ended in TypeErrors from `topk` or `<`."""
    with pytest.raises(ValueError, match=r"^k must be (an integer|at least 1)") as error:
        recommender.recommend(HISTORY, k=k)
    assert repr(k) in str(error.value) or str(k) in str(error.value)
    with pytest.raises(ValueError, match="^k must"):
        recommender.recommend([], k=k)  # checked even when there is nothing to score


def test_recommender_accepts_numpy_and_tensor_integers_as_k(recommender):
    expected = recommender.recommend(HISTORY, k=4)
    assert len(expected[0]) == 4
    assert recommender.recommend(HISTORY, k=np.int64(4)) == expected
    assert recommender.recommend(HISTORY, k=torch.tensor(4)) == expected


@pytest.mark.parametrize(
    "timestamps, request_timestamps, name",
    [
        ([[1, 2, 2**63]], None, "timestamps[0][2]"),  # past int64: was "Overflow when unpacking long long"
        ([[1, 2, 3]], [2**64], "request_timestamps[0]"),
        ([[1.5, 2, 3]], None, "timestamps[0][0]"),  # was silently truncated to 1
        ([[1, float("nan"), 3]], None, "timestamps[0][1]"),
        ([[1, 2, "3"]], None, "timestamps[0][2]"),  # was silently parsed
        ([[-5, 2, 3]], None, "timestamps[0][0]"),  # negative: time differences could wrap around int64
        ([[1, 2, True]], None, "timestamps[0][2]"),
    ],
)
def test_recommender_refuses_times_that_are_not_int64_seconds(timestamps, request_timestamps, name, recommender):
    with pytest.raises(ValueError) as error:
        recommender.recommend(HISTORY, k=2, timestamps=timestamps, request_timestamps=request_timestamps)
    message = str(error.value)
    assert message.startswith(f"{name} must be a whole number of seconds in 0..2**63 - 1"), message
    assert "convert times to integer seconds" in message


def test_recommender_accepts_whole_float_seconds_and_the_int64_extremes(recommender):
    as_ints = recommender.recommend(HISTORY, k=3, timestamps=[[10**9, 10**9 + 60, 10**9 + 7200]])
    as_floats = recommender.recommend(HISTORY, k=3, timestamps=[[1e9, 1e9 + 60.0, np.float64(1e9 + 7200)]])
    assert as_floats == as_ints
    extreme = recommender.recommend(HISTORY, k=3, timestamps=[[0, 2**62, 2**63 - 1]], request_timestamps=[0])
    assert len(extreme[0]) == 3 and not set(extreme[0]) & set(HISTORY[0])


@pytest.mark.parametrize("padding", [0, None])
def test_padded_raw_histories_name_the_padding(padding, recommender):
    """`Recommender` takes unpadded lists; a padding value that is not an item is refused and called padding."""
    with pytest.raises(UnknownItemError) as error:
        recommender.recommend([[padding, padding, 101]], k=2)
    message = str(error.value)
    assert message.startswith("history 0: item") and "if this is padding, remove it" in message


def test_recommender_refuses_a_non_integer_batch_size(model):
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1 .*got 2\.5"):
        Recommender(model, ItemVocabulary.from_items(RAW_IDS), batch_size=2.5)


# ------------------------------------------------------------------------------------------- model.recommend
ITEMS = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])


@pytest.mark.parametrize(
    "inputs, fragment",
    [
        ({"k": 2.5}, "k must be an integer"),
        ({"item_ids": torch.tensor([[1, 2, 31, 0], [4, 5, 6, 7]])}, "item_ids must hold item indices in 0..30"),
        ({"item_ids": torch.tensor([[1, -2, 3, 0], [4, 5, 6, 7]])}, "item_ids must hold item indices in 0..30"),
        ({"item_ids": ITEMS.float()}, "item_ids must hold integers"),
        ({"item_ids": torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])}, "history 0 has padding"),  # left-padded
        ({"item_ids": torch.tensor([[4, 5, 6, 7], [1, 0, 2, 3]])}, "history 1 has padding"),  # padding inside
        ({"attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1]])}, "history 0 has padding"),  # item 0 real
        ({"attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])}, "history 0 has padding"),
        ({"attention_mask": torch.tensor([[2, 2, 2, 0], [1, 1, 1, 1]])}, "attention_mask must hold only 0"),
        ({"timestamps": torch.rand(2, 4)}, "timestamps must hold integers"),
        ({"timestamps": torch.tensor([[5, -6, 7, 0], [1, 2, 3, 4]])}, "timestamps must be seconds >= 0"),
        ({"exclude_item_ids": torch.tensor([[40], [1]])}, "exclude_item_ids must hold item indices in 0..30"),
        ({"exclude_item_ids": torch.tensor([[1.0], [2.0]])}, "exclude_item_ids must hold integers"),
        ({"exclude_item_ids": torch.tensor([[1, 2]])}, "exclude_item_ids must be (batch, H)"),
    ],
)
def test_model_recommend_refuses_bad_tensors_clearly(inputs, fragment, model):
    """Before the fix: TypeError (k), IndexError (indices), RuntimeError (float ids, exclude indices) or a
    ranking computed silently from the wrong position (left padding, padding inside, item 0 marked real)."""
    arguments = {"item_ids": ITEMS, "k": 3, **inputs}
    with pytest.raises(ValueError) as error:
        model.recommend(**arguments)
    assert fragment in str(error.value), str(error.value)


def test_left_padding_is_refused_while_the_right_padded_history_is_served(model):
    right = model.recommend(torch.tensor([[7, 8, 9, 0, 0]]), k=5).item_ids
    assert right.shape == (1, 5) and not set(right[0].tolist()) & {7, 8, 9}
    with pytest.raises(ValueError, match="left padding is not supported"):
        model.recommend(torch.tensor([[0, 0, 7, 8, 9]]), k=5)


def test_model_recommend_accepts_any_integer_dtype_with_the_same_result(model):
    """Indices of another integer dtype used to fail inside torch (embedding, scatter_); now they rank as int64."""
    timestamps = torch.tensor([[10, 20, 30, 0], [5, 6, 7, 8]])
    expected = model.recommend(ITEMS, timestamps=timestamps, k=4)
    for dtype in (torch.int32, torch.int16, torch.uint8):
        got = model.recommend(ITEMS.to(dtype), timestamps=timestamps.to(dtype), k=4)
        assert torch.equal(got.item_ids, expected.item_ids) and torch.equal(got.scores, expected.scores)
    best = expected.item_ids[:, :1]  # (2, 1) each row's top item
    excluded = model.recommend(ITEMS, timestamps=timestamps, k=4, exclude_item_ids=best.int())
    assert not (excluded.item_ids == best).any()
    assert torch.equal(excluded.item_ids[:, :3], expected.item_ids[:, 1:])
