"""Exact evaluation of policies in the simulated world (issue 14, items 3-4): every number is checked against an
independent computation (per-context loops over `World.true_reward`, hand-computed toys), not against itself."""

import math

import numpy as np
import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.data import ItemVocabulary
from hf_genrec.rewards import RewardEnsemble
from hf_genrec.simulation import (
    EvaluationContexts,
    LoggingPolicy,
    ObservationModel,
    World,
    ensemble_proxy,
    evaluate_policy,
    exposure_gini,
    kl_divergence,
    logging_policy_probabilities,
    oracle_probabilities,
    proxy_accuracy,
    recommender_policy,
    rollout_value,
    simulate_logs,
    uniform_probabilities,
)

NUM_USERS, NUM_ITEMS, EVENTS, CUT = 40, 30, 8, 5
POLICY = LoggingPolicy(strength=1.0, coverage=0.5, seed=2)


@pytest.fixture(scope="module")
def world():
    return World.synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS, dim=4, seed=1)


@pytest.fixture(scope="module")
def simulated(world):
    observation = ObservationModel(trap_share=0.2)
    return simulate_logs(world, events_per_user=EVENTS, policy=POLICY, observation=observation, seed=0)


@pytest.fixture(scope="module")
def contexts(simulated):
    return EvaluationContexts.from_truth(simulated[1], CUT)


def true_rewards_by_loop(world, contexts):
    """r*(c, i) one context at a time: an independent path to the (C, V) rewards."""
    return np.stack([world.true_reward(np.array([u]), h[None, :])[0] for u, h in zip(contexts.users, contexts.history)])


def value_by_loop(world, contexts, probabilities):
    rewards = true_rewards_by_loop(world, contexts)
    return sum(float(np.dot(p, r)) for p, r in zip(probabilities, rewards)) / len(contexts)


def truth_proxy(world, boost=None):
    """A proxy equal to r* (plus `boost[item]` when given)."""

    def proxy(contexts, items):
        rows = np.arange(len(contexts))[:, None]
        rewards = world.true_reward(contexts.users, contexts.history)[rows, items]
        return rewards if boost is None else rewards + boost[items]

    return proxy


def test_oracle_has_the_highest_true_value(world, contexts):
    unseen = np.ones((len(contexts), NUM_ITEMS), dtype=bool)
    for row, history in enumerate(contexts.history):
        unseen[row, history] = False
    random = np.random.default_rng(0).dirichlet(np.ones(NUM_ITEMS), len(contexts)) * unseen
    policies = {
        "oracle": oracle_probabilities(world, contexts),
        "logging": logging_policy_probabilities(world, POLICY, contexts),
        "uniform": uniform_probabilities(world, contexts),
        "random": random / random.sum(axis=1, keepdims=True),
    }
    values = {name: evaluate_policy(world, contexts, p).true_value for name, p in policies.items()}
    for name, probabilities in policies.items():
        assert values[name] == pytest.approx(value_by_loop(world, contexts, probabilities), rel=1e-10)
    rewards = true_rewards_by_loop(world, contexts)
    best = np.mean([max(r[i] for i in range(NUM_ITEMS) if unseen[c, i]) for c, r in enumerate(rewards)])
    assert values["oracle"] == pytest.approx(best, rel=1e-10)
    assert values["oracle"] > max(values["logging"], values["uniform"], values["random"]) + 0.1
    assert values["logging"] > values["uniform"]
    # A softmax oracle at a high temperature tends to uniform, at a low one to the argmax.
    assert evaluate_policy(world, contexts, oracle_probabilities(world, contexts, temperature=1e-3)).true_value == (
        pytest.approx(values["oracle"]))
    hot = oracle_probabilities(world, contexts, temperature=1e6)
    np.testing.assert_allclose(hot, policies["uniform"], atol=1e-5)


