"""The model card's Hub metadata: `datasets` (a Hub dataset the model was trained on), `pipeline_tag`, the task
in `tags`, and `eval_results` (`model-index`) holding exactly the metrics the trainer logged."""

import pytest
from huggingface_hub import ModelCard
from posttrain_helpers import posttrain_trainer

from hf_genrec.evaluation.metrics import default_subsets
from hf_genrec.pipeline_task import TASK as PIPELINE_TASK
from hf_genrec.trainers.model_card import PIPELINE_TAG, TASK, TASK_TAGS, logged_metrics

REPO = "tester/ml-tiny"


@pytest.fixture(scope="module")
def evaluated_trainer(synthetic_data, tmp_path_factory):
    """An SFT trainer after one step, evaluated on the validation and test splits (as the workflows do)."""
    splits, vocabulary = synthetic_data
    trainer = posttrain_trainer("sft", tmp_path_factory.mktemp("card") / "run", splits["train"],
                                eval_dataset=splits["validation"], processing_class=vocabulary, max_steps=1)
    trainer.train()
    trainer.args.eval_subsets = list(default_subsets(has_windows=False))
    trainer.evaluate(splits["validation"], metric_key_prefix="validation")
    test = trainer.evaluate(splits["test"], metric_key_prefix="test")
    return trainer, test


def written_card(trainer, folder, dataset_name):
    trainer.dataset_name = dataset_name
    trainer.create_model_card(output_dir=str(folder))
    return ModelCard.load(folder / "README.md"), (folder / "README.md").read_text(encoding="utf-8")


def test_card_metadata_names_the_hub_dataset_task_and_logged_results(evaluated_trainer, tmp_path):
    trainer, test = evaluated_trainer
    card, text = written_card(trainer, tmp_path, REPO)
    data = card.data
    assert data.datasets == [REPO]
    assert data.pipeline_tag == PIPELINE_TAG == "other"
    assert TASK == PIPELINE_TASK  # the card names the task the pipeline is registered under
    assert {"hf_genrec", "sft", *TASK_TAGS} <= set(data.tags)
    assert data.library_name == "hf_genrec"
    assert "https://huggingface.co/datasets/tester/ml-tiny" in text

    results = {(r.dataset_split, r.metric_type): r for r in data.eval_results}
    logged = logged_metrics(trainer.state.log_history)
    expected = {(split, name) for split in ("validation", "test") for name in logged[split]
                if not name.endswith("num_users")}
    assert set(results) == expected
    # The test results are the values `evaluate` returned, as the card rounds them.
    assert results[("test", "ndcg@10")].metric_value == pytest.approx(test["test_ndcg@10"], abs=5e-5)
    assert results[("test", "high_reward_target/hr@10")].metric_value == \
        pytest.approx(test["test_high_reward_target/hr@10"], abs=5e-5)
    for result in data.eval_results:
        assert (result.task_type, result.dataset_type, result.dataset_name) == (TASK, REPO, REPO)
    assert card.data.to_dict()["model-index"][0]["name"] == data.model_name


def test_card_of_a_local_dataset_has_no_datasets_metadata(evaluated_trainer, tmp_path):
    trainer, _ = evaluated_trainer
    local = "ml-1m/ratings.dat (prepared at data/ml-1m)"
    card, text = written_card(trainer, tmp_path, local)
    assert card.data.datasets is None  # only a Hub repo id is valid metadata
    assert f"- Dataset: {local}" in text
    assert {r.dataset_type for r in card.data.eval_results} == {"custom"}
    assert {r.dataset_name for r in card.data.eval_results} == {local}
    # A local folder that looks like a repo id is no Hub dataset either.
    (tmp_path / "data" / "ml").mkdir(parents=True)
    card, _ = written_card(trainer, tmp_path / "card", str(tmp_path / "data" / "ml"))
    assert card.data.datasets is None


def test_card_without_evaluation_has_no_eval_results(synthetic_data, tmp_path):
    splits, vocabulary = synthetic_data
    trainer = posttrain_trainer("sft", tmp_path / "run", splits["train"], processing_class=vocabulary, max_steps=1)
    trainer.train()
    card, text = written_card(trainer, tmp_path / "card", "tester/ml-tiny")
    assert card.data.eval_results is None and "model-index" not in card.data.to_dict()
    assert card.data.datasets == ["tester/ml-tiny"] and card.data.pipeline_tag == "other"
    assert "No evaluation was run" in text
