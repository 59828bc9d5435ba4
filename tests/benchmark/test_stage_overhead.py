"""Fixed costs a benchmark stage no longer pays (issue 16): model cards rendered for checkpoints nothing reads, and
full garbage collections that walk every object of the imported libraries."""

import gc
import weakref
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hf_genrec.benchmark import stages
from hf_genrec.benchmark.stages import StageStore, freeze_long_lived_objects, stage
from hf_genrec.data import generate_synthetic_interactions, write_movielens_file
from hf_genrec.data.prepared import prepare_dataset
from hf_genrec.workflows import pretrain

MODEL = {"hidden_size": 16, "attention_dim": 8, "linear_dim": 8, "max_seq_len": 12, "max_position_embeddings": 15,
         "num_negatives": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("overhead")
    interactions = generate_synthetic_interactions(num_users=24, num_items=25, mean_events=20, seed=5)
    prepare_dataset(write_movielens_file(interactions, root / "ratings.dat"), root / "data")
    return root / "data"


@pytest.fixture(scope="module")
def pretrained(data, tmp_path_factory) -> tuple[Path, dict]:
    """A 3-epoch pretraining run that keeps every epoch's checkpoint."""
    output = tmp_path_factory.mktemp("runs") / "hstu-run"
    report = pretrain(data, output, recipe={"model": MODEL, "training": {
        "num_train_epochs": 3, "per_device_train_batch_size": 8, "seed": 0, "disable_tqdm": True, "save_total_limit": 5}})
    return output, report


def test_checkpoints_get_no_model_card_and_the_run_folder_gets_one(pretrained):
    output, report = pretrained
    checkpoints = sorted((output / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 3  # one per epoch, each complete: weights, optimizer state, trainer state
    for checkpoint in checkpoints:
        assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()
        assert not (checkpoint / "README.md").exists()
    assert [path.parent for path in output.rglob("README.md")] == [output]
    card = ModelCard.load(output / "README.md")
    # The one card names the run and holds the selected epoch's test results.
    assert card.data.to_dict()["model-index"][0]["name"] == output.name
    results = {(r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results[("test", "ndcg@10")] == pytest.approx(report["test"]["ndcg@10"], abs=5e-5)


def test_a_checkpoint_save_still_writes_the_card_when_the_run_pushes_to_the_hub(data, tmp_path):
    from hf_genrec.data.prepared import load_prepared
    from hf_genrec.models import HSTUConfig, HSTUForNextItemPrediction
    from hf_genrec.trainers import PretrainConfig, PretrainTrainer

    splits, vocabulary = load_prepared(data)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **MODEL))
    trainer = PretrainTrainer(model=model, args=PretrainConfig(str(tmp_path / "ckpt"), disable_tqdm=True),
                              train_dataset=splits["train"], eval_dataset=splits["validation"],
                              processing_class=vocabulary)
    trainer.save_model(str(tmp_path / "internal"), _internal_call=True)  # what `_save_checkpoint` does
    assert (tmp_path / "internal" / "model.safetensors").is_file()
    assert not (tmp_path / "internal" / "README.md").exists()
    # A run that pushes its checkpoints shows a card with them (set after __init__: no Hub repo is created).
    trainer.args.push_to_hub = True
    trainer.save_model(str(tmp_path / "pushed"), _internal_call=True)
    assert ModelCard.load(tmp_path / "pushed" / "README.md").data.library_name == "hf_genrec"


class _Node:
    """A reference-cycle member the garbage collector must reclaim (refcounting alone cannot)."""

    def __init__(self):
        self.self_reference = self


@pytest.fixture
def unfrozen(monkeypatch):
    """This process as if no stage had run yet; the frozen objects are handed back to the collector afterwards."""
    monkeypatch.setattr(stages, "_FROZEN", False)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_first_stage_collects_garbage_then_freezes_what_lives_on(unfrozen, tmp_path):
    garbage = _Node()
    collected = weakref.ref(garbage)
    del garbage  # unreachable, but kept alive by its own cycle until a collection
    alive = _Node()
    assert collected() is not None and gc.get_freeze_count() == 0

    seen = []

    @stage("probe")
    def probe(output):
        seen.append(gc.get_freeze_count())
        made_here = _Node()
        reclaimed = weakref.ref(made_here)
        del made_here
        gc.collect()  # what `Trainer.train` runs first: it still reclaims the stage's own garbage
        return {"reclaimed": reclaimed() is None}

    store = StageStore(tmp_path)
    assert store.run(probe).result == {"reclaimed": True}
    assert collected() is None  # the garbage was collected before the freeze, not kept in the permanent generation
    assert seen[0] > 0  # the first stage ran with the long-lived objects frozen (the cycle `alive` among them)
    assert alive.self_reference is alive
    assert freeze_long_lived_objects() is False  # once per process: later stages freeze nothing more
