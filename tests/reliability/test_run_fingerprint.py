"""Run folders that cannot mix runs: every checkpoint holds its run's fingerprint and `--resume` refuses another
run's; `--overwrite` deletes the earlier run's files (and nothing else); `recipe.yaml` is written only once the
run is about to train with it."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.trainers import PretrainConfig
from hf_genrec.trainers.base import CHECKPOINT_COMPLETE, training_fingerprint
from hf_genrec.workflows import posttrain, pretrain
from hf_genrec.workflows.common import check_resumable, input_digest

MODEL = {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 12, "max_position_embeddings": 15,
         "num_negatives": 8, "input_dropout": 0.2}


def recipe(epochs: int = 3, seed: int = 1, **training) -> dict:
    """A tiny pretraining recipe: 40 users in batches of 8 are 5 steps per epoch, checkpointed after each."""
    return {"model": MODEL, "training": {"num_train_epochs": epochs, "per_device_train_batch_size": 8, "seed": seed,
                                         "disable_tqdm": True, "save_total_limit": 10, **training}}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fingerprint")
    interactions = generate_synthetic_interactions(num_users=40, num_items=25, mean_events=20, seed=4)
    prepare_dataset(write_movielens_file(interactions, root / "ratings.dat"), root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    """A finished 3-epoch pretraining run (seed 1) with its checkpoints; copy it before changing it."""
    output = tmp_path_factory.mktemp("runs") / "run-a"
    pretrain(data, output, recipe=recipe())
    return output


def copy_of(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / run.name)
    return tmp_path / run.name


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_overwrite_then_resume_never_continues_the_earlier_run(data, finished_run, tmp_path):
    """The issue's case: run A (3 epochs, seed 1), run B there with --overwrite (1 epoch, seed 2), B --resume."""
    output = copy_of(finished_run, tmp_path)
    pretrain(data, output, recipe=recipe(epochs=1), seed=2, overwrite=True)
    assert sorted(path.name for path in (output / "checkpoints").iterdir()) == ["checkpoint-5"]  # A's are gone
    resumed = pretrain(data, output, recipe=recipe(epochs=1), seed=2, resume=True)

    uninterrupted = pretrain(data, tmp_path / "b-alone", recipe=recipe(epochs=1), seed=2)
    run_a = json.loads((finished_run / "metrics.json").read_text())
    assert resumed["seed"] == 2 and resumed["epochs_trained"] == 1
    assert resumed["test"] == uninterrupted["test"] != run_a["test"]
    assert json.loads((output / "metrics.json").read_text())["test"] == uninterrupted["test"]


