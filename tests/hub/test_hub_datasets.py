"""Prepared datasets on the (in-process fake) Hub: `hf-genrec prepare --push-to-hub REPO` shares the folder as a
dataset repo that `datasets.load_dataset` reads, and every training command trains from it with
`--dataset_name REPO` exactly as from the local folder; the run's fingerprint holds the repo and its commit."""

import json

import pytest
import torch
from datasets import Dataset, load_dataset, load_from_disk
from huggingface_hub import DatasetCard, HfApi, ModelCard
from safetensors.torch import load_file

from hf_genrec.cli import main as cli_main
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import hf_dataset_path, load_prepared
from hf_genrec.workflows import RunOptions
from hf_genrec.workflows.common import TrainingRun

REPO = "tester/ml-tiny"
TINY_RECIPE = {
    "model": {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 20,
              "max_position_embeddings": 21, "num_negatives": 8},
    "training": {"num_train_epochs": 1, "per_device_train_batch_size": 16, "disable_tqdm": True},
    "data": {}, "method": {},
}


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """`load_dataset` converts what it downloads into its own cache: keep it inside the test."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets_cache")


@pytest.fixture
def ratings(tmp_path):
    interactions = generate_synthetic_interactions(num_users=30, num_items=25, mean_events=20, seed=4)
    return write_movielens_file(interactions, tmp_path / "raw" / "ratings.dat")


def prepare_and_push(ratings, output, repo=REPO):
    assert cli_main(["prepare", "--input", str(ratings), "--output", str(output), "--push-to-hub", repo]) == 0


def same_splits(a, b) -> bool:
    return a.keys() == b.keys() and all(a[name].to_dict() == b[name].to_dict() for name in a)


def test_prepare_pushes_a_dataset_repo_that_load_dataset_reads(ratings, tmp_path, fake_hub):
    prepare_and_push(ratings, tmp_path / "data")
    files = fake_hub.files(REPO, repo_type="dataset")
    assert {"item_vocabulary.json", "prepare.json", "README.md"} <= set(files), sorted(files)
    assert [name for name in files if name.endswith(".parquet")], sorted(files)
    assert not any(name.endswith(".arrow") or name.startswith("sequences/") for name in files)
    assert files["item_vocabulary.json"] == (tmp_path / "data" / "item_vocabulary.json").read_bytes()
    manifest = json.loads(files["prepare.json"])
    assert manifest["input"] == "raw/ratings.dat" and str(tmp_path) not in files["prepare.json"].decode()
    assert manifest["num_users"] == 30
    card = DatasetCard(files["README.md"].decode())
    assert card.data.dataset_info["splits"][0]["name"] == "sequences"  # datasets' metadata kept
    assert {"hf_genrec", "recommendation"} <= set(card.data.tags)
    assert f"hf-genrec pretrain --dataset_name {REPO}" in card.text and "30 users" in card.text

    # Any `datasets` user reads the sequences as they were saved, features included.
    local = load_from_disk(str(tmp_path / "data" / "sequences"))
    pushed = load_dataset(REPO, split="sequences")
    assert pushed.features == local.features and pushed.to_dict() == local.to_dict()
    for split in ("leave-one-out", "temporal"):
        hub_splits, hub_vocabulary = load_prepared(hf_dataset_path(REPO), split)
        local_splits, local_vocabulary = load_prepared(tmp_path / "data", split)
        assert same_splits(hub_splits, local_splits) and hub_vocabulary == local_vocabulary


def test_pretrain_from_dataset_name_equals_pretrain_from_data(ratings, tmp_path, fake_hub):
    prepare_and_push(ratings, tmp_path / "data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps(TINY_RECIPE))  # JSON is YAML
    runs = {}
    for name, data_flag in (("local", ["--data", str(tmp_path / "data")]), ("hub", ["--dataset-name", REPO])):
        output = tmp_path / name
        code = cli_main(["pretrain", *data_flag, "--output", str(output), "--recipe", str(recipe), "--max-steps", "2",
                         "--no-bf16"])
        assert code == 0
        runs[name] = output
    local, hub = (load_file(runs[name] / "model.safetensors") for name in ("local", "hub"))
    assert local.keys() == hub.keys() and all(torch.equal(local[k], hub[k]) for k in local)
    metrics = {name: json.loads((runs[name] / "metrics.json").read_text()) for name in runs}
    assert metrics["hub"]["test"] == metrics["local"]["test"]
    vocabulary = (tmp_path / "data" / "item_vocabulary.json").read_bytes()
    assert (runs["hub"] / "item_vocabulary.json").read_bytes() == vocabulary
    card = ModelCard.load(runs["hub"] / "README.md")
    assert card.data.datasets == [REPO]
    assert {r.dataset_type for r in card.data.eval_results} == {REPO}
    assert ModelCard.load(runs["local"] / "README.md").data.datasets is None

    # reward and posttrain take the flag as well, with the same result as from the folder.
    for command, outputs, weights in (("reward", ["--ensemble", "1"], "member-0/model.safetensors"),
                                      ("posttrain", ["--method", "sft", "--no-bf16"], "model.safetensors")):
        trained = {}
        for name, data_flag in (("local", ["--data", str(tmp_path / "data")]), ("hub", ["--dataset_name", REPO])):
            output = tmp_path / f"{command}-{name}"
            assert cli_main([command, *data_flag, "--model", str(runs["local"]), "--output", str(output),
                             "--max-steps", "1", *outputs]) == 0
            trained[name] = load_file(output / weights)
        assert all(torch.equal(trained["local"][k], trained["hub"][k]) for k in trained["local"])
    assert ModelCard.load(tmp_path / "posttrain-hub" / "README.md").data.datasets == [REPO]

    # evaluate reads the same test split from the Hub as from the folder.
    evaluated = {}
    for name, data_flag in (("local", ["--data", str(tmp_path / "data")]), ("hub", ["--dataset_name", REPO])):
        output = tmp_path / f"eval-{name}.json"
        assert cli_main(["evaluate", "--model", str(runs["local"]), *data_flag, "--output", str(output)]) == 0
        evaluated[name] = json.loads(output.read_text())
    assert evaluated["hub"] == evaluated["local"] and evaluated["local"]["num_users"] > 0


def test_fingerprint_holds_the_repo_and_the_commit_read(ratings, tmp_path, fake_hub):
    prepare_and_push(ratings, tmp_path / "data")
    first = HfApi().dataset_info(REPO).sha

    def data_input(output, source=None):
        run = TrainingRun("pretrain", tmp_path / output, RunOptions())
        run.load_data(source or hf_dataset_path(REPO), "leave-one-out")
        return run.inputs["prepared_data"], run.dataset_name

    assert data_input("a") == (f"hub:datasets/{REPO}@{first}", REPO)
    assert data_input("b", hf_dataset_path(REPO, first)) == data_input("c")  # a pinned commit: the same data
    # New data pushed to the repo: the same repo id is other data, so a checkpoint of the first run won't resume.
    other = generate_synthetic_interactions(num_users=12, num_items=25, mean_events=20, seed=5)
    prepare_and_push(write_movielens_file(other, tmp_path / "raw2" / "ratings.dat"), tmp_path / "data2")
    second = HfApi().dataset_info(REPO).sha
    assert second != first and data_input("d")[0] == f"hub:datasets/{REPO}@{second}"
    # A local folder keeps its content digest (checkpoints written before this change still resume).
    assert data_input("e", tmp_path / "data")[0].startswith("sha256:")


def test_dataset_name_errors_name_the_flag_and_the_fix(ratings, tmp_path, fake_hub, capsys):
    output = str(tmp_path / "run")
    assert cli_main(["pretrain", "--dataset_name", "tester/missing", "--output", output]) == 2
    error = capsys.readouterr().err
    assert "--dataset_name 'tester/missing'" in error and "no such dataset repo" in error and "Fix:" in error

    # A dataset repo that `prepare --push-to-hub` did not write (no vocabulary) is refused by name.
    Dataset.from_dict({"user_id": ["u"], "item_ids": [[1, 2]]}).push_to_hub("tester/plain", split="sequences")
    assert cli_main(["pretrain", "--dataset_name", "tester/plain", "--output", output]) == 2
    error = capsys.readouterr().err
    assert "no item_vocabulary.json" in error and "--push-to-hub" in error

    prepare_and_push(ratings, tmp_path / "data")
    assert cli_main(["pretrain", "--dataset_name", f"{REPO}@no-such-branch", "--output", output]) == 2
    assert "no such revision" in capsys.readouterr().err
    assert cli_main(["pretrain", "--dataset_name", "not a repo!", "--output", output]) == 2
    assert "is not a Hub repo id" in capsys.readouterr().err
    assert not list((tmp_path / "run").glob("*"))  # refused before anything was written


@pytest.mark.parametrize("command", ["pretrain", "reward", "posttrain"])
def test_every_training_command_takes_one_of_data_and_dataset_name(command, tmp_path, capsys):
    extra = [] if command == "pretrain" else ["--model", str(tmp_path)]
    with pytest.raises(SystemExit) as both:
        cli_main([command, "--data", str(tmp_path), "--dataset_name", REPO, "--output", str(tmp_path / "o"), *extra])
    assert both.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit) as neither:
        cli_main([command, "--output", str(tmp_path / "o"), *extra])
    assert neither.value.code == 2 and "--data" in capsys.readouterr().err