def test_kl_of_logging_policy_to_itself_and_to_uniform_on_three_items():
    world = World.synthetic(num_users=2, num_items=3, dim=2, seed=0)
    contexts = EvaluationContexts(np.array([0, 1]), np.full((2, 0), -1))
    policy = LoggingPolicy(strength=1.5)
    logging = logging_policy_probabilities(world, policy, contexts)
    uniform = uniform_probabilities(world, contexts)
    result = evaluate_policy(world, contexts, logging, reference=uniform, logging_policy=logging)
    assert result.kl_to_logging == 0.0
    expected = []  # by hand: p_i = exp(1.5 r_i) / sum_j exp(1.5 r_j), KL = sum_i p_i log(p_i / (1/3))
    for user in (0, 1):
        rewards = [float(world.true_reward(np.array([user]), np.full((1, 0), -1))[0, i]) for i in range(3)]
        weights = [math.exp(1.5 * r) for r in rewards]
        expected.append(sum(w / sum(weights) * math.log(3 * w / sum(weights)) for w in weights))
    assert result.kl_to_reference == pytest.approx(sum(expected) / 2, rel=1e-12)
    assert result.kl_to_reference > 0.01
    # Zeros: 0 log 0 = 0, mass where the reference has none is +inf, smoothing makes it finite.
    p, q = np.array([[0.5, 0.5, 0.0]]), np.array([[0.25, 0.25, 0.5]])
    assert kl_divergence(p, q) == pytest.approx(math.log(2))
    assert kl_divergence(q, p) == math.inf
    smoothed = 0.5 * p + 0.5 / 3
    assert kl_divergence(q, p, epsilon=0.5) == pytest.approx(sum(a * math.log(a / b) for a, b in zip(q[0], smoothed[0])))


def test_proxy_equal_to_truth_has_no_gap_and_perfect_accuracy(world, simulated, contexts):
    truth = simulated[1]
    logging = logging_policy_probabilities(world, POLICY, contexts)
    result = evaluate_policy(world, contexts, logging, proxy=truth_proxy(world))
    assert result.hacking_gap == pytest.approx(0.0, abs=1e-12)
    assert result.proxy_value == pytest.approx(value_by_loop(world, contexts, logging), rel=1e-10)
    accuracy = proxy_accuracy(world, contexts, truth_proxy(world), truth.support, items_per_context=6)
    for name in ("on_support", "off_support"):
        assert accuracy[name].num_pairs == 6 * len(contexts)
        assert accuracy[name].rmse == pytest.approx(0.0, abs=1e-12)
        assert accuracy[name].pearson == pytest.approx(1.0)
        assert accuracy[name].spearman == pytest.approx(1.0)
        assert accuracy[name].pairwise_accuracy == 1.0


def test_proxy_accuracy_separates_the_support(world, simulated, contexts):
    support = simulated[1].support
    offset = np.where(support, 0.0, 1.0)  # exact on the support, one rating point high off it
    called = []

    def proxy(contexts, items):
        called.append(items)
        return truth_proxy(world, offset)(contexts, items)

    accuracy = proxy_accuracy(world, contexts, proxy, support, items_per_context=4, seed=3)
    assert support[called[0]].all() and not support[called[1]].any()
    seen = contexts.seen(world)
    assert not seen[np.arange(len(contexts))[:, None], np.concatenate(called, axis=1)].any()
    assert accuracy["on_support"].rmse == pytest.approx(0.0, abs=1e-12)
    assert accuracy["off_support"].rmse == pytest.approx(1.0)
    # A monotone but non-linear proxy ranks perfectly and is not linear in the truth.
    exponential = proxy_accuracy(
        world, contexts, lambda c, i: np.exp(3 * truth_proxy(world)(c, i)), support, items_per_context=4)
    assert exponential["on_support"].spearman == pytest.approx(1.0)
    assert exponential["on_support"].pairwise_accuracy == 1.0
    assert exponential["on_support"].pearson < 0.99
    # A proxy with ties (rounded ratings): Spearman with average ranks, a tied pair counts one half.
    rounded = proxy_accuracy(world, contexts, lambda c, i: np.round(truth_proxy(world)(c, i)), support,
                             items_per_context=4, seed=3)["on_support"]
    items = called[0]
    true = world.true_reward(contexts.users, contexts.history)[np.arange(len(contexts))[:, None], items]
    guess = np.round(true)

    def average_ranks(values):
        return np.array([(values < v).sum() + ((values == v).sum() + 1) / 2 for v in values])

    flat_true, flat_guess = true.reshape(-1), guess.reshape(-1)
    assert len(np.unique(flat_guess)) < len(flat_guess) // 2  # many ties
    spearman = np.corrcoef(average_ranks(flat_true), average_ranks(flat_guess))[0, 1]
    assert rounded.spearman == pytest.approx(spearman, rel=1e-12)
    scores = [1.0 if (g1 - g2) * (t1 - t2) > 0 else 0.5 if g1 == g2 else 0.0
              for t, g in zip(true, guess) for a, (t1, g1) in enumerate(zip(t, g)) for t2, g2 in zip(t[a + 1:], g[a + 1:])
              if t1 != t2]
    assert rounded.pairwise_accuracy == pytest.approx(np.mean(scores), rel=1e-12)
    assert rounded.pearson == pytest.approx(np.corrcoef(flat_true, flat_guess)[0, 1], rel=1e-12)
    assert rounded.rmse == pytest.approx(np.sqrt(np.mean((flat_true - flat_guess) ** 2)), rel=1e-12)
    # A reversed proxy orders every pair wrongly.
    reversed_ = proxy_accuracy(world, contexts, lambda c, i: -truth_proxy(world)(c, i), support)
    assert reversed_["off_support"].pairwise_accuracy == 0.0
    assert reversed_["off_support"].spearman == pytest.approx(-1.0)


