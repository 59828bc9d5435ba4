"""`push_run_to_hub` uploads an allow-list of the files hf_genrec writes into a run folder (issue 17, item 7).

Before, it uploaded everything that was not a checkpoint or a pickle: a `.env`, an SSH key or notes left in the
folder were published, and a symbolic link named like a run file published whatever it pointed to.
"""

from __future__ import annotations

import os

import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.cli import main as cli_main
from hf_genrec.data import ItemVocabulary, generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.hub import push_run_to_hub
from hf_genrec.rewards import RewardEnsemble

TINY = dict(hidden_size=16, num_hidden_layers=1, attention_dim=8, linear_dim=8, max_seq_len=12,
            max_position_embeddings=15, num_negatives=8)

# What a run folder may hold that is not the run's to publish.
FOREIGN = {
    ".env": "HF_TOKEN=hf_secret",
    ".ssh/id_ed25519": "-----BEGIN OPENSSH PRIVATE KEY-----",
    "id_rsa": "-----BEGIN RSA PRIVATE KEY-----",
    "notes.txt": "private notes",
    "notes/config.json": "{}",
    "metrics.json.bak": "{}",
    "README.md~": "editor backup",
    "member-0/.env": "KEY=1",
    "adapter/notes.md": "draft",
    "training_args.bin": "pickle",
    "optimizer.pt": "pickle",
    "checkpoints/checkpoint-2/model.safetensors": "state",
    "runs/events.out.tfevents.1": "log",
}


def write_files(root, files):
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


def all_files(root):
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def test_push_uploads_only_the_files_a_run_writes(fake_hub, tmp_path):
    run = tmp_path / "run"
    HSTUForNextItemPrediction(HSTUConfig(num_items=5, hidden_size=8, attention_dim=4, linear_dim=4)).save_pretrained(run)
    ItemVocabulary.from_items([10, 20, 30, 40, 50]).save_pretrained(run)
    run_files = {"README.md": "card", "recipe.yaml": "model: {}", "metrics.json": "{}", "value_head.safetensors": "w",
                 "adapter/adapter_config.json": "{}", "adapter/adapter_model.safetensors": "w",
                 "adapter/README.md": "peft card"}
    write_files(run, {**run_files, **FOREIGN})

    push_run_to_hub(run, "tester/run")
    uploaded = set(fake_hub.files("tester/run"))
    assert uploaded == {"config.json", "model.safetensors", "item_vocabulary.json", *run_files}
    assert fake_hub.files("tester/run")["model.safetensors"] == (run / "model.safetensors").read_bytes()

    # ignore_patterns can only leave out more.
    push_run_to_hub(run, "tester/run-no-card", ignore_patterns=["README.md", "adapter/*"])
    assert set(fake_hub.files("tester/run-no-card")) == {f for f in uploaded if f != "README.md"
                                                          and not f.startswith("adapter/")}


@pytest.mark.parametrize("linked", ["item_vocabulary.json", "member-1"])
def test_symbolic_link_in_a_run_is_refused(fake_hub, tmp_path, linked):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "id_rsa").write_text("-----BEGIN RSA PRIVATE KEY-----")
    run = tmp_path / "run"
    members = [HSTUForRewardModeling(HSTUConfig(num_items=3, **TINY))]
    RewardEnsemble(members, seeds=[0], vocabulary=ItemVocabulary.from_items([1, 2, 3])).save_pretrained(run)
    if linked == "item_vocabulary.json":
        (run / linked).unlink()
        os.symlink(secret / "id_rsa", run / linked)
    else:
        (secret / "config.json").write_text("{}")
        os.symlink(secret, run / linked)
    with pytest.raises(ValueError, match=f"{linked}' is a symbolic link"):
        push_run_to_hub(run, "tester/linked")
    assert not fake_hub.repos  # refused before anything was created or sent


def test_every_file_real_runs_write_is_uploaded(fake_hub, tmp_path):
    """A post-training run with an extra head and a LoRA adapter, and a saved reward ensemble: all they wrote
    goes up except checkpoints and pickles; what was dropped into the folder afterwards does not."""
    interactions = generate_synthetic_interactions(num_users=30, num_items=25, mean_events=20, seed=5)
    prepare_dataset(write_movielens_file(interactions, tmp_path / "ratings.dat"), tmp_path / "data")
    vocabulary = ItemVocabulary.from_pretrained(tmp_path / "data")
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **TINY))
    model.save_pretrained(tmp_path / "pretrained")
    vocabulary.save_pretrained(tmp_path / "pretrained")
    members = [HSTUForRewardModeling(HSTUConfig(num_items=vocabulary.num_items, **TINY)) for _ in range(2)]
    RewardEnsemble(members, seeds=[0, 1], vocabulary=vocabulary).save_pretrained(tmp_path / "reward")

    output = tmp_path / "ppo"
    assert cli_main(["posttrain", "--method", "ppo", "--data", str(tmp_path / "data"), "--model",
                     str(tmp_path / "pretrained"), "--reward-model", str(tmp_path / "reward"), "--output", str(output),
                     "--max-steps", "1", "--batch-size", "8", "--lora-r", "2"]) == 0
    for run, repo in ((output, "tester/ppo"), (tmp_path / "reward", "tester/reward")):
        written = {f for f in all_files(run) if not f.startswith("checkpoints/") and f != "training_args.bin"}
        write_files(run, {".env": "HF_TOKEN=hf_secret", "notes.txt": "private"})
        push_run_to_hub(run, repo)
        assert set(fake_hub.files(repo)) == written, repo
    assert {"value_head.safetensors", "adapter/adapter_model.safetensors", "metrics.json", "recipe.yaml",
            "README.md"} <= set(fake_hub.files("tester/ppo"))
    assert {"ensemble.json", "member-1/model.safetensors"} <= set(fake_hub.files("tester/reward"))


def test_allow_list_spells_the_names_their_owners_define(tmp_path):
    """The hub cannot import the workflows (they import it); their file names are checked here instead."""
    from hf_genrec.benchmark.report import IMPROVEMENT_FIGURE, LAMBDA_FIGURE, RESULTS_JSON, RESULTS_MD
    from hf_genrec.data.vocabulary import VOCABULARY_FILE
    from hf_genrec.hub import run_files
    from hf_genrec.rewards.ensemble import ENSEMBLE_FILE, member_directory
    from hf_genrec.trainers.cql import CQL_HEAD
    from hf_genrec.trainers.policy import ADAPTER_DIR
    from hf_genrec.trainers.ppo import VALUE_HEAD
    from hf_genrec.workflows import common
    from hf_genrec.workflows.reward import METRICS_FILE as REWARD_METRICS_FILE

    names = [common.METRICS_FILE, common.RECIPE_FILE, REWARD_METRICS_FILE, VOCABULARY_FILE, ENSEMBLE_FILE,
             f"{member_directory(12)}/config.json", f"{member_directory(12)}/model.safetensors",
             f"{ADAPTER_DIR}/adapter_config.json", f"{CQL_HEAD}.safetensors", f"{VALUE_HEAD}.safetensors",
             RESULTS_JSON, RESULTS_MD, IMPROVEMENT_FIGURE, LAMBDA_FIGURE,
             "model-00001-of-00002.safetensors", "model.safetensors.index.json"]
    write_files(tmp_path, dict.fromkeys(names, "x"))
    assert run_files(tmp_path) == sorted(names)
