"""`Recommender`: raw ids in and out, seen items excluded, truncation, batching and clear errors."""

import inspect

import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import ItemVocabulary, UnknownItemError
from hf_genrec.pipelines import Recommender

RAW_IDS = [f"m{i}" for i in range(100, 120)]  # 20 string item ids


@pytest.fixture(scope="module")
def recommender():
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=20, hidden_size=16, attention_dim=8, linear_dim=8,
                                                 max_seq_len=4, max_position_embeddings=5))
    return Recommender(model, ItemVocabulary(RAW_IDS), batch_size=2)


def test_recommends_unseen_raw_ids_in_score_order(recommender):
    history = ["m103", "m110", "m101"]
    top = recommender.recommend([history], k=5)[0]
    assert len(top) == 5 and not set(top) & set(history) and set(top) <= set(RAW_IDS)
    # The same as the model's own top-k on the encoded history.
    indices = torch.tensor([recommender.vocabulary.encode(history)])
    expected = recommender.model.recommend(indices, k=5).item_ids[0].tolist()
    assert top == recommender.vocabulary.decode(expected)


def test_long_history_uses_the_window_but_excludes_everything_seen(recommender):
    history = RAW_IDS[:10]  # longer than max_seq_len = 4
    top = recommender.recommend([history], k=10)[0]
    assert set(top) == set(RAW_IDS[10:])  # only 10 unseen items are left
    scores = recommender.model.score_next_items(torch.tensor([recommender.vocabulary.encode(history[-4:])]))[0]
    unseen = torch.tensor(recommender.vocabulary.encode(RAW_IDS[10:]))
    best = unseen[scores[unseen].argmax()].item()
    assert top[0] == recommender.vocabulary.decode_one(best)
    # Fewer than k come back when the catalogue runs out.
    assert len(recommender.recommend([RAW_IDS[:18]], k=10)[0]) == 2


def test_batches_give_the_same_results_as_one_by_one(recommender):
    histories = [["m100"], ["m101", "m102"], RAW_IDS[3:9], ["m119", "m100", "m105"], ["m111"]]
    together = recommender.recommend(histories, k=3)  # batch_size=2: three batches, mixed lengths
    assert together == [recommender.recommend([h], k=3)[0] for h in histories]


def test_timestamps(recommender):
    history = ["m100", "m101", "m102"]
    with_times = recommender.recommend([history], k=3, timestamps=[[10, 3600, 90000]],
                                       request_timestamps=[200000])
    assert len(with_times[0]) == 3
    with pytest.raises(ValueError, match="3 items but 2 timestamps"):
        recommender.recommend([history], timestamps=[[1, 2]])
    with pytest.raises(ValueError, match="request_timestamps needs"):
        recommender.recommend([history], request_timestamps=[5])


def test_query_times_are_the_next_event_then_the_request(recommender, monkeypatch):
    # What the model is asked: position i about event i + 1's time, the last position about the request time
    # (its own time without one), within the kept window of max_seq_len = 4 events; 0 on padding.
    calls = []
    original = recommender.model.recommend

    def recording(*args, **kwargs):
        calls.append(inspect.signature(original).bind(*args, **kwargs).arguments)
        return original(*args, **kwargs)

    monkeypatch.setattr(recommender.model, "recommend", recording)
    histories = [["m100", "m101", "m102"], RAW_IDS[:6]]
    times = [[10, 3600, 90000], [1, 2, 3, 4, 5, 6]]
    recommender.recommend(histories, k=3, timestamps=times, request_timestamps=[200000, 70])
    recommender.recommend(histories, k=3, timestamps=times)
    with_request, without_request = calls
    assert with_request["timestamps"].tolist() == [[10, 3600, 90000, 0], [3, 4, 5, 6]]
    assert with_request["query_timestamps"].tolist() == [[3600, 90000, 200000, 0], [4, 5, 6, 70]]
    assert without_request["query_timestamps"].tolist() == [[3600, 90000, 90000, 0], [4, 5, 6, 6]]


def test_errors(recommender):
    with pytest.raises(ValueError, match="history 1 is empty"):
        recommender.recommend([["m100"], []])
    with pytest.raises(UnknownItemError, match="history 0: item 'm999' is not in the item vocabulary"):
        recommender.recommend([["m100", "m999"]])
    with pytest.raises(ValueError, match="flat list"):
        recommender.recommend(["m100", "m101"])
    with pytest.raises(ValueError, match="k must be at least 1"):
        recommender.recommend([["m100"]], k=0)
    with pytest.raises(ValueError, match="vocabulary has 3"):
        Recommender(recommender.model, ItemVocabulary(["a", "b", "c"]))


def test_from_pretrained(recommender, tmp_path):
    recommender.model.save_pretrained(tmp_path)
    recommender.vocabulary.save_pretrained(tmp_path)
    loaded = Recommender.from_pretrained(tmp_path, device="cpu")
    assert loaded.recommend([["m104", "m105"]], k=4) == recommender.recommend([["m104", "m105"]], k=4)
