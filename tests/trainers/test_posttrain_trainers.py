"""Every post-training trainer runs end to end on a tiny model and saves the recommender it evaluated.

What each method's training does to the policy is tested in `test_method_effects.py` and
`test_asft_trainer.py`."""

import pytest
import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model

from hf_genrec import AutoModelForNextItemPrediction, HSTUForNextItemPrediction
from hf_genrec.data import SequenceCollator
from hf_genrec.evaluation import evaluate_ranking
from hf_genrec.trainers import ASFTConfig, CQLConfig, DPOConfig, PPOConfig, SFTConfig

METHODS = ("sft", "rwbc", "asft", "dpo", "ipo", "cql", "ppo")
EXPECTED_METRICS = {
    "sft": ["logps/logged"],
    "rwbc": ["weights/mean"],
    "asft": ["weights/mean", "weights/clipped_frac", "advantages/mean"],
    "dpo": ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "pairs/kept_frac"],
    "ipo": ["rewards/margins", "pairs/kept_frac"],
    "cql": ["loss/regression", "loss/penalty", "q/logged"],
    "ppo": ["objective/kl", "objective/scores", "policy/clipfrac_avg", "loss/value_avg"],
}
HEAD_FILES = {"cql": "cql_head.safetensors", "ppo": "value_head.safetensors"}


@pytest.mark.parametrize("method", METHODS)
def test_trainer_runs_end_to_end_and_saves_a_recommender(method, tmp_path, synthetic_data):
    splits, vocabulary = synthetic_data
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = posttrain_trainer(method, tmp_path / "run", splits["train"], model=model,
                                reward_model=FakeRewardEnsemble(), eval_dataset=splits["validation"],
                                processing_class=vocabulary, max_steps=3)
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert set(EXPECTED_METRICS[method]) <= logged, logged
    metrics = trainer.evaluate()
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items() if k in before)

    trainer.save_model(str(tmp_path / "saved"))
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "saved")
    assert type(loaded) is HSTUForNextItemPrediction
    assert (tmp_path / "saved" / "item_vocabulary.json").is_file()
    for name, value in loaded.state_dict().items():  # the recommender's weights, heads left out
        torch.testing.assert_close(value, trainer.policy.state_dict()[name])
    # The saved recommender ranks exactly as the trainer evaluated it.
    reloaded = evaluate_ranking(loaded, splits["validation"], SequenceCollator(max_seq_len=12))["all"]
    assert reloaded["ndcg@10"] == pytest.approx(metrics["eval_ndcg@10"], abs=1e-6)
    assert reloaded["num_users"] == len(splits["validation"])
    if method in HEAD_FILES:
        assert (tmp_path / "saved" / HEAD_FILES[method]).is_file()
    card = (tmp_path / "saved" / "README.md").read_text()
    assert trainer._name in card and "ndcg@10" in card and "learning_rate" in card


def test_methods_that_query_rewards_need_a_reward_model(tmp_path, train_rows):
    for method in ("dpo", "ipo", "ppo"):
        with pytest.raises(ValueError, match="reward_model"):
            posttrain_trainer(method, tmp_path, train_rows)
    with pytest.raises(ValueError, match="reward_model"):
        posttrain_trainer("asft", tmp_path, train_rows, baseline="value")
    posttrain_trainer("asft", tmp_path, train_rows, baseline="user_mean")  # fully offline: no reward model


@pytest.mark.parametrize(
    "config_class, values, message",
    [
        (ASFTConfig, {"temperature": -1.0}, "temperature"),
        (ASFTConfig, {"baseline": "median"}, "baseline"),
        (ASFTConfig, {"reward_source": "judge"}, "reward_source"),
        (ASFTConfig, {"max_weight": 0.0}, "max_weight"),
        (SFTConfig, {"weighting": "exp"}, "weighting"),
        (DPOConfig, {"beta": 0.0}, "beta"),
        (DPOConfig, {"loss_type": "hinge"}, "loss_type"),
        (DPOConfig, {"confidence_z": -1.0}, "confidence_z"),
        (CQLConfig, {"alpha": -0.1}, "alpha"),
        (PPOConfig, {"cliprange": 1.5}, "cliprange"),
        (PPOConfig, {"ppo_epochs": 0}, "ppo_epochs"),
    ],
)
def test_configs_reject_invalid_values(tmp_path, config_class, values, message):
    with pytest.raises(ValueError, match=message):
        config_class(str(tmp_path), **values)
