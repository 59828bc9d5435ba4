"""Most-popular baseline: counts over the train split and its ranks on a hand example."""

import datasets
import pytest
import torch

from hf_genrec.data import History
from hf_genrec.evaluation import MostPopularRecommender, popularity_scores, predict_ranks

INF = float("inf")


def _train() -> datasets.Dataset:
    return datasets.Dataset.from_dict({"user_id": [1, 2, 3], "item_ids": [[1, 2, 2], [2, 3], [3, 2, 5]]})


def test_popularity_scores_count_interactions():
    # Counts: item 1: 1, item 2: 4, item 3: 2, item 4: 0, item 5: 1.
    assert popularity_scores(_train(), num_items=5).tolist() == [-INF, 1.0, 4.0, 2.0, 0.0, 1.0]
    # A selection of rows is respected (not the whole underlying Arrow table).
    assert popularity_scores(_train().select([0, 1]), num_items=5).tolist() == [-INF, 1.0, 3.0, 1.0, 0.0, 0.0]
    # Plain rows work too.
    rows = [{"item_ids": [1, 2, 2]}, {"item_ids": [2, 3]}, {"item_ids": [3, 2, 5]}]
    assert popularity_scores(rows, num_items=5).tolist() == [-INF, 1.0, 4.0, 2.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        popularity_scores(_train(), num_items=4)  # item 5 is outside the catalogue


def test_most_popular_ranks(eval_collate):
    model = MostPopularRecommender.from_dataset(_train(), num_items=5)
    assert model.config.num_items == 5
    scores = model.score_next_items(torch.tensor([[1, 0], [2, 3]]), torch.tensor([[1, 0], [1, 1]]))
    assert scores.shape == (2, 6)
    # Called like every model, with the columns of a `History` by name (a new column needs no change here).
    history = History.from_events(torch.tensor([[1, 0], [2, 3]]), torch.tensor([[1, 0], [1, 1]]),
                                  torch.tensor([[5, 0], [6, 7]]), torch.tensor([9, 9]))
    assert torch.equal(model.score_next_items(**history.model_inputs()), scores)
    assert scores[0].tolist() == [-INF, 1.0, 4.0, 2.0, 0.0, 1.0]
    test = datasets.Dataset.from_dict(
        {
            "user_id": [1, 2, 3],
            "item_ids": [[2], [1], [2, 3]],
            "ratings": [[5], [4], [3, 3]],
            "timestamps": [[10], [20], [30, 31]],
            "target_item_id": [5, 2, 4],
            "target_rating": [5.0, 4.0, 2.0],
            "target_timestamp": [11, 21, 32],
        }
    )
    # Scores 1: 1, 2: 4, 3: 2, 4: 0, 5: 1.
    #   user 1 saw 2; target 5 (1) is tied with item 1 and below item 3 -> rank 3.
    #   user 2 saw 1; target 2 is the most popular -> rank 1.
    #   user 3 saw 2 and 3; target 4 (0) is below items 1 and 5 -> rank 3.
    predictions = predict_ranks(model, test, eval_collate(10), batch_size=2)
    assert predictions.ranks.tolist() == [3, 1, 3]
