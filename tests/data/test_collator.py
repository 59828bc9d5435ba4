import numpy as np
import pytest
import torch

from hf_genrec.data import SequenceCollator


def _row(items, ratings=None, timestamps=None, **extra):
    ratings = ratings if ratings is not None else [float(i % 5 + 1) for i in items]
    timestamps = timestamps if timestamps is not None else [100 * i for i in items]
    return {"user_id": "u", "item_ids": items, "ratings": ratings, "timestamps": timestamps, **extra}


def test_training_batch_shifts_and_pads_at_the_end():
    batch = SequenceCollator(max_seq_len=10)([_row([1, 2, 3, 4]), _row([5, 6])])
    assert batch["item_ids"].tolist() == [[1, 2, 3], [5, 0, 0]]
    assert batch["labels"].tolist() == [[2, 3, 4], [6, 0, 0]]
    assert batch["timestamps"].tolist() == [[100, 200, 300], [500, 0, 0]]
    assert batch["query_timestamps"].tolist() == [[200, 300, 400], [600, 0, 0]]
    assert batch["ratings"].tolist() == [[2.0, 3.0, 4.0], [1.0, 0.0, 0.0]]
    assert batch["label_ratings"].tolist() == [[3.0, 4.0, 5.0], [2.0, 0.0, 0.0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["item_ids"].dtype == torch.int64 and batch["ratings"].dtype == torch.float32
    assert batch["labels"].dtype == torch.int64 and batch["attention_mask"].dtype == torch.int64


def test_training_truncation_keeps_the_most_recent_events():
    batch = SequenceCollator(max_seq_len=3)([_row(list(range(1, 11)))])
    assert batch["item_ids"].tolist() == [[7, 8, 9]]  # the last max_seq_len + 1 = 4 events: 7..10
    assert batch["labels"].tolist() == [[8, 9, 10]]
    assert batch["query_timestamps"].tolist() == [[800, 900, 1000]]


def test_dynamic_length_and_pad_to_multiple_of():
    rows = [_row([1, 2, 3]), _row([4, 5])]
    assert SequenceCollator(max_seq_len=200)(rows)["item_ids"].shape == (2, 2)  # not 200
    assert SequenceCollator(max_seq_len=200, pad_to_multiple_of=8)(rows)["item_ids"].shape == (2, 8)


def test_short_training_row_is_all_padding():
    batch = SequenceCollator()([_row([7]), _row([])])
    assert batch["item_ids"].shape == (2, 1)
    assert batch["attention_mask"].sum() == 0 and batch["labels"].sum() == 0


def test_evaluation_batch():
    rows = [
        _row([1, 2, 3, 4, 5], target_item_id=9, target_rating=4.0, target_timestamp=950),
        _row([6], ratings=[2.5], target_item_id=8, target_rating=1.0, target_timestamp=700),
    ]
    batch = SequenceCollator(max_seq_len=3)(rows)
    assert batch["item_ids"].tolist() == [[3, 4, 5], [6, 0, 0]]  # most recent 3 of the history
    assert batch["timestamps"].tolist() == [[300, 400, 500], [600, 0, 0]]
    assert batch["query_timestamps"].tolist() == [[400, 500, 950], [700, 0, 0]]  # target time last
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["target_item_ids"].tolist() == [9, 8]
    assert batch["target_ratings"].tolist() == [4.0, 1.0]
    assert batch["target_timestamps"].tolist() == [950, 700]
    assert batch["history_item_ids"].tolist() == [[1, 2, 3, 4, 5], [6, 0, 0, 0, 0]]  # full, uncut history
    assert batch["history_reward_sums"].tolist() == [2.0 + 3.0 + 4.0 + 5.0 + 1.0, 2.5]
    assert "labels" not in batch


def test_tensor_and_numpy_features():
    rows = [
        {"item_ids": torch.tensor([1, 2, 3]), "ratings": torch.tensor([1.0, 2.0, 3.0]),
         "timestamps": np.array([10, 20, 30])},
    ]  # fmt: skip
    assert SequenceCollator()(rows)["labels"].tolist() == [[2, 3]]
    rows[0].update(
        target_item_id=torch.tensor(4), target_rating=torch.tensor(5.0), target_timestamp=np.int64(40)
    )
    assert SequenceCollator()(rows)["query_timestamps"].tolist() == [[20, 30, 40]]


def test_mixed_batch_rejected():
    with pytest.raises(ValueError, match="mixes training rows and evaluation rows"):
        SequenceCollator()([_row([1, 2]), _row([1], target_item_id=2, target_rating=1.0, target_timestamp=5)])
