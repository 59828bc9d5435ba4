"""Runs pushed to a Hub (the in-process fake of `tests/hub_server.py`) and loaded back by repo id."""

import os
import uuid

import pytest
import torch
import yaml

from hf_genrec import AutoModelForNextItemPrediction, HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.cli import main as cli_main
from hf_genrec.data import (
    ItemVocabulary,
    SequenceCollator,
    build_sequences,
    generate_synthetic_interactions,
    leave_one_out_split,
    write_movielens_file,
)
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.hub import push_run_to_hub
from hf_genrec.recipes import load_recipe
from hf_genrec.trainers import PretrainConfig, PretrainTrainer

TINY_RECIPE = {
    "model": {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 20,
              "max_position_embeddings": 21, "num_negatives": 8},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16, "disable_tqdm": True,
                 "logging_steps": 2, "seed": 3},
    "data": {"split": "leave-one-out"},
}


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub_data")
    interactions = generate_synthetic_interactions(num_users=40, num_items=30, mean_events=22, seed=1)
    ratings = write_movielens_file(interactions, root / "raw" / "ratings.dat")
    prepare_dataset(ratings, root / "data")
    recipe = root / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY_RECIPE))
    return root / "data", recipe


def scores(model, dataset):
    batch = SequenceCollator(max_seq_len=model.config.max_seq_len)([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return model.eval().score_next_items(batch["item_ids"], batch["attention_mask"], batch["timestamps"],
                                             batch["query_timestamps"])


def test_cli_pretrain_pushes_run_and_loads_by_repo_id(fake_hub, prepared_data, tmp_path, capsys):
    data_dir, recipe = prepared_data
    output = tmp_path / "run"
    code = cli_main(["pretrain", "--data", str(data_dir), "--output", str(output), "--recipe", str(recipe),
                     "--push-to-hub", "hstu-tiny"])
    assert code == 0
    assert "Pushed to the Hub" in capsys.readouterr().out

    files = fake_hub.files("tester/hstu-tiny")
    for name in ("config.json", "model.safetensors", "item_vocabulary.json", "README.md", "recipe.yaml",
                 "metrics.json"):
        assert name in files, sorted(files)
    assert not [f for f in files if f.startswith("checkpoints/") or f.endswith((".bin", ".pt", ".pth"))], files
    assert files["model.safetensors"] == (output / "model.safetensors").read_bytes()

    # The recipe on the Hub reproduces the run: the file's sections, with the seed it used.
    hub_recipe = yaml.safe_load(files["recipe.yaml"])
    assert hub_recipe["model"] == TINY_RECIPE["model"]
    assert hub_recipe["training"]["seed"] == 3 and hub_recipe["data"]["split"] == "leave-one-out"
    assert load_recipe(output / "recipe.yaml")["model"] == TINY_RECIPE["model"]

    local = AutoModelForNextItemPrediction.from_pretrained(output)
    remote = AutoModelForNextItemPrediction.from_pretrained("tester/hstu-tiny")
    assert isinstance(remote, HSTUForNextItemPrediction)
    assert ItemVocabulary.from_pretrained("tester/hstu-tiny") == ItemVocabulary.from_pretrained(data_dir)
    test_rows = leave_one_out_split(build_sequences(
        generate_synthetic_interactions(num_users=40, num_items=30, mean_events=22, seed=1))[0])["test"]
    assert torch.equal(scores(remote, test_rows), scores(local, test_rows))
    assert not fake_hub.unhandled, fake_hub.unhandled  # every request the client made is one the fake knows


def test_push_run_to_hub_skips_checkpoints_and_pickles(fake_hub, tmp_path):
    run = tmp_path / "run"
    HSTUForNextItemPrediction(HSTUConfig(num_items=5, hidden_size=8, attention_dim=4, linear_dim=4)).save_pretrained(run)
    ItemVocabulary.from_items([10, 20, 30, 40, 50]).save_pretrained(run)
    (run / "metrics.json").write_text("{}")
    (run / "training_args.bin").write_bytes(b"pickle")
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-2" / "optimizer.pt").write_bytes(b"state")
    (run / "checkpoints" / "checkpoint-2" / "config.json").write_text("{}")

    commit = push_run_to_hub(run, "tester/run", private=True, commit_message="a run")
    assert fake_hub.repo("tester/run").private
    assert sorted(fake_hub.files("tester/run")) == ["config.json", "item_vocabulary.json", "metrics.json",
                                                   "model.safetensors"]
    assert commit.oid == fake_hub.repo("tester/run").sha
    # A second push of the same directory is a new commit on the same repo.
    push_run_to_hub(run, "tester/run")
    assert len(fake_hub.repo("tester/run").commits) == 2

    with pytest.raises(FileNotFoundError, match="no saved model"):
        push_run_to_hub(run / "checkpoints", "tester/other")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        push_run_to_hub(tmp_path / "missing", "tester/other")


def test_trainer_push_to_hub_uploads_model_and_vocabulary(fake_hub, tmp_path):
    """The transformers-native path: `PretrainConfig(push_to_hub=True)` + `Trainer.push_to_hub()`."""
    interactions = generate_synthetic_interactions(num_users=20, num_items=25, mean_events=20, seed=2)
    sequences, vocabulary = build_sequences(interactions)
    splits = leave_one_out_split(sequences)
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, hidden_size=8, attention_dim=4,
                                                 linear_dim=4, max_seq_len=10, max_position_embeddings=11,
                                                 num_negatives=4))
    args = PretrainConfig(output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=10,
                          eval_strategy="no", save_strategy="no", load_best_model_at_end=False, disable_tqdm=True,
                          push_to_hub=True, hub_model_id="tester/trainer-push", hub_strategy="end")
    trainer = PretrainTrainer(model=model, args=args, train_dataset=splits["train"], processing_class=vocabulary)
    trainer.train()
    trainer.push_to_hub(commit_message="end of training")
    files = fake_hub.files("tester/trainer-push")
    assert {"config.json", "model.safetensors", "item_vocabulary.json", "README.md"} <= set(files), sorted(files)
    loaded = AutoModelForNextItemPrediction.from_pretrained("tester/trainer-push")
    assert torch.equal(scores(loaded, splits["test"]), scores(trainer.model, splits["test"]))
    assert ItemVocabulary.from_pretrained("tester/trainer-push") == vocabulary


@pytest.mark.skipif(not os.environ.get("HF_GENREC_REAL_HUB_TOKEN"),
                    reason="real-Hub test: set HF_GENREC_REAL_HUB_TOKEN to a write token to run it")
def test_real_hub_round_trip(tmp_path):
    """Opt-in: the same push and load against huggingface.co, in a private repo deleted afterwards."""
    from huggingface_hub import HfApi

    token = os.environ["HF_GENREC_REAL_HUB_TOKEN"]
    api = HfApi(token=token)
    repo_id = f"{api.whoami()['name']}/hf-genrec-ci-{uuid.uuid4().hex[:8]}"
    run = tmp_path / "run"
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=5, hidden_size=8, attention_dim=4, linear_dim=4))
    model.save_pretrained(run)
    ItemVocabulary.from_items(["a", "b", "c", "d", "e"]).save_pretrained(run)
    try:
        push_run_to_hub(run, repo_id, private=True, token=token)
        loaded = AutoModelForNextItemPrediction.from_pretrained(repo_id, token=token)
        assert ItemVocabulary.from_pretrained(repo_id, token=token).raw_ids == ["a", "b", "c", "d", "e"]
        for name, tensor in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], tensor), name
    finally:
        api.delete_repo(repo_id, missing_ok=True)
