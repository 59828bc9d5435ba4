"""A-SFT ablations (issue 13, item 7): baseline {value, user_mean, zero} × reward source {observed, model}, and the
tilt-matched control, RW-BC with w = r^p."""

import math

import pytest
import torch
from posttrain_helpers import item_quality, max_abs_difference, posttrain_trainer, tiny_model, trainable_state

from hf_genrec.trainers import ASFTConfig, ASFTTrainer, RWBCConfig, SFTConfig
from hf_genrec.trainers.asft import TILT_MATCHED, asft_ablation_grid
from hf_genrec.trainers.sft import tilt_matched_reward_power, weight_tilt

SGD = dict(optim="sgd", learning_rate=0.5, max_grad_norm=0.0, max_steps=2)
MAX_SEQ_LEN = 12  # tiny_config's window: the collator keeps the last MAX_SEQ_LEN + 1 events of a training row


def asft_variants() -> dict[str, dict]:
    return {name: settings for name, (method, settings) in asft_ablation_grid().items() if method == "asft"}


def test_grid_names_say_what_each_variant_is():
    grid = asft_ablation_grid()
    assert len(grid) == 7
    for name, (method, settings) in grid.items():
        if method == "asft":
            assert name == f"asft[baseline={settings['baseline']},reward={settings['reward_source']}]"
            ASFTConfig("unused", **settings)  # every variant is a valid config
    pairs = {(s["baseline"], s["reward_source"]) for s in asft_variants().values()}
    assert pairs == {(b, r) for b in ("value", "user_mean", "zero") for r in ("observed", "model")}
    assert grid["rwbc[reward_power=tilt_matched]"] == ("rwbc", {"reward_power": TILT_MATCHED})


def test_zero_baseline_with_observed_rewards_trains_without_a_reward_model(tmp_path, train_rows):
    for name, settings in asft_variants().items():
        needs = ASFTTrainer.needs_reward_model(ASFTConfig("unused", **settings))
        # The ensemble is queried for the value baseline and for model rewards, never otherwise.
        assert needs == (settings["baseline"] == "value" or settings["reward_source"] == "model"), name
        if needs:
            with pytest.raises(ValueError, match="reward_model"):
                posttrain_trainer("asft", tmp_path / "refused", train_rows, **settings)
    model = tiny_model(seed=1)
    start = trainable_state(model)
    posttrain_trainer("asft", tmp_path / "exp_rsft", train_rows, model=model, baseline="zero",
                      reward_source="observed", **SGD).train()
    assert max_abs_difference(start, trainable_state(model)) > 1e-3


def test_every_ablation_trains_and_the_variants_differ(tmp_path, train_rows, fake_reward_model):
    trained, weights = {}, {}
    for name, settings in asft_variants().items():
        model = tiny_model(seed=1)
        start = trainable_state(model)
        trainer = posttrain_trainer("asft", tmp_path / name, train_rows, model=model, reward_model=fake_reward_model,
                                    temperature=1.0, **settings, **SGD)
        weights[name] = trainer.training_weights().weights
        trainer.train()
        trained[name] = trainable_state(model)
        assert max_abs_difference(start, trained[name]) > 1e-3, name
    names = list(trained)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            # Different baselines or reward sources weigh the same positions differently, so they train apart.
            assert not torch.allclose(weights[a], weights[b]), (a, b)
            assert max_abs_difference(trained[a], trained[b]) > 1e-5, (a, b)


def test_a_constant_baseline_only_rescales_the_weights(tmp_path, train_rows, fake_reward_model):
    """The fake ensemble's value is 3 everywhere, so with the weights normalised per step and no clip the value
    baseline's exp((r − 3)/λ) and the zero baseline's exp(r/λ) train the same model: the baseline acts only through
    how it varies between contexts (what the user-mean baseline does and the tilt-matched control does not)."""
    trained = {}
    for baseline in ("value", "zero"):
        model = tiny_model(seed=1)
        posttrain_trainer("asft", tmp_path / baseline, train_rows, model=model, reward_model=fake_reward_model,
                          baseline=baseline, max_weight=None, normalize_weights=True, **SGD).train()
        trained[baseline] = trainable_state(model)
    model = tiny_model(seed=1)
    posttrain_trainer("asft", tmp_path / "user_mean", train_rows, model=model, baseline="user_mean", max_weight=None,
                      normalize_weights=True, **SGD).train()
    assert max_abs_difference(trained["value"], trained["zero"]) < 1e-5
    assert max_abs_difference(trained["value"], trainable_state(model)) > 1e-3


def hand_user_mean_weights(rows, temperature: float, max_weight: float) -> tuple[list[float], list[float]]:
    """A-SFT weights with the user-mean baseline, written out from the rows (no library code)."""
    weights, rewards = [], []
    for ratings in rows["ratings"]:
        window = ratings[-(MAX_SEQ_LEN + 1):]
        for t in range(len(window) - 1):
            baseline = sum(window[: t + 1]) / (t + 1)
            weights.append(min(math.exp((window[t + 1] - baseline) / temperature), max_weight))
            rewards.append(window[t + 1])
    return weights, rewards