def test_trap_inflating_proxy_raises_proxy_not_true_value(world, simulated, contexts):
    traps = simulated[1].traps
    assert traps.any()
    proxy = truth_proxy(world, boost=2.0 * traps)
    rewards = proxy(contexts, np.broadcast_to(np.arange(NUM_ITEMS), (len(contexts), NUM_ITEMS)))
    hacked = np.zeros_like(rewards)  # the policy that maximises the proxy
    hacked[np.arange(len(contexts)), np.argmax(np.where(contexts.seen(world), -np.inf, rewards), axis=1)] = 1.0
    oracle = oracle_probabilities(world, contexts)
    hacked_result = evaluate_policy(world, contexts, hacked, proxy=proxy, traps=traps)
    oracle_result = evaluate_policy(world, contexts, oracle, proxy=proxy, traps=traps)
    assert hacked_result.trap_mass == pytest.approx(traps[hacked.argmax(axis=1)].mean())
    assert hacked_result.trap_mass > 0.5 and hacked_result.trap_mass > oracle_result.trap_mass
    assert hacked_result.proxy_value > oracle_result.proxy_value
    assert hacked_result.true_value < oracle_result.true_value - 0.05
    # The gap is exactly the boost times the mass on traps.
    assert hacked_result.hacking_gap == pytest.approx(2.0 * hacked_result.trap_mass)
    uniform = evaluate_policy(world, contexts, uniform_probabilities(world, contexts), traps=traps)
    unseen = ~contexts.seen(world)
    assert uniform.trap_mass == pytest.approx(np.mean((unseen & traps).sum(axis=1) / unseen.sum(axis=1)))


def test_rollout_with_one_step_is_the_one_step_value_and_two_steps_by_hand(world, contexts):
    oracle = lambda c: oracle_probabilities(world, c)  # noqa: E731
    one_step = evaluate_policy(world, contexts, oracle).true_value
    assert rollout_value(world, contexts, oracle, horizon=1) == pytest.approx(one_step, rel=1e-12)
    assert rollout_value(world, contexts, oracle, horizon=1, action="sample") == pytest.approx(one_step, rel=1e-12)
    gamma, expected = 0.5, []
    for user, history in zip(contexts.users, contexts.history):
        total, history = 0.0, list(history)
        for step in range(2):
            rewards = world.true_reward(np.array([user]), np.array([history]))[0]
            best = max((i for i in range(NUM_ITEMS) if i not in history), key=lambda i: rewards[i])
            total += gamma**step * rewards[best]
            history.append(best)
        expected.append(total)
    assert rollout_value(world, contexts, oracle, horizon=2, gamma=gamma) == pytest.approx(np.mean(expected))
    result = evaluate_policy(world, contexts, oracle, horizon=2, gamma=gamma)
    assert result.rollout_value == pytest.approx(np.mean(expected))
    uniform = lambda c: uniform_probabilities(world, c)  # noqa: E731
    first = rollout_value(world, contexts, uniform, horizon=3, action="sample", seed=4)
    assert first == rollout_value(world, contexts, uniform, horizon=3, action="sample", seed=4)
    assert first != rollout_value(world, contexts, uniform, horizon=3, action="sample", seed=5)
    with pytest.raises(ValueError, match="callable"):
        rollout_value(world, contexts, oracle(contexts), horizon=1)


