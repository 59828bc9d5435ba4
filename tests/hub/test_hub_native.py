"""Hub habits on the model itself (in-process fake Hub of `tests/hub_server.py`): the item vocabulary rides with
`save_pretrained` / `push_to_hub`, every loader takes `subfolder` / `revision` / `token` / `cache_dir`, and
`resize_token_embeddings` grows the catalogue."""

import os

import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import RevisionNotFoundError

from hf_genrec import (
    AutoModelForNextItemPrediction,
    HSTUConfig,
    HSTUForNextItemPrediction,
    HSTUForRewardModeling,
)
from hf_genrec.data import ItemVocabulary
from hf_genrec.pipelines import Recommender

RAW_IDS = [f"song-{i}" for i in range(12)]
HISTORIES = [["song-1", "song-4"], ["song-7"], ["song-0", "song-2", "song-11"]]


def tiny_model(num_items: int = len(RAW_IDS), seed: int = 0) -> HSTUForNextItemPrediction:
    torch.manual_seed(seed)
    return HSTUForNextItemPrediction(HSTUConfig(num_items=num_items, hidden_size=8, attention_dim=4, linear_dim=4,
                                                max_seq_len=6, max_position_embeddings=7))


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    other = b.state_dict()
    return all(torch.equal(tensor, other[name]) for name, tensor in a.state_dict().items())


def test_push_to_hub_uploads_the_vocabulary_and_recommender_loads_the_repo(fake_hub):
    model = tiny_model()
    vocabulary = ItemVocabulary(RAW_IDS)
    model.item_vocabulary = vocabulary
    model.push_to_hub("tester/with-vocab")

    files = fake_hub.files("tester/with-vocab")
    assert {"config.json", "model.safetensors", "item_vocabulary.json"} <= set(files), sorted(files)
    recommender = Recommender.from_pretrained("tester/with-vocab")
    assert recommender.vocabulary == vocabulary
    assert same_weights(recommender.model, model)
    assert recommender.recommend(HISTORIES, k=4) == Recommender(model, vocabulary).recommend(HISTORIES, k=4)
    # A model loaded from the repo knows its vocabulary, so pushing it on carries the vocabulary again.
    loaded = AutoModelForNextItemPrediction.from_pretrained("tester/with-vocab")
    assert loaded.item_vocabulary == vocabulary
    loaded.push_to_hub("tester/forwarded")
    assert fake_hub.files("tester/forwarded")["item_vocabulary.json"] == files["item_vocabulary.json"]
    assert not fake_hub.unhandled, fake_hub.unhandled


def test_save_pretrained_with_push_to_hub_flag_uploads_the_vocabulary(fake_hub, tmp_path):
    model = tiny_model()
    model.item_vocabulary = ItemVocabulary(RAW_IDS)
    model.save_pretrained(tmp_path / "run", push_to_hub=True, repo_id="tester/flag-push")
    assert (tmp_path / "run" / "item_vocabulary.json").is_file()
    assert "item_vocabulary.json" in fake_hub.files("tester/flag-push")
    assert Recommender.from_pretrained("tester/flag-push").vocabulary == model.item_vocabulary


def test_model_without_vocabulary_saves_none_and_a_stale_one_is_refused(tmp_path):
    model = tiny_model()
    assert model.item_vocabulary is None
    model.save_pretrained(tmp_path / "plain")
    assert not (tmp_path / "plain" / "item_vocabulary.json").exists()
    assert AutoModelForNextItemPrediction.from_pretrained(tmp_path / "plain").item_vocabulary is None
    with pytest.raises(ValueError, match="no item_vocabulary"):
        Recommender(model)

    model.item_vocabulary = ItemVocabulary(RAW_IDS[:5])  # another catalogue
    with pytest.raises(ValueError, match="item_vocabulary has 5 items but the model scores num_items=12"):
        model.save_pretrained(tmp_path / "stale")
    assert not (tmp_path / "stale").exists()  # refused before anything is written


def test_folders_with_a_separately_saved_vocabulary_still_load(tmp_path):
    """The layout every run directory already has: weights and `vocabulary.save_pretrained(dir)` side by side."""
    model = tiny_model()
    model.save_pretrained(tmp_path / "run")
    vocabulary = ItemVocabulary(RAW_IDS)
    vocabulary.save_pretrained(tmp_path / "run")
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "run")
    assert loaded.item_vocabulary == vocabulary
    reward = HSTUForRewardModeling.from_pretrained(tmp_path / "run")  # every head finds it
    assert reward.item_vocabulary == vocabulary
    assert Recommender.from_pretrained(tmp_path / "run").recommend(HISTORIES, k=3) == \
        Recommender(model, vocabulary).recommend(HISTORIES, k=3)
    # A vocabulary that does not fit the loaded model is not attached (the load itself still works).
    ItemVocabulary(RAW_IDS[:3]).save_pretrained(tmp_path / "run")
    assert AutoModelForNextItemPrediction.from_pretrained(tmp_path / "run").item_vocabulary is None
    with pytest.raises(ValueError, match="scores 12 items but the vocabulary has 3"):
        Recommender.from_pretrained(tmp_path / "run")


