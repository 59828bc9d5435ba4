import numpy as np
import pytest
from datasets import Dataset

from hf_genrec.data import EVALUATION_FEATURES, SEQUENCE_FEATURES
from hf_genrec.rewards import GlobalMeanReward, ItemMeanReward, UserMeanReward, fit_reward_baselines

# Training: user a rated items 1, 2, 3 with 5, 4, 4; user b rated items 1, 4 with 2, 1.
# Global mean 16 / 5 = 3.2; item means: 1 -> 3.5, 2 -> 4, 3 -> 4, 4 -> 1; item 5 is unseen.
TRAIN = {
    "user_id": ["a", "b"],
    "item_ids": [[1, 2, 3], [1, 4]],
    "ratings": [[5.0, 4.0, 4.0], [2.0, 1.0]],
    "timestamps": [[1, 2, 3], [1, 2]],
}
# Evaluation rows: a (history = training) asks about unseen item 5; b about item 2 after one more event;
# c is a user unseen in training, with no past rating, asking about item 1.
EVALUATION = {
    "user_id": ["a", "b", "c"],
    "item_ids": [[1, 2, 3], [1, 4, 3], []],
    "ratings": [[5.0, 4.0, 4.0], [2.0, 1.0, 3.0], []],
    "timestamps": [[1, 2, 3], [1, 2, 3], []],
    "target_item_id": [5, 2, 1],
    "target_rating": [3.0, 4.0, 5.0],
    "target_timestamp": [4, 4, 4],
}


@pytest.fixture
def train():
    return Dataset.from_dict(TRAIN, features=SEQUENCE_FEATURES)


@pytest.fixture
def evaluation():
    return Dataset.from_dict(EVALUATION, features=EVALUATION_FEATURES)


def test_baselines_match_hand_computed_means(train, evaluation):
    baselines = fit_reward_baselines(train, num_items=5)
    assert set(baselines) == {"user_mean", "item_mean", "global_mean"}
    np.testing.assert_allclose(baselines["global_mean"].predict(evaluation), [3.2, 3.2, 3.2])
    # Item 5 was never rated in training -> global mean; item 2 -> 4; item 1 -> (5 + 2) / 2.
    np.testing.assert_allclose(baselines["item_mean"].predict(evaluation), [3.2, 4.0, 3.5])
    # The user's past ratings (the row's history); user c has none -> global mean.
    np.testing.assert_allclose(baselines["user_mean"].predict(evaluation), [13 / 3, 2.0, 3.2])
    assert baselines["item_mean"].item_counts.tolist() == [0, 2, 1, 1, 1, 0]


def test_item_mean_falls_back_for_out_of_vocabulary_targets(train):
    rows = dict(EVALUATION, target_item_id=[0, 4, 9])
    evaluation = Dataset.from_dict(rows, features=EVALUATION_FEATURES)
    np.testing.assert_allclose(ItemMeanReward(5).fit(train).predict(evaluation), [3.2, 1.0, 3.2])


def test_baselines_must_be_fitted_and_need_ratings(train, evaluation):
    with pytest.raises(ValueError, match="not fitted"):
        UserMeanReward().predict(evaluation)
    with pytest.raises(ValueError, match="no 'ratings' column"):
        GlobalMeanReward().fit(train.remove_columns("ratings"))
    nan = Dataset.from_dict(dict(TRAIN, ratings=[[5.0, float("nan"), 4.0], [2.0, 1.0]]), features=SEQUENCE_FEATURES)
    with pytest.raises(ValueError, match="column 'ratings' holds 1 NaN"):
        ItemMeanReward(5).fit(nan)
