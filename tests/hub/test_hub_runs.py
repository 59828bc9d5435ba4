"""`--push-to-hub` on `hf-genrec reward` and `hf-genrec posttrain`: the run goes to the (fake) Hub and loads
back by repo id with the same predictions."""

import pytest
import torch
import yaml

from hf_genrec import AutoModelForNextItemPrediction
from hf_genrec.cli import main as cli_main
from hf_genrec.data import (
    ItemVocabulary,
    SequenceCollator,
    generate_synthetic_interactions,
    write_movielens_file,
)
from hf_genrec.data import split_sequences as split
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.workflows.pretrain import pretrain

TINY_MODEL = {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 20,
              "max_position_embeddings": 21, "num_negatives": 8}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """(prepared data dir, pretrained run dir) on 40 synthetic users."""
    root = tmp_path_factory.mktemp("hub_runs")
    interactions = generate_synthetic_interactions(num_users=40, num_items=30, mean_events=22, seed=6)
    prepare_dataset(write_movielens_file(interactions, root / "ratings.dat"), root / "data")
    recipe = {"model": TINY_MODEL, "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16,
                                                 "disable_tqdm": True}, "data": {}, "method": {}}
    pretrain(root / "data", root / "pretrained", recipe=recipe)
    return root / "data", root / "pretrained"


def evaluation_batch(data_dir):
    from datasets import load_from_disk

    rows = split(load_from_disk(str(data_dir / "sequences")), "leave-one-out")["test"]
    return SequenceCollator(max_seq_len=TINY_MODEL["max_seq_len"])([rows[i] for i in range(len(rows))])


def test_reward_ensemble_push_and_load(pretrained, fake_hub, tmp_path):
    rewards = pytest.importorskip("hf_genrec.rewards")
    data_dir, model_dir = pretrained
    output = tmp_path / "reward"
    code = cli_main(["reward", "--data", str(data_dir), "--model", str(model_dir), "--output", str(output),
                     "--ensemble", "2", "--max-steps", "2", "--push-to-hub", "tester/reward-tiny"])
    assert code == 0
    files = fake_hub.files("tester/reward-tiny")
    for name in ("ensemble.json", "item_vocabulary.json", "member-0/config.json", "member-0/model.safetensors",
                 "member-1/model.safetensors"):
        assert name in files, sorted(files)
    assert not [f for f in files if f.startswith("checkpoints/") or f.endswith((".bin", ".pt", ".pth"))], files

    local = rewards.RewardEnsemble.from_pretrained(output)
    remote = rewards.RewardEnsemble.from_pretrained("tester/reward-tiny")
    assert remote.num_members == 2 and remote.vocabulary == ItemVocabulary.from_pretrained(data_dir)
    batch = evaluation_batch(data_dir)
    inputs = (batch["item_ids"], batch["attention_mask"], batch["timestamps"], batch["query_timestamps"],
              batch["target_item_ids"][:, None])
    assert torch.equal(remote.predict_candidates(*inputs).members, local.predict_candidates(*inputs).members)


def test_posttrained_model_push_and_load(pretrained, fake_hub, tmp_path):
    pytest.importorskip("hf_genrec.workflows.posttrain")
    data_dir, model_dir = pretrained
    output = tmp_path / "sft"
    code = cli_main(["posttrain", "--method", "sft", "--data", str(data_dir), "--model", str(model_dir),
                     "--output", str(output), "--max-steps", "2", "--no-bf16", "--push-to-hub", "tester/sft-tiny"])
    assert code == 0
    files = fake_hub.files("tester/sft-tiny")
    for name in ("config.json", "model.safetensors", "item_vocabulary.json", "README.md", "recipe.yaml",
                 "metrics.json"):
        assert name in files, sorted(files)
    assert not [f for f in files if f.startswith("checkpoints/") or f.endswith((".bin", ".pt", ".pth"))], files
    assert yaml.safe_load(files["recipe.yaml"])["method"]

    batch = evaluation_batch(data_dir)
    inputs = (batch["item_ids"], batch["attention_mask"], batch["timestamps"], batch["query_timestamps"])
    local = AutoModelForNextItemPrediction.from_pretrained(output).eval()
    remote = AutoModelForNextItemPrediction.from_pretrained("tester/sft-tiny").eval()
    with torch.no_grad():
        assert torch.equal(remote.score_next_items(*inputs), local.score_next_items(*inputs))
    assert ItemVocabulary.from_pretrained("tester/sft-tiny") == ItemVocabulary.from_pretrained(data_dir)