def test_local_subfolder_on_every_loader(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "repo" / "hstu")
    model.item_vocabulary = ItemVocabulary(RAW_IDS)
    model.item_vocabulary.save_pretrained(tmp_path / "repo" / "hstu")
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "repo", subfolder="hstu")
    assert isinstance(loaded, HSTUForNextItemPrediction) and same_weights(loaded, model)
    assert ItemVocabulary.from_pretrained(tmp_path / "repo", subfolder="hstu") == model.item_vocabulary
    recommender = Recommender.from_pretrained(tmp_path / "repo", subfolder="hstu")
    assert recommender.recommend(HISTORIES, k=3) == Recommender(model).recommend(HISTORIES, k=3)


def test_hub_subfolder_revision_token_and_cache_dir_on_every_loader(fake_hub, tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "export")
    model.item_vocabulary = ItemVocabulary(RAW_IDS)
    model.item_vocabulary.save_pretrained(tmp_path / "export")  # the run-directory layout
    api = HfApi()
    repo_id = api.create_repo("nested").repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=tmp_path / "export", path_in_repo="hstu")
    assert "hstu/item_vocabulary.json" in fake_hub.files(repo_id)

    cache = tmp_path / "own-cache"
    hub = {"subfolder": "hstu", "revision": commit.oid, "token": "hf_fake_token", "cache_dir": str(cache)}
    loaded = AutoModelForNextItemPrediction.from_pretrained(repo_id, **hub)
    assert isinstance(loaded, HSTUForNextItemPrediction) and same_weights(loaded, model)
    assert loaded.item_vocabulary == model.item_vocabulary
    assert ItemVocabulary.from_pretrained(repo_id, **hub) == model.item_vocabulary
    recommender = Recommender.from_pretrained(repo_id, **hub)
    assert recommender.recommend(HISTORIES, k=3) == Recommender(model).recommend(HISTORIES, k=3)
    # Everything came through the given cache, none through the default one.
    cached = {name for _, _, names in os.walk(cache) for name in names}
    assert {"config.json", "model.safetensors", "item_vocabulary.json"} <= cached, cached
    assert not (tmp_path / "hf_home" / "hub").exists() or not any((tmp_path / "hf_home" / "hub").iterdir())
    # The revision is used, not ignored: one the repo does not have is refused by every loader.
    for load in (AutoModelForNextItemPrediction.from_pretrained, ItemVocabulary.from_pretrained,
                 Recommender.from_pretrained):
        with pytest.raises((OSError, RevisionNotFoundError), match="(?i)revision"):
            load(repo_id, subfolder="hstu", revision="no-such-branch", cache_dir=str(tmp_path / "other-cache"))
    assert not fake_hub.unhandled, fake_hub.unhandled


def test_resize_token_embeddings_grows_the_catalogue(tmp_path):
    model = tiny_model()
    old_table = model.get_input_embeddings().weight.detach().clone()  # (13, 8)
    torch.manual_seed(1)
    table = model.resize_token_embeddings(len(RAW_IDS) + 1 + 4)  # four new items
    assert table is model.get_input_embeddings() and tuple(table.weight.shape) == (17, 8)
    assert model.config.num_items == 16 and model.config.vocab_size == 17
    assert torch.equal(table.weight[:13], old_table)  # existing items (and the padding row) keep their rows
    new_rows = table.weight[13:].detach()
    std = model.config.initializer_range
    # New rows are drawn as item rows are: truncated normal within 2 std, not zeros, not copies.
    assert new_rows.abs().max() <= 2 * std and new_rows.std() > std / 4 and new_rows.abs().min() > 0
    assert torch.equal(table.weight[0], torch.zeros(8)) and table.padding_idx == 0

    # The grown model scores the new items and round-trips with the grown vocabulary.
    # Items 1 and 2 (the history) are excluded; the 14 others, the four new ones included, are all ranked.
    assert sorted(model.recommend(torch.tensor([[1, 2]]), k=14).item_ids[0].tolist()) == list(range(3, 17))
    grown = ItemVocabulary(RAW_IDS + ["song-12", "song-13", "song-14", "song-15"])
    with pytest.raises(ValueError, match="after resize_token_embeddings"):
        model.item_vocabulary = ItemVocabulary(RAW_IDS)
        model.save_pretrained(tmp_path / "stale")
    model.item_vocabulary = grown
    model.save_pretrained(tmp_path / "grown")
    reloaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "grown")
    assert reloaded.config.num_items == 16 and same_weights(reloaded, model)
    assert Recommender.from_pretrained(tmp_path / "grown").recommend([["song-15"]], k=20)[0] != []

    # Shrinking drops rows from the end.
    model.resize_token_embeddings(6)
    assert model.config.num_items == 5 and torch.equal(model.get_input_embeddings().weight, old_table[:6])
    with pytest.raises(ValueError, match="new_num_tokens must be an integer >= 2"):
        model.resize_token_embeddings(1)
    assert model.config.num_items == 5 and model.get_input_embeddings().weight.shape[0] == 6  # left as it was
