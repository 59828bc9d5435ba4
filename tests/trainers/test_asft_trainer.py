"""A-SFT's two limits: λ → ∞ is SFT; small λ moves probability mass toward high-reward logged items, far
more than reward-weighted BC does."""

import math

import torch
from datasets import Dataset
from posttrain_helpers import max_abs_difference, posttrain_trainer, tiny_model, trainable_state

SGD = dict(optim="sgd", learning_rate=0.5, max_grad_norm=0.0, max_steps=2)


def test_very_large_temperature_reproduces_sft(tmp_path, train_rows):
    runs = {}
    for name, method, settings in [
        ("sft", "sft", {}),
        ("asft_inf", "asft", {"temperature": 1e9, "baseline": "user_mean", "max_weight": None}),
        ("asft_1", "asft", {"temperature": 1.0, "baseline": "user_mean", "max_weight": None}),
    ]:
        model = tiny_model(seed=2)
        start = trainable_state(model)
        posttrain_trainer(method, tmp_path / name, train_rows, model=model, **SGD, **settings).train()
        runs[name] = trainable_state(model)
    update = max_abs_difference(start, runs["sft"])
    assert update > 1e-3
    assert max_abs_difference(runs["sft"], runs["asft_inf"]) < 1e-5 * max(1.0, update)
    assert max_abs_difference(runs["sft"], runs["asft_1"]) > 1e-2 * update  # λ = 1 is not SFT


def two_outcome_rows(num_users: int = 32) -> Dataset:
    """Every user watches items 1..4 (rated 3), then item 10 (rated 5) for half of them, item 11 (rated 1)
    for the other half: the logging policy is 50/50 on the last step, the rewards are not."""
    item_ids, ratings, timestamps = [], [], []
    for user in range(num_users):
        good = user % 2 == 0
        item_ids.append([1, 2, 3, 4, 10 if good else 11])
        ratings.append([3.0, 3.0, 3.0, 3.0, 5.0 if good else 1.0])
        timestamps.append([1_000_000 + 3600 * k for k in range(5)])
    return Dataset.from_dict({"item_ids": item_ids, "ratings": ratings, "timestamps": timestamps})


def log_odds_good_vs_bad(model) -> float:
    """log π(10 | 1..4) − log π(11 | 1..4)."""
    model.eval()
    history = torch.tensor([[1, 2, 3, 4]])
    times = torch.tensor([[1_000_000 + 3600 * k for k in range(4)]])
    queries = torch.tensor([[1_000_000 + 3600 * k for k in range(1, 5)]])
    with torch.no_grad():
        scores = model.score_next_items(history, torch.ones_like(history), times, queries)
    log_probs = torch.log_softmax(scores, dim=-1)[0]
    return (log_probs[10] - log_probs[11]).item()


def test_small_temperature_moves_mass_to_high_reward_items(tmp_path):
    rows = two_outcome_rows()
    results = {}
    for name, method, settings in [
        ("sft", "sft", {}),
        ("rwbc", "rwbc", {}),
        ("asft", "asft", {"temperature": 0.5, "baseline": "user_mean"}),
        ("asft_zero", "asft", {"temperature": 0.5, "baseline": "zero"}),
    ]:
        model = tiny_model(seed=3)
        trainer = posttrain_trainer(method, tmp_path / name, rows, model=model, per_device_train_batch_size=8,
                                    num_train_epochs=15, learning_rate=1e-2, **settings)
        trainer.train()
        results[name] = log_odds_good_vs_bad(model)
    # SFT clones the 50/50 logging policy: log-odds 0. A weighted method's fixed point is π ∝ π_logging · w,
    # so the log-odds become log(w_good / w_bad): RW-BC (w = r) log 5 ≈ 1.6 (approached from above, slowly);
    # A-SFT with the user-mean baseline (3) w = min(e^(2/0.5), 20) = 20 vs e^(-2/0.5), log-odds
    # log 20 + 4 ≈ 7.0; with b = 0, w = 20 vs e^(1/0.5), log-odds log 20 − 2 ≈ 1.0.
    assert abs(results["sft"]) < 0.3
    assert abs(results["asft"] - (math.log(20) + 4)) < 0.5
    assert abs(results["asft_zero"] - (math.log(20) - 2)) < 0.3
    # A-SFT moves the mass toward the high-advantage item far more than reward-weighted BC does.
    assert 1.0 < results["rwbc"] < results["asft"] - 4


def test_asft_weights_are_wired_to_rewards_and_baselines(tmp_path, train_rows, fake_reward_model):
    from hf_genrec.data import SequenceCollator
    from hf_genrec.losses.asft import user_mean_baseline
    from hf_genrec.trainers.policy import PREPARED
    from hf_genrec.trainers.sft import POSITION_WEIGHTS

    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(3)])
    supervised = batch["labels"] > 0
    cases = {
        ("observed", "zero"): batch["label_ratings"][supervised],
        ("observed", "user_mean"): (batch["label_ratings"] - user_mean_baseline(batch["ratings"], batch["attention_mask"]))[supervised],
        # The fake ensemble's value is 3 everywhere; its reward of the logged item is its members' mean.
        ("model", "value"): fake_reward_model.predict_positions(batch["item_ids"], labels=batch["labels"]).mean[supervised] - 3.0,
    }
    for (source, baseline), advantages in cases.items():
        trainer = posttrain_trainer("asft", tmp_path, train_rows, reward_model=fake_reward_model, temperature=0.7,
                                    max_weight=5.0, reward_source=source, baseline=baseline)
        weights = trainer._prepare_micro_batch(dict(batch))[PREPARED][POSITION_WEIGHTS]
        torch.testing.assert_close(weights, torch.exp(advantages / 0.7).clamp(max=5.0))
