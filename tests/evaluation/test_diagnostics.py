"""Per-method diagnostics (issue 13, item 8), each against an independent computation written out in the test."""

import math

import numpy as np
import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import SequenceCollator, build_sequences, generate_synthetic_interactions, split_sequences
from hf_genrec.evaluation import JudgeScores, RankingPredictions, bootstrap_mean_ci
from hf_genrec.evaluation.diagnostics import (
    case_users,
    effective_sample_size,
    history_length_buckets,
    judge_ranking_point,
    paired_differences_by_bucket,
    paired_differences_by_history_length,
    paired_differences_by_target_rating,
    plot_judge_vs_ranking,
    policy_kl,
)

HORIZON = 3


def windowed_predictions(ranks, target_ratings, window_rewards) -> RankingPredictions:
    """Rows of the `future` split: users of HORIZON rows each, window positions 0..HORIZON-1."""
    n = len(ranks)
    return RankingPredictions(
        ranks=torch.as_tensor(ranks, dtype=torch.long),
        target_ratings=torch.as_tensor(target_ratings, dtype=torch.float32),
        history_rewards=torch.zeros(n),
        window_rewards=torch.as_tensor(window_rewards, dtype=torch.float32),
        window_positions=torch.arange(n) % HORIZON,
    )


@pytest.fixture
def study():
    """Two seeds of a method and of the reference on 12 users × 3 rows with random ranks and ratings."""
    rng = np.random.default_rng(0)
    num_users = 12
    ratings = rng.integers(1, 6, size=num_users * HORIZON).astype(float)
    window = np.repeat(ratings.reshape(num_users, HORIZON).sum(axis=1), HORIZON)
    lengths = rng.integers(1, 80, size=num_users * HORIZON)
    seeds = {name: [windowed_predictions(rng.integers(1, 30, size=ratings.size), ratings, window) for _ in range(2)]
             for name in ("method", "reference")}
    return seeds, ratings, lengths


def hand_ndcg10(rank: int) -> float:
    return 1.0 / math.log2(rank + 1) if rank <= 10 else 0.0