class FailAtStep(TrainerCallback):
    """A run that fails (raises) after optimiser step 2, before its first checkpoint."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("failed at step 2")


def test_an_overwriting_run_that_fails_leaves_nothing_of_the_earlier_run(data, finished_run, tmp_path):
    output = copy_of(finished_run, tmp_path)
    with pytest.raises(RuntimeError, match="failed at step 2"):
        pretrain(data, output, recipe=recipe(epochs=1, learning_rate=0.01), overwrite=True, callbacks=[FailAtStep()])
    # No metrics, card, weights or checkpoints of run A beside the new run's recipe.
    assert sorted(path.name for path in output.iterdir()) == ["recipe.yaml"]
    assert "learning_rate: 0.01" in (output / "recipe.yaml").read_text()


def test_resume_with_another_recipe_is_refused_and_changes_nothing(data, finished_run, tmp_path):
    output = copy_of(finished_run, tmp_path)
    before = folder_state(output)
    with pytest.raises(ValueError, match=r"checkpoint-15 was written by a run with training\.learning_rate=0\.001; "
                                         r"this run has training\.learning_rate=0\.01\. Fix: "):
        pretrain(data, output, recipe=recipe(learning_rate=0.01), resume=True)
    with pytest.raises(ValueError, match=r"with seed=1, training\.num_train_epochs=3; this run has seed=2, "
                                         r"training\.num_train_epochs=5"):
        pretrain(data, output, recipe=recipe(epochs=5), seed=2, resume=True)
    with pytest.raises(ValueError, match=r"with model\.hidden_size=16; this run has model\.hidden_size=8"):
        pretrain(data, output, recipe={**recipe(), "model": {**MODEL, "hidden_size": 8}}, resume=True)
    assert folder_state(output) == before  # recipe.yaml still describes the weights beside it


def test_resume_with_other_data_is_refused(data, finished_run, tmp_path):
    output = copy_of(finished_run, tmp_path)
    same = shutil.copytree(data, tmp_path / "same-data")
    assert pretrain(same, output, recipe=recipe(), resume=True)["epochs_trained"] == 3  # the data, copied: fine
    interactions = generate_synthetic_interactions(num_users=40, num_items=25, mean_events=20, seed=5)
    prepare_dataset(write_movielens_file(interactions, tmp_path / "other.dat"), tmp_path / "other-data")
    with pytest.raises(ValueError, match=r"inputs\.prepared_data=sha256:\w{12}…; this run has inputs\.prepared_data="):
        pretrain(tmp_path / "other-data", output, recipe=recipe(), resume=True)


def test_checkpoint_without_fingerprint_is_refused(data, finished_run, tmp_path):
    output = copy_of(finished_run, tmp_path)
    for marker in (output / "checkpoints").glob(f"*/{CHECKPOINT_COMPLETE}"):  # as hf_genrec wrote them before
        content = json.loads(marker.read_text())
        marker.write_text(json.dumps({"global_step": content["global_step"], "epoch": content["epoch"]}))
    with pytest.raises(ValueError, match=r"checkpoint-15 in .* holds no run fingerprint .* start over with --overwrite"):
        pretrain(data, output, recipe=recipe(), resume=True)


def test_check_resumable_names_every_difference(tmp_path):
    checkpoint = tmp_path / "checkpoint-9"
    checkpoint.mkdir()
    stored = {"seed": 1, "training": {"learning_rate": 0.001, "lr_scheduler_type": "constant"}, "run": "pretrain"}
    (checkpoint / CHECKPOINT_COMPLETE).write_text(json.dumps({"global_step": 9, "run_fingerprint": stored}))
    check_resumable(checkpoint, json.loads(json.dumps(stored)))  # the same run: no error
    current = {"seed": 2, "training": {"learning_rate": 0.001, "lr_scheduler_type": "linear"}, "run": "pretrain",
               "lora_r": 4}
    with pytest.raises(ValueError) as error:
        check_resumable(checkpoint, current)
    assert str(error.value).startswith(
        "--resume: checkpoint-9 was written by a run with seed=1, training.lr_scheduler_type=constant, "
        "lora_r=(unset); this run has seed=2, training.lr_scheduler_type=linear, lora_r=4.")


def test_fingerprint_leaves_out_where_a_run_logs_and_saves(tmp_path):
    base = training_fingerprint(PretrainConfig(str(tmp_path / "a"), seed=3))
    same = training_fingerprint(PretrainConfig(str(tmp_path / "b"), seed=3, logging_steps=1, disable_tqdm=True,
                                               save_total_limit=5, dataloader_num_workers=2))
    assert base == same and base["seed"] == 3 and base["num_processes"] == 1
    assert training_fingerprint(PretrainConfig(str(tmp_path / "a"), seed=3, weight_decay=0.1)) != base
    assert training_fingerprint(PretrainConfig(str(tmp_path / "a"), seed=3, dataloader_drop_last=True)) != base


def test_input_digest_follows_the_data_not_the_paths_or_reports(data, finished_run, tmp_path):
    copy = shutil.copytree(data, tmp_path / "copy")
    (copy / "prepare.json").write_text(json.dumps({"input": "/somewhere/else.dat"}))
    assert input_digest(copy) == input_digest(data)
    (copy / "item_vocabulary.json").write_text((copy / "item_vocabulary.json").read_text().replace("1", "2", 1))
    assert input_digest(copy) != input_digest(data)

    model = copy_of(finished_run, tmp_path)
    digest = input_digest(model)
    shutil.rmtree(model / "checkpoints")
    (model / "README.md").write_text("edited card")
    (model / "metrics.json").write_text("{}")
    assert input_digest(model) == digest
    assert input_digest("someone/a-hub-model") == "hub:someone/a-hub-model"
    module = torch.nn.Linear(2, 2)
    before = input_digest(module)
    with torch.no_grad():
        module.weight[0, 0] += 1
    assert input_digest(module) != before


def test_overwrite_refuses_a_folder_holding_files_no_run_writes(data, finished_run, tmp_path):
    output = copy_of(finished_run, tmp_path)
    (output / ".env").write_text("TOKEN=secret")
    before = folder_state(output)
    with pytest.raises(FileExistsError, match=r"holds files an hf_genrec run does not write \(\['\.env'\]\), so "
                                              r"nothing was deleted"):
        pretrain(data, output, recipe=recipe(epochs=1), overwrite=True)
    assert folder_state(output) == before


def test_overwrite_refuses_a_folder_not_known_to_be_a_run(data, finished_run, tmp_path):
    output = tmp_path / "downloaded-model"
    output.mkdir()
    for name in ("config.json", "model.safetensors", "item_vocabulary.json"):
        shutil.copy(finished_run / name, output / name)
    before = folder_state(output)
    with pytest.raises(FileExistsError, match="not known to be an hf_genrec run folder"):
        pretrain(data, output, recipe=recipe(epochs=1), overwrite=True)
    assert folder_state(output) == before


def test_output_that_is_the_input_model_is_refused(data, finished_run, tmp_path):
    model = copy_of(finished_run, tmp_path)
    before = folder_state(model)
    with pytest.raises(ValueError, match=r"--output .* is the --model folder"):
        posttrain(data, model, model, method="sft", max_steps=1, overwrite=True)
    with pytest.raises(ValueError, match=r"--output .* is inside the --model folder"):
        posttrain(data, model, model / "sft", method="sft", max_steps=1)
    assert folder_state(model) == before


def test_resume_and_overwrite_together_are_refused(data, tmp_path):
    with pytest.raises(ValueError, match="--resume and --overwrite contradict each other"):
        pretrain(data, tmp_path / "run", recipe=recipe(epochs=1), resume=True, overwrite=True)
    assert not (tmp_path / "run").exists()


def test_resume_of_a_finished_run_without_checkpoints_is_refused(data, finished_run, tmp_path):
    output = tmp_path / "sft"
    posttrain(data, finished_run, output, method="sft", max_steps=2)  # post-training keeps no checkpoints
    before = folder_state(output)
    with pytest.raises(FileExistsError, match=r"holds a finished run \(metrics\.json\) but no complete checkpoint"):
        posttrain(data, finished_run, output, method="sft", max_steps=2, resume=True)
    assert folder_state(output) == before


def test_recipe_is_not_written_by_a_run_that_fails_before_training(data, tmp_path):
    bad_model = {**recipe(), "model": {**MODEL, "max_position_embeddings": 3}}  # shorter than max_seq_len
    with pytest.raises(ValueError, match="max_position_embeddings"):
        pretrain(data, tmp_path / "run", recipe=bad_model)
    assert not (tmp_path / "run" / "recipe.yaml").exists()


def test_a_second_concurrent_run_into_the_same_folder_fails_at_once(data, tmp_path):
    """While one run writes a folder (here: its lock is held), another run into it is refused before it reads or
    writes anything; once the first run is done, the folder is free again."""
    from hf_genrec.utils.io import OutputDirBusyError, output_dir_lock

    output = tmp_path / "run"
    with output_dir_lock(output):
        with pytest.raises(OutputDirBusyError, match="run"):
            pretrain(data, output, recipe=recipe(epochs=1))
        assert not output.exists()
    pretrain(data, output, recipe=recipe(epochs=1))
    assert (output / "metrics.json").is_file()
