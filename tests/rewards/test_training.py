import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from reward_fixtures import TINY_MODEL, eval_batch, tiny_reward_args

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.cli import main
from hf_genrec.data import SequenceCollator, generate_synthetic_interactions, write_movielens_file
from hf_genrec.rewards import RewardEnsemble, predict_targets, rmse
from hf_genrec.trainers import RewardConfig, RewardTrainer
from hf_genrec.workflows.reward import bootstrap_users, train_plus_validation, train_reward_ensemble


def _inputs(batch):
    return {k: batch[k] for k in ("item_ids", "attention_mask", "timestamps", "query_timestamps")}


def test_training_is_deterministic_given_seeds(tiny_ensemble, tiny_data, tiny_pretrained, tmp_path):
    splits, vocabulary = tiny_data
    again = train_reward_ensemble(
        tiny_pretrained, splits["train"], splits["validation"], tiny_reward_args(tmp_path / "a"),
        vocabulary=vocabulary,
    )
    batch = eval_batch(splits, vocabulary)
    candidates = torch.arange(1, 11).repeat(8, 1)
    first = tiny_ensemble.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    second = again.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    assert torch.equal(first.members, second.members)
    assert (first.std > 0).all()
    # A different seed gives a different ensemble.
    other = train_reward_ensemble(
        tiny_pretrained, splits["train"], splits["validation"], tiny_reward_args(tmp_path / "b", seed=99, ensemble_size=1),
        vocabulary=vocabulary,
    )
    third = other.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    assert not torch.equal(third.members[0], first.members[0])


def test_bootstrap_resamples_users_with_replacement(tiny_data):
    splits, _ = tiny_data
    sample = bootstrap_users(splits["train"], seed=3)
    assert len(sample) == len(splits["train"])
    assert len(set(sample["user_id"])) < len(sample)  # with replacement: some users repeat
    assert sample["user_id"] == bootstrap_users(splits["train"], seed=3)["user_id"]
    assert sample["user_id"] != bootstrap_users(splits["train"], seed=4)["user_id"]


def test_trainer_records_metrics_and_evaluates_rewards(tiny_data, tiny_pretrained, tmp_path):
    splits, vocabulary = tiny_data
    model = HSTUForRewardModeling.from_pretrained(tiny_pretrained)
    args = tiny_reward_args(tmp_path, num_train_epochs=1)
    trainer = RewardTrainer(model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"])
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "reward/mse" in entry]
    assert logged and all("value/mse" in entry and "next_item/loss" not in entry for entry in logged)
    metrics = trainer.evaluate()
    assert {"eval_reward/rmse", "eval_reward/mae", "eval_value/rmse", "eval_num_cases"} <= set(metrics)
    assert not any("ndcg" in key or "hr@" in key for key in metrics)
    expected = predict_targets(RewardEnsemble([model]), splits["validation"])
    targets = np.asarray(splits["validation"]["target_rating"], dtype=np.float64)
    assert metrics["eval_reward/rmse"] == pytest.approx(rmse(expected.mean, targets), abs=1e-5)


def test_co_training_logs_the_next_item_loss(tiny_data, tiny_pretrained, tmp_path):
    splits, _ = tiny_data
    model = HSTUForRewardModeling.from_pretrained(tiny_pretrained)
    args = tiny_reward_args(tmp_path, num_train_epochs=1, next_item_loss_weight=0.5, eval_strategy="no")
    trainer = RewardTrainer(model, args=args, train_dataset=splits["train"])
    trainer.train()
    assert model.config.next_item_loss_weight == 0.5
    assert any("next_item/loss" in entry for entry in trainer.state.log_history)


def test_frozen_backbone_trains_only_the_heads(tiny_data, tiny_pretrained, tmp_path):
    splits, _ = tiny_data
    model = HSTUForRewardModeling.from_pretrained(tiny_pretrained)
    backbone = {k: v.clone() for k, v in model.model.state_dict().items()}
    head = model.reward_head.dense.weight.clone()
    args = tiny_reward_args(tmp_path, num_train_epochs=1, freeze_backbone=True, eval_strategy="no")
    RewardTrainer(model, args=args, train_dataset=splits["train"]).train()
    assert all(torch.equal(model.model.state_dict()[k], v) for k, v in backbone.items())
    assert not torch.equal(model.reward_head.dense.weight, head)
    with pytest.raises(ValueError, match="freeze_backbone=True with next_item_loss_weight"):
        RewardConfig(str(tmp_path), freeze_backbone=True, next_item_loss_weight=1.0)


