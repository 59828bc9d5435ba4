import json

import numpy as np
import pytest

from hf_genrec.data import PAD_INDEX, VOCABULARY_FILE, ItemVocabulary, UnknownItemError


def test_from_items_sorts_and_deduplicates():
    assert ItemVocabulary.from_items([10, 2, 33, 2]).raw_ids == [2, 10, 33]  # numeric, not "10" < "2"
    assert ItemVocabulary.from_items(["b", "a10", "a2", "b"]).raw_ids == ["a10", "a2", "b"]
    assert ItemVocabulary.from_items(np.array([5, 3, 5])).raw_ids == [3, 5]


def test_encode_decode_round_trip():
    vocab = ItemVocabulary([31, 7, 12])  # index order as given
    assert PAD_INDEX == 0
    assert vocab.num_items == len(vocab) == 3
    assert vocab.encode([31, 7, 12]) == [1, 2, 3]
    assert vocab.decode([1, 2, 3]) == [31, 7, 12]
    assert vocab.encode_one(12) == 3
    assert 7 in vocab and 8 not in vocab


def test_int_vocabulary_accepts_numeric_strings():
    vocab = ItemVocabulary.from_items([3, 12])
    assert vocab.encode(["12", "3", np.int64(3)]) == [2, 1, 1]
    assert "12" in vocab
    np.testing.assert_array_equal(vocab.encode_array(np.array(["12", "3"])), [2, 1])
    np.testing.assert_array_equal(vocab.encode_array(np.array([12, 3, 12])), [2, 1, 2])


def test_str_vocabulary_encode_array():
    vocab = ItemVocabulary.from_items(["B0001", "A123"])
    np.testing.assert_array_equal(vocab.encode_array(np.array(["B0001", "A123"], dtype=object)), [2, 1])


def test_unknown_item_error_is_readable():
    vocab = ItemVocabulary.from_items([1, 2, 3])
    with pytest.raises(UnknownItemError) as info:
        vocab.encode([2, 99])
    message = str(info.value)
    assert isinstance(info.value, KeyError)
    assert message.startswith("item 99 is not in the item vocabulary")  # no repr quotes around the message
    assert "hf-genrec prepare" in message and "drop" in message
    assert info.value.item_id == 99
    with pytest.raises(UnknownItemError, match="item 42 is not"):
        vocab.encode_array(np.array([1, 42]))


def test_duplicates_and_mixed_types_rejected():
    with pytest.raises(ValueError, match="item id 5 appears twice"):
        ItemVocabulary([5, 6, 5])
    with pytest.raises(ValueError, match="mix int and str"):
        ItemVocabulary([5, "6"])
    with pytest.raises(ValueError, match="mix int and str"):
        ItemVocabulary.from_items([5, "6"])
    with pytest.raises(ValueError, match="at least one item"):
        ItemVocabulary([])


def test_decode_rejects_padding_and_out_of_range():
    vocab = ItemVocabulary([10, 20])
    with pytest.raises(ValueError, match="padding"):
        vocab.decode([0])
    with pytest.raises(IndexError, match="items 1..2"):
        vocab.decode([3])


@pytest.mark.parametrize("ids", [[3, 1, 2], ["x", "ä", "b"]])
def test_save_and_load_round_trip(tmp_path, ids):
    vocab = ItemVocabulary(ids)
    path = vocab.save_pretrained(tmp_path / "model")
    assert path == str(tmp_path / "model" / VOCABULARY_FILE)
    payload = json.loads(open(path, encoding="utf-8").read())
    assert payload == {"version": 1, "id_type": vocab.id_type, "item_ids": ids}
    assert ItemVocabulary.from_pretrained(tmp_path / "model") == vocab
    assert ItemVocabulary.from_pretrained(path) == vocab  # the json file itself


def test_from_pretrained_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no item vocabulary.*save_pretrained"):
        ItemVocabulary.from_pretrained(tmp_path)


def test_from_pretrained_downloads_from_the_hub(tmp_path, monkeypatch):
    import huggingface_hub

    local = ItemVocabulary([4, 5]).save_pretrained(tmp_path)
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename, kwargs))
        return local

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    vocab = ItemVocabulary.from_pretrained("someone/hstu-ml1m", revision="main")
    assert vocab.raw_ids == [4, 5]
    assert calls[0][:2] == ("someone/hstu-ml1m", VOCABULARY_FILE)
    assert calls[0][2]["revision"] == "main"
