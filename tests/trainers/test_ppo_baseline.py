"""PPO's baseline choice (`PPOConfig.baseline`): the learned value head (default) or the RLOO leave-one-out
group mean, and the explained variance of the rewards by the baseline that the trainer logs."""


import pytest
import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model, weights_digest

from hf_genrec.data import SequenceCollator
from hf_genrec.losses.ppo import explained_variance, leave_one_out_baseline
from hf_genrec.trainers import PPOConfig
from hf_genrec.trainers.policy import PREPARED
from hf_genrec.trainers.ppo import ADVANTAGES, REWARDS, VALUE_HEAD


def first_rows_batch(rows, count: int = 4):
    return SequenceCollator(max_seq_len=12)([rows[i] for i in range(count)])


def test_leave_one_out_baseline_matches_hand_computation():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 6.0], [5.0, 5.0, 1.0, 1.0]])
    # Row 0: the others sum to 11, 10, 9, 6 -> /3; row 1: 7, 7, 11, 11 -> /3.
    expected_baseline = torch.tensor([[11 / 3, 10 / 3, 3.0, 2.0], [7 / 3, 7 / 3, 11 / 3, 11 / 3]])
    expected_advantages = torch.tensor([[-8 / 3, -4 / 3, 0.0, 4.0], [8 / 3, 8 / 3, -8 / 3, -8 / 3]])
    baseline = leave_one_out_baseline(rewards)
    torch.testing.assert_close(baseline, expected_baseline)
    torch.testing.assert_close(rewards - baseline, expected_advantages)
    torch.testing.assert_close((rewards - baseline).sum(dim=1), torch.zeros(2), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        leave_one_out_baseline(torch.ones(3, 1))


def test_explained_variance_matches_hand_computation_and_pools_processes():
    targets = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert explained_variance(targets, targets).item() == pytest.approx(1.0)
    assert explained_variance(targets, torch.full((4,), 2.5)).item() == pytest.approx(0.0)
    # Residuals (0, 0, 0, −1): variance 0.25 − 0.0625 = 0.1875; Var(targets) = 1.25 -> 1 − 0.15.
    assert explained_variance(targets, torch.tensor([1.0, 2.0, 3.0, 5.0])).item() == pytest.approx(0.85)

    # Two "processes" holding halves give the statistic of the whole.
    predictions = torch.tensor([1.5, 1.0, 3.5, 3.0])
    seen = []
    explained_variance(targets[2:], predictions[2:], lambda stats: seen.append(stats) or stats)
    pooled = explained_variance(targets[:2], predictions[:2], lambda stats: stats + seen[0])
    assert pooled.item() == pytest.approx(explained_variance(targets, predictions).item())


def test_config_checks_the_baseline(tmp_path):
    with pytest.raises(ValueError, match="baseline must be one of"):
        PPOConfig(str(tmp_path), baseline="value")
    with pytest.raises(ValueError, match="samples_per_context=1; set samples_per_context >= 2"):
        PPOConfig(str(tmp_path), baseline="group_mean", samples_per_context=1)


def test_group_mean_advantages_are_leave_one_out_rewards(tmp_path, train_rows):
    trainer = posttrain_trainer("ppo", tmp_path, train_rows, reward_model=FakeRewardEnsemble(),
                                baseline="group_mean", whiten_advantages=False, samples_per_context=3)
    assert not hasattr(trainer.policy, VALUE_HEAD)
    torch.manual_seed(0)
    with torch.no_grad():
        prepared = trainer._prepare_step([first_rows_batch(train_rows)])[0][PREPARED]
    rewards, advantages = prepared[REWARDS], prepared[ADVANTAGES]  # (C, 3)
    assert rewards.shape[1] == 3 and rewards.shape[0] >= 4
    for context in range(rewards.shape[0]):
        for sample in range(3):
            others = [rewards[context, k].item() for k in range(3) if k != sample]
            expected = rewards[context, sample].item() - sum(others) / 2
            assert advantages[context, sample].item() == pytest.approx(expected, abs=1e-5)
    torch.testing.assert_close(advantages.sum(dim=1), torch.zeros(rewards.shape[0]), atol=1e-5, rtol=0)

    # The logged explained variance is that of the rewards by their leave-one-out means.
    flat, baselines = rewards.double().reshape(-1), (rewards - advantages).double().reshape(-1)
    expected = 1 - ((flat - baselines) - (flat - baselines).mean()).pow(2).mean() / (flat - flat.mean()).pow(2).mean()
    assert trainer._metrics["train"]["baseline/explained_variance"][-1] == pytest.approx(expected.item(), abs=1e-6)


def test_group_mean_ppo_trains_without_a_value_head(tmp_path, train_rows):
    model = tiny_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = posttrain_trainer("ppo", tmp_path / "run", train_rows, model=model, reward_model=FakeRewardEnsemble(),
                                baseline="group_mean", max_steps=2)
    trainer.train()
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not any(name.startswith(VALUE_HEAD) for name in model.state_dict())
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"baseline/explained_variance", "objective/kl", "loss/policy_avg"} <= logged
    assert "loss/value_avg" not in logged
    trainer.save_model(str(tmp_path / "saved"))
    assert not (tmp_path / "saved" / f"{VALUE_HEAD}.safetensors").exists()


def test_value_head_baseline_logs_its_explained_variance(tmp_path, train_rows):
    trainer = posttrain_trainer("ppo", tmp_path, train_rows, reward_model=FakeRewardEnsemble(), max_steps=1)
    trainer.train()
    logged = [entry["baseline/explained_variance"] for entry in trainer.state.log_history
              if "baseline/explained_variance" in entry]
    assert len(logged) == 1 and logged[0] <= 1.0


def test_default_baseline_trains_the_same_weights_as_value_head(tmp_path, train_rows):
    digests = []
    for name, settings in (("omitted", {}), ("explicit", {"baseline": "value_head"})):
        trainer = posttrain_trainer("ppo", tmp_path / name, train_rows, reward_model=FakeRewardEnsemble(), max_steps=3,
                                    **settings)
        trainer.train()
        digests.append(weights_digest(trainer.policy))
    assert digests[0] == digests[1]