def test_missing_and_nan_ratings_are_clear_errors(tiny_data, tmp_path):
    splits, vocabulary = tiny_data
    model = HSTUForRewardModeling(HSTUConfig(num_items=vocabulary.num_items, **TINY_MODEL))
    args = tiny_reward_args(tmp_path)
    with pytest.raises(ValueError, match="no 'ratings' column"):
        RewardTrainer(model, args=args, train_dataset=splits["train"].remove_columns("ratings"))
    rows = splits["train"].select(range(4)).to_dict()
    rows["ratings"][2][5] = float("nan")
    nan_train = Dataset.from_dict(rows, features=splits["train"].features)
    with pytest.raises(ValueError, match="column 'ratings' holds 1 NaN"):
        RewardTrainer(model, args=args, train_dataset=nan_train)
    rows = splits["validation"].select(range(4)).to_dict()
    rows["target_rating"][1] = float("nan")
    nan_eval = Dataset.from_dict(rows, features=splits["validation"].features)
    with pytest.raises(ValueError, match="'target_rating' holds 1 NaN"):
        RewardTrainer(model, args=args, train_dataset=splits["train"], eval_dataset=nan_eval)
    # A batch without rewards (e.g. from another collator) is refused by compute_loss.
    trainer = RewardTrainer(model, args=args, train_dataset=splits["train"], eval_dataset=splits["validation"])
    batch = SequenceCollator(max_seq_len=20)([splits["train"][0]])
    del batch["label_ratings"]
    with pytest.raises(ValueError, match="no 'label_ratings'"):
        trainer.compute_loss(model, batch)


def test_reward_command_end_to_end(tmp_path, capsys):
    ratings = write_movielens_file(
        generate_synthetic_interactions(num_users=50, num_items=30, mean_events=20, seed=2), tmp_path / "ratings.dat"
    )
    data = tmp_path / "data"
    assert main(["prepare", "--input", str(ratings), "--output", str(data)]) == 0
    from hf_genrec.data import ItemVocabulary

    vocabulary = ItemVocabulary.from_pretrained(data)
    pretrained = tmp_path / "pretrained"
    HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, **TINY_MODEL)).save_pretrained(pretrained)
    vocabulary.save_pretrained(pretrained)
    recipe = tmp_path / "reward.yaml"
    recipe.write_text("model:\n  reward_head_hidden_size: 4\ntraining:\n  per_device_train_batch_size: 16\n"
                      "  disable_tqdm: true\n")
    output = tmp_path / "reward"
    capsys.readouterr()
    args = ["reward", "--data", str(data), "--model", str(pretrained), "--output", str(output), "--ensemble", "2",
            "--seed", "5", "--epochs", "2", "--recipe", str(recipe)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| reward head (member 0) |" in printed and "| user mean |" in printed and "popularity bin" in printed
    report = json.loads((output / "reward_metrics.json").read_text())
    assert set(report["table"]["predictors"]) == {"reward_head", "ensemble_mean", "user_mean", "item_mean", "global_mean"}
    assert report["seeds"] == [5, 6] and report["std_by_item_popularity"]["num_bins"] == 5
    ensemble = RewardEnsemble.from_pretrained(output)
    assert ensemble.num_members == 2 and ensemble.config.reward_head_hidden_size == 4
    assert ensemble.trained_on["pretrained_model"] == str(pretrained)
    # The epoch of each member was chosen on validation RMSE.
    state = json.loads(sorted((output / "checkpoints" / "member-0").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert state["best_metric"] == min(e["eval_reward/rmse"] for e in state["log_history"] if "eval_reward/rmse" in e)
    # A second run refuses to mix into the same directory.
    assert main(args) == 2
    assert "already holds an earlier run" in capsys.readouterr().err


def test_train_plus_validation_adds_each_users_validation_event(tiny_data):
    splits, _ = tiny_data
    judge_data = train_plus_validation(splits)
    assert judge_data.column_names == splits["train"].column_names
    for row, train, validation in zip(judge_data, splits["train"], splits["validation"]):
        assert row["user_id"] == train["user_id"] == validation["user_id"]
        assert row["item_ids"] == train["item_ids"] + [validation["target_item_id"]]
