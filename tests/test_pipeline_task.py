"""`pipeline("next-item-recommendation", model=...)`: registered on `import hf_genrec`, raw ids in and out, the
same answers as `Recommender`, from a directory, a Hub repo (in-process fake) or a model object."""

import pytest
import torch
from transformers import pipeline
from transformers.pipelines import PIPELINE_REGISTRY

import hf_genrec
from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import ItemVocabulary
from hf_genrec.pipelines import Recommender

RAW_IDS = [1193, 661, 914, 3408, 2355, 1197, 1287, 2804, 594, 919]
HISTORIES = [[1193, 661, 914], [3408], [594, 919, 2804, 1287]]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(directory, model, vocabulary): a tiny model saved with its vocabulary."""
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=len(RAW_IDS), hidden_size=8, attention_dim=4,
                                                 linear_dim=4, max_seq_len=3, max_position_embeddings=4))
    vocabulary = ItemVocabulary(RAW_IDS)
    model.item_vocabulary = vocabulary
    directory = tmp_path_factory.mktemp("pipeline") / "model"
    model.save_pretrained(directory)
    return directory, model, vocabulary


def test_task_is_registered_on_import():
    assert hf_genrec.pipeline_task.TASK in PIPELINE_REGISTRY.get_supported_tasks()
    impl = PIPELINE_REGISTRY.supported_tasks["next-item-recommendation"]
    assert impl["impl"] is hf_genrec.NextItemRecommendationPipeline
    assert impl["pt"] == (hf_genrec.AutoModelForNextItemPrediction,)


def test_pipeline_from_a_directory_gives_the_recommenders_raw_ids(saved):
    directory, model, vocabulary = saved
    recommend = pipeline("next-item-recommendation", model=str(directory), device="cpu", k=4, batch_size=2)
    assert isinstance(recommend, hf_genrec.NextItemRecommendationPipeline) and recommend.recommender.batch_size == 2
    expected = Recommender(model, vocabulary).recommend(HISTORIES, k=4)
    assert recommend(HISTORIES) == expected  # a list of histories: one list each (in batches of 2)
    assert recommend(HISTORIES[0]) == expected[0]  # one flat history: its list
    assert recommend(HISTORIES[0], k=2) == expected[0][:2]  # a per-call k overrides the pipeline's
    assert all(item in RAW_IDS and item not in history for history, top in zip(HISTORIES, expected) for item in top)

    times, request = [100, 200, 86_400], 90_000
    with_times = Recommender(model, vocabulary).recommend([HISTORIES[0]], k=3, timestamps=[times],
                                                          request_timestamps=[request])[0]
    assert recommend(HISTORIES[0], k=3, timestamps=times, request_timestamps=request) == with_times
    with pytest.raises(TypeError, match="unexpected keyword argument.*top_k"):
        recommend(HISTORIES, top_k=3)


def test_pipeline_from_a_hub_repo(saved, fake_hub):
    directory, model, vocabulary = saved
    model.push_to_hub("tester/pipeline-model")
    recommend = pipeline("next-item-recommendation", model="tester/pipeline-model", device="cpu")
    assert recommend(HISTORIES, k=3) == Recommender(model, vocabulary).recommend(HISTORIES, k=3)
    assert not fake_hub.unhandled, fake_hub.unhandled


def test_pipeline_from_a_model_object_and_a_missing_vocabulary(saved, tmp_path):
    _, model, vocabulary = saved
    bare = HSTUForNextItemPrediction(model.config)
    bare.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="no item_vocabulary"):
        pipeline("next-item-recommendation", model=bare, device="cpu")
    recommend = pipeline("next-item-recommendation", model=bare, vocabulary=vocabulary, device="cpu")
    assert recommend(HISTORIES, k=2) == Recommender(model, vocabulary).recommend(HISTORIES, k=2)
    # Saved without a vocabulary: the pipeline says what is missing instead of failing later.
    HSTUForNextItemPrediction(model.config).save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="no item_vocabulary"):
        pipeline("next-item-recommendation", model=str(tmp_path / "bare"), device="cpu")