def test_coverage_and_gini(world, contexts):
    for exposure in (np.array([0.0, 0.0, 0.0, 1.0]), np.random.default_rng(0).random(7), np.ones(5)):
        mean_difference = np.abs(exposure[:, None] - exposure[None, :]).sum() / (2 * len(exposure) ** 2)
        assert exposure_gini(exposure) == pytest.approx(mean_difference / exposure.mean())
    one = EvaluationContexts(contexts.users[:1], contexts.history[:1])
    result = evaluate_policy(world, one, oracle_probabilities(world, one))
    assert result.coverage == pytest.approx(1 / NUM_ITEMS)
    assert result.gini == pytest.approx((NUM_ITEMS - 1) / NUM_ITEMS)
    # Mass below a tenth of the uniform exposure does not count as covered.
    nearly_one_hot = 0.99 * oracle_probabilities(world, one) + 0.01 / NUM_ITEMS
    assert evaluate_policy(world, one, nearly_one_hot).coverage == pytest.approx(1 / NUM_ITEMS)
    spread = 0.8 * oracle_probabilities(world, one) + 0.2 / NUM_ITEMS
    assert evaluate_policy(world, one, spread).coverage == 1.0
    uniform = evaluate_policy(world, contexts, uniform_probabilities(world, contexts, exclude_seen=False))
    assert uniform.coverage == 1.0 and uniform.gini == pytest.approx(0.0, abs=1e-12)
    logging = logging_policy_probabilities(world, POLICY, contexts)
    covered = logging.mean(axis=0) >= 0.1 / NUM_ITEMS
    assert evaluate_policy(world, contexts, logging).coverage == pytest.approx(covered.mean())
    assert covered.mean() <= POLICY.coverage  # nothing outside the support is exposed


def test_recommender_policy_and_ensemble_proxy_match_the_models(world, contexts):
    torch.manual_seed(0)
    known = np.arange(0, NUM_ITEMS, 2)  # the vocabulary knows the even world items (raw ids = index + 1)
    vocabulary = ItemVocabulary((known + 1).tolist())
    config = dict(num_items=len(known), hidden_size=16, attention_dim=8, linear_dim=8, max_seq_len=6,
                  max_position_embeddings=7)
    model = HSTUForNextItemPrediction(HSTUConfig(**config)).eval()  # no dropout in the by-hand scores
    probabilities = recommender_policy(model, vocabulary, NUM_ITEMS)(contexts)
    ensemble = RewardEnsemble([HSTUForRewardModeling(HSTUConfig(**config)) for _ in range(2)])
    items = np.broadcast_to(np.arange(NUM_ITEMS), (len(contexts), NUM_ITEMS))
    predicted = ensemble_proxy(ensemble, vocabulary, NUM_ITEMS)(contexts, items)
    for row in (0, 3):
        history = [int(i) for i in contexts.history[row] if i % 2 == 0][-6:]
        encoded = torch.tensor([vocabulary.encode([i + 1 for i in history])])
        with torch.no_grad():
            scores = model.score_next_items(encoded)[0, 1:].double().numpy()  # (len(known),)
        allowed = np.array([i not in contexts.history[row] for i in known])
        expected = np.zeros(NUM_ITEMS)
        expected[known[allowed]] = np.exp(scores[allowed]) / np.exp(scores[allowed]).sum()
        np.testing.assert_allclose(probabilities[row], expected, rtol=1e-4, atol=1e-12)  # fp32 scores
        candidates = torch.arange(1, len(known) + 1)[None, :]
        mean = ensemble.predict_candidates(encoded, candidate_item_ids=candidates).mean[0].double().numpy()
        np.testing.assert_allclose(predicted[row, known], mean, rtol=1e-5)
        np.testing.assert_array_equal(predicted[row, known + 1], ensemble.reward_min)  # unknown items