def hand_bucket_differences(seeds, row_buckets, keep=None):
    """{bucket: (S, U_bucket) per-user method − reference differences}, by loops over rows."""
    n = len(row_buckets)
    keep = [True] * n if keep is None else keep
    out = {}
    for bucket in sorted(set(b for b, k in zip(row_buckets, keep) if k)):
        users = sorted({i // HORIZON for i in range(n) if keep[i] and row_buckets[i] == bucket})
        per_seed = []
        for method, reference in zip(seeds["method"], seeds["reference"]):
            row = []
            for user in users:
                rows = [i for i in range(user * HORIZON, (user + 1) * HORIZON) if keep[i] and row_buckets[i] == bucket]
                row.append(sum(hand_ndcg10(int(method.ranks[i])) - hand_ndcg10(int(reference.ranks[i]))
                               for i in rows) / len(rows))
            per_seed.append(row)
        out[bucket] = np.array(per_seed)
    return out


def test_case_users_group_window_rows():
    predictions = windowed_predictions([1] * 6, [5.0] * 6, [10.0] * 6)
    assert case_users(predictions).tolist() == [0, 0, 0, 1, 1, 1]
    loo = RankingPredictions(ranks=torch.ones(4, dtype=torch.long), target_ratings=torch.ones(4),
                             history_rewards=torch.ones(4))
    assert case_users(loo).tolist() == [0, 1, 2, 3]


def test_paired_differences_by_target_rating_by_hand(study):
    seeds, ratings, _ = study
    results = paired_differences_by_target_rating(seeds["method"], seeds["reference"], num_resamples=200, seed=3)
    expected = hand_bucket_differences(seeds, ratings.tolist())
    assert list(results) == sorted(expected)
    for rating, differences in expected.items():
        result = results[rating]
        assert result.difference == pytest.approx(differences.mean(), abs=1e-12)
        assert result.num_users == differences.shape[1]
        assert result.num_targets == int((ratings == rating).sum())
        # The interval resamples seeds and users of exactly these paired per-user differences.
        _, low, high = bootstrap_mean_ci(differences, num_resamples=200, seed=3)
        assert (result.low, result.high) == pytest.approx((low, high), abs=1e-12)
        assert result.low <= result.difference <= result.high


def test_paired_differences_by_history_length_in_a_subset_by_hand(study):
    seeds, ratings, lengths = study
    edges = (10, 40)
    labels = history_length_buckets(lengths, edges)
    hand_labels = ["[0, 10)" if n < 10 else "[10, 40)" if n < 40 else "[40, inf)" for n in lengths]
    assert labels.tolist() == hand_labels
    window = seeds["method"][0].window_rewards.numpy()
    median = np.median(window[::HORIZON])  # over users, each once
    keep = (window > median).tolist()
    results = paired_differences_by_history_length(seeds["method"], seeds["reference"], lengths, edges,
                                                   subset="high_reward_trajectory", num_resamples=100)
    expected = hand_bucket_differences(seeds, hand_labels, keep)
    assert list(results) == [b for b in ("[0, 10)", "[10, 40)", "[40, inf)") if b in expected]
    for bucket, differences in expected.items():
        assert results[bucket].difference == pytest.approx(differences.mean(), abs=1e-12)
        assert results[bucket].num_users == differences.shape[1]


def test_paired_differences_on_leave_one_out_rows_are_per_row():
    # Without test windows every row is its own user: the difference is the mean of the row differences.
    ratings = torch.tensor([5.0, 5.0, 3.0, 5.0])
    method = RankingPredictions(ranks=torch.tensor([1, 3, 20, 2]), target_ratings=ratings, history_rewards=ratings)
    reference = RankingPredictions(ranks=torch.tensor([2, 3, 1, 40]), target_ratings=ratings, history_rewards=ratings)
    results = paired_differences_by_target_rating(method, reference, num_resamples=50)
    expected_5 = np.mean([hand_ndcg10(1) - hand_ndcg10(2), 0.0, hand_ndcg10(2) - 0.0])
    assert results[5.0].difference == pytest.approx(expected_5)
    assert (results[5.0].num_users, results[3.0].num_users) == (3, 1)
    assert results[3.0].difference == pytest.approx(0.0 - hand_ndcg10(1))


def test_paired_differences_refuse_unpaired_inputs(study):
    seeds, ratings, _ = study
    other = windowed_predictions(seeds["method"][0].ranks, np.roll(ratings, 1), seeds["method"][0].window_rewards)
    with pytest.raises(ValueError, match="not on the same evaluation rows"):
        paired_differences_by_bucket(other, seeds["reference"][0], ratings)
    with pytest.raises(ValueError, match="same number"):
        paired_differences_by_bucket(seeds["method"], seeds["reference"][:1], ratings)
    with pytest.raises(ValueError, match="one bucket per evaluation row"):
        paired_differences_by_bucket(seeds["method"], seeds["reference"], ratings[:-1])
    with pytest.raises(ValueError, match="per-row ranking metric"):
        paired_differences_by_bucket(seeds["method"], seeds["reference"], ratings, metric="ndcg")


def test_effective_sample_size_by_hand():
    assert effective_sample_size(torch.ones(8)).ess == pytest.approx(8.0)
    one_hot = effective_sample_size(torch.tensor([0.0, 3.0, 0.0, 0.0]))
    assert (one_hot.ess, one_hot.fraction, one_hot.num_positions) == (pytest.approx(1.0), pytest.approx(0.25), 4)
    weights = np.random.default_rng(1).exponential(size=50)
    probabilities = weights / weights.sum()
    result = effective_sample_size(weights)
    assert result.ess == pytest.approx(1.0 / sum(p * p for p in probabilities))  # the normalised-weight form
    assert result.fraction == pytest.approx(result.ess / 50)
    assert effective_sample_size(7.0 * weights).ess == pytest.approx(result.ess)  # scale-free
    with pytest.raises(ValueError, match=">= 0"):
        effective_sample_size(torch.tensor([1.0, -1.0]))


def tiny_model(seed: int) -> HSTUForNextItemPrediction:
    torch.manual_seed(seed)
    return HSTUForNextItemPrediction(HSTUConfig(
        num_items=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=1, attention_dim=8, linear_dim=8,
        max_seq_len=12, max_position_embeddings=15, input_dropout=0.0, linear_dropout=0.0))


@pytest.fixture(scope="module")
def splits():
    interactions = generate_synthetic_interactions(num_users=10, num_items=30, mean_events=20, seed=5)
    sequences, _ = build_sequences(interactions)
    return split_sequences(sequences, "leave-one-out")


def test_effective_sample_size_of_rwbc_training_weights(splits, tmp_path):
    from hf_genrec.trainers import RWBCConfig, RWBCTrainer

    trainer = RWBCTrainer(tiny_model(0), args=RWBCConfig(str(tmp_path), disable_tqdm=True, report_to=[]),
                          train_dataset=splits["train"])
    result = effective_sample_size(trainer.training_weights().weights)
    # RW-BC weighs each supervised position (every event after the first of the 13-event window) by its rating.
    ratings = [r for row in splits["train"]["ratings"] for r in row[-13:][1:]]
    assert result.num_positions == len(ratings)
    assert result.ess == pytest.approx(sum(ratings) ** 2 / sum(r * r for r in ratings), rel=1e-6)


def brute_force_kl(policy, reference, row) -> float:
    """KL over the items not in the row's history, one row at a time, softmax in float64 by hand."""
    window = row["item_ids"][-12:]
    times = row["timestamps"][-12:]
    inputs = dict(item_ids=torch.tensor([window]), attention_mask=torch.ones(1, len(window), dtype=torch.long),
                  timestamps=torch.tensor([times]), query_timestamps=torch.tensor([times[1:] + [row["target_timestamp"]]]))
    seen = set(row["item_ids"])
    candidates = [i for i in range(1, 31) if i not in seen]
    with torch.no_grad():
        p_scores = policy.score_next_items(**inputs)[0].double().numpy()[candidates]
        q_scores = reference.score_next_items(**inputs)[0].double().numpy()[candidates]
    log_p = p_scores - np.log(np.exp(p_scores - p_scores.max()).sum()) - p_scores.max()
    log_q = q_scores - np.log(np.exp(q_scores - q_scores.max()).sum()) - q_scores.max()
    return float((np.exp(log_p) * (log_p - log_q)).sum())


def test_policy_kl_against_brute_force(splits):
    policy, reference = tiny_model(1), tiny_model(2)
    rows = splits["test"]
    kl = policy_kl(policy, reference, rows, SequenceCollator(max_seq_len=12), batch_size=4)
    expected = [brute_force_kl(policy, reference, rows[i]) for i in range(len(rows))]
    assert kl.shape == (len(rows),)
    np.testing.assert_allclose(kl.numpy(), expected, rtol=1e-4, atol=1e-6)
    assert kl.min() > 0
    assert policy_kl(policy, tiny_model(1), rows, SequenceCollator(max_seq_len=12)).abs().max() < 1e-6


def test_judge_ranking_point_and_figure(study, tmp_path):
    seeds, ratings, _ = study
    rankings = seeds["method"]
    rng = np.random.default_rng(4)
    judges = [JudgeScores(scores=torch.as_tensor(rng.normal(3, 1, len(ratings))), member_scores=torch.zeros(2, len(ratings)),
                          items=torch.zeros(len(ratings), 1, dtype=torch.long), rewards=torch.zeros(len(ratings), 1),
                          steps=torch.ones(len(ratings), dtype=torch.long)) for _ in rankings]
    point = judge_ranking_point(rankings, judges, num_resamples=100)
    window = rankings[0].window_rewards.numpy()
    high_users = [u for u in range(len(ratings) // HORIZON) if window[u * HORIZON] > np.median(window[::HORIZON])]
    expected_x = np.mean([[np.mean([hand_ndcg10(int(r.ranks[i])) for i in range(u * HORIZON, (u + 1) * HORIZON)])
                           for u in high_users] for r in rankings])
    expected_y = np.mean([[j.scores[u * HORIZON:(u + 1) * HORIZON].mean().item()
                           for u in range(len(ratings) // HORIZON)] for j in judges])
    assert point.ranking == pytest.approx(expected_x, abs=1e-12)
    assert point.judge == pytest.approx(expected_y, abs=1e-12)
    assert point.ranking_low <= point.ranking <= point.ranking_high
    assert point.judge_low <= point.judge <= point.judge_high
    pytest.importorskip("matplotlib")
    path = plot_judge_vs_ranking({"A-SFT": point, "RW-BC": point}, tmp_path / "judge_vs_ranking.png")
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