def test_training_weights_are_the_trainers_weights(tmp_path, train_rows, fake_reward_model):
    trainer = posttrain_trainer("asft", tmp_path / "asft", train_rows, baseline="user_mean", temperature=0.7,
                                max_weight=5.0)
    weights = trainer.training_weights(batch_size=5)
    expected, rewards = hand_user_mean_weights(train_rows, 0.7, 5.0)
    torch.testing.assert_close(weights.weights, torch.tensor(expected, dtype=torch.float32))
    assert weights.rewards.tolist() == rewards
    assert not trainer._metrics["train"]  # the diagnostic leaves the training logs alone
    model_rewards = posttrain_trainer("asft", tmp_path / "model", train_rows, reward_model=fake_reward_model,
                                      baseline="zero", reward_source="model", max_weight=None).training_weights()
    windows = [row[-(MAX_SEQ_LEN + 1):] for row in train_rows["item_ids"]]
    items = torch.tensor([i for window in windows for i in window[1:]])  # the labels
    context = torch.tensor([i for window in windows for i in window[:-1]])  # the input event at each position
    # FakeRewardEnsemble's member mean at a position: quality(y) + 0.1·(x mod 3) + 0.4·mean_k sin(k·y), clamped.
    members = torch.stack([(item_quality(items) + 0.1 * (context % 3) + 0.4 * torch.sin(k * items.float())).clamp(1, 5)
                           for k in (1, 2, 3)])
    torch.testing.assert_close(model_rewards.weights, torch.exp(members.mean(0)))
    rwbc = posttrain_trainer("rwbc", tmp_path / "rwbc", train_rows, reward_power=2.5).training_weights()
    torch.testing.assert_close(rwbc.weights, torch.tensor(rewards) ** 2.5)
    sft = posttrain_trainer("sft", tmp_path / "sft", train_rows).training_weights()
    assert torch.equal(sft.weights, torch.ones(len(rewards)))


def test_tilt_matched_power_by_hand(tmp_path, train_rows):
    # Zero baseline, no clip: w = exp(r/λ), so the tilt 5 vs 3 is exp(2/λ) and p = (2/λ) / log(5/3).
    temperature = 2.0
    asft = posttrain_trainer("asft", tmp_path / "asft", train_rows, baseline="zero", temperature=temperature,
                             max_weight=None).training_weights()
    assert weight_tilt(asft.weights, asft.rewards) == pytest.approx(math.exp(2 / temperature), rel=1e-6)
    power = tilt_matched_reward_power(asft.weights, asft.rewards)
    assert power == pytest.approx(2 / temperature / math.log(5 / 3), rel=1e-6)


def test_tilt_matched_control_has_the_tilt_of_asft(tmp_path, train_rows):
    # The user-mean baseline and the clip make the A-SFT tilt a property of the data: measure it, match it.
    asft = posttrain_trainer("asft", tmp_path / "asft", train_rows, baseline="user_mean",
                             temperature=1.0).training_weights()
    power = tilt_matched_reward_power(asft.weights, asft.rewards)
    control = posttrain_trainer("rwbc", tmp_path / "rwbc", train_rows, reward_power=power).training_weights()
    assert power > 1.0  # A-SFT tilts towards 5s more than RW-BC's r does
    assert weight_tilt(control.weights, control.rewards) == pytest.approx(weight_tilt(asft.weights, asft.rewards),
                                                                          rel=1e-5)
    with pytest.raises(ValueError, match="no training position has reward 6"):
        weight_tilt(asft.weights, asft.rewards, high=6.0)
    ones = torch.ones_like(asft.rewards)
    with pytest.raises(ValueError, match="<= 1"):
        tilt_matched_reward_power(ones, asft.rewards)


def test_reward_power_one_is_reward_weighted_bc_and_other_powers_train_apart(tmp_path, train_rows):
    trained = {}
    for power in (1.0, 3.0):
        model = tiny_model(seed=1)
        posttrain_trainer("rwbc", tmp_path / str(power), train_rows, model=model, reward_power=power, **SGD).train()
        trained[power] = trainable_state(model)
    model = tiny_model(seed=1)
    posttrain_trainer("rwbc", tmp_path / "default", train_rows, model=model, **SGD).train()
    assert max_abs_difference(trained[1.0], trainable_state(model)) == 0.0
    assert max_abs_difference(trained[1.0], trained[3.0]) > 1e-3


@pytest.mark.parametrize("kwargs, match", [
    ({"weighting": "reward", "reward_power": 0.0}, "reward_power must be a finite number > 0, got 0.0"),
    ({"weighting": "reward", "reward_power": float("nan")}, "reward_power must be a finite number > 0"),
    ({"weighting": "none", "reward_power": 2.0}, "reward_power=2.0 only applies with weighting='reward'"),
])
def test_reward_power_is_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SFTConfig("unused", **kwargs)
    assert RWBCConfig("unused", reward_power=2.0).reward_power == 2.0
