"""Training sanity tests in a mini simulated world (issue 14, "done when"): the library's own workflows trained on
simulated logs, every trained policy evaluated exactly against the world's true reward r*.

The mini world is one where a tiny HSTU can learn the logging policy from a few thousand events: the true reward
is an item effect (quality, spread twice the default's) plus the novelty bonus, without taste, drift or satiation
(`affinity_scale=0`, `drift=0`, `satiation=0`), so the logging policy softmax(β r*) over the unseen items is the
same for every user. (With latent tastes, a tiny HSTU trained on logs of this size recovers little of the logging
policy's value: that is a finding of the simulator, not a sanity property.)

Every log below is drawn with the same world, users and seed, so the users consume the same items and only the
observed ratings differ: the prepared datasets share one vocabulary, and one pretrained model serves them all.
"""

import dataclasses

import numpy as np
import pytest

from hf_genrec.data import write_movielens_file
from hf_genrec.data.prepared import load_prepared, prepare_dataset
from hf_genrec.models import AutoModelForNextItemPrediction
from hf_genrec.rewards import RewardEnsemble
from hf_genrec.simulation import (
    EvaluationContexts,
    LoggingPolicy,
    ObservationModel,
    World,
    WorldRewardModel,
    ensemble_proxy,
    evaluate_policy,
    logging_policy_probabilities,
    oracle_probabilities,
    proxy_accuracy,
    recommender_policy,
    simulate_logs,
    uniform_probabilities,
)
from hf_genrec.workflows import posttrain, pretrain, reward

NUM_USERS, NUM_ITEMS, EVENTS, SPLIT = 600, 40, 15, "leave-one-out"
POLICY = LoggingPolicy(strength=1.5, coverage=1.0, seed=0)
MODEL = {"hidden_size": 16, "num_hidden_layers": 1, "attention_dim": 16, "linear_dim": 16, "max_seq_len": 16,
         "max_position_embeddings": 19, "num_negatives": 32, "input_dropout": 0.0, "linear_dropout": 0.0}
PRETRAIN = {"model": MODEL, "data": {"split": SPLIT}, "method": {},
            "training": {"num_train_epochs": 6, "learning_rate": 3e-3, "per_device_train_batch_size": 32,
                         "per_device_eval_batch_size": 256, "bf16": False, "seed": 0}}
REWARD = {"model": {"reward_head_hidden_size": 16}, "data": {"split": SPLIT}, "method": {},
          "training": {"ensemble_size": 2, "bootstrap": True, "num_train_epochs": 4, "learning_rate": 3e-3,
                       "next_item_loss_weight": 0.1, "per_device_train_batch_size": 32,
                       "per_device_eval_batch_size": 256, "bf16": False, "seed": 0}}
STEPS, PPO_EPOCHS = 20, 4  # the post-training budget: PPO sees the same rows in STEPS * PPO_EPOCHS updates


def method_recipe(method, **training):
    values = {"max_steps": STEPS, "per_device_train_batch_size": 32, "learning_rate": 1e-4, "bf16": False,
              "seed": 0, "logging_steps": 10, **training}
    return {"model": {}, "data": {"split": SPLIT}, "method": {"name": method}, "training": values}


@pytest.fixture(scope="module")
def world():
    world = World.synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS, dim=2, seed=0, drift=0.0, affinity_scale=0.0,
                            satiation=0.0)
    return dataclasses.replace(world, quality=2.0 * world.quality)


def simulate_and_prepare(world, folder, **observation):
    interactions, truth = simulate_logs(world, events_per_user=EVENTS, policy=POLICY,
                                        observation=ObservationModel(**observation), seed=0)
    prepare_dataset(write_movielens_file(interactions, folder / "ratings.dat"), folder / "data")
    return folder / "data", truth


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """The noisy log (s = 0.6), BC on it (pretraining) and the proxy ensemble trained on it."""
    root = tmp_path_factory.mktemp("sanity")
    data, truth = simulate_and_prepare(world, root, noise_std=0.6)
    pretrain(data, root / "bc", recipe=PRETRAIN)
    reward(data, root / "bc", root / "proxy", recipe=REWARD)
    _, vocabulary = load_prepared(data, SPLIT)
    return {"root": root, "data": data, "truth": truth, "vocabulary": vocabulary}


def contexts_of(truth):
    return EvaluationContexts.from_truth(truth, EVENTS - 1)  # before each user's held-out (test) event


def value_per_context(world, contexts, probabilities):
    return (probabilities * contexts.rewards(world)).sum(axis=1)


def model_policy(trained, name):
    model = AutoModelForNextItemPrediction.from_pretrained(trained["root"] / name)
    return recommender_policy(model, trained["vocabulary"], NUM_ITEMS)


def test_bc_on_a_large_log_recovers_the_logging_policys_true_value(world, trained):
    contexts = contexts_of(trained["truth"])
    bc = value_per_context(world, contexts, model_policy(trained, "bc")(contexts))
    logging = value_per_context(world, contexts, logging_policy_probabilities(world, POLICY, contexts))
    uniform = value_per_context(world, contexts, uniform_probabilities(world, contexts))
    oracle = value_per_context(world, contexts, oracle_probabilities(world, contexts))
    # BC is a fitted model, so it matches the logging policy up to its fit: the stated tolerance is a tenth of what the
    # log teaches over the uniform policy (V*_log - V*_uniform); the standard error of the paired difference over the
    # contexts (printed) is smaller, as it leaves out the variance of training.
    difference = bc - logging
    standard_error = difference.std(ddof=1) / np.sqrt(len(difference))
    tolerance = 0.1 * (logging.mean() - uniform.mean())
    print(f"V* bc {bc.mean():.4f} logging {logging.mean():.4f} uniform {uniform.mean():.4f} oracle "
          f"{oracle.mean():.4f}; |diff| {abs(difference.mean()):.4f} (s.e. {standard_error:.4f}) tolerance "
          f"{tolerance:.4f}")
    assert abs(difference.mean()) <= tolerance
    assert bc.mean() > uniform.mean() + 5 * tolerance  # BC learned the log, not the uniform policy
    assert oracle.mean() > bc.mean() + 2 * tolerance


def test_ppo_against_the_true_reward_beats_every_offline_method(world, trained):
    root, data, truth = trained["root"], trained["data"], trained["truth"]
    truth_model = WorldRewardModel(world, truth, trained["vocabulary"], POLICY)
    posttrain(data, root / "bc", root / "ppo_true", method="ppo", reward_model=truth_model,
              recipe=method_recipe("ppo", max_steps=STEPS * PPO_EPOCHS, ppo_epochs=PPO_EPOCHS), evaluate=False)
    for method in ("sft", "rwbc", "asft"):  # A-SFT's baseline is the proxy ensemble's value head
        posttrain(data, root / "bc", root / method, method=method, reward_model=root / "proxy",
                  recipe=method_recipe(method), evaluate=False)
    contexts = contexts_of(truth)
    values = {name: value_per_context(world, contexts, model_policy(trained, name)(contexts))
              for name in ("bc", "sft", "rwbc", "asft", "ppo_true")}
    print({name: round(float(v.mean()), 4) for name, v in values.items()})
    for method in ("sft", "rwbc", "asft"):
        difference = values["ppo_true"] - values[method]  # paired over the contexts
        assert difference.mean() > 4 * difference.std(ddof=1) / np.sqrt(len(difference)), method
    assert values["ppo_true"].mean() > values["bc"].mean()


def train_proxy(world, trained, name, epochs=REWARD["training"]["num_train_epochs"], **observation):
    """A proxy ensemble trained with the library's reward workflow on a log of the same consumption, observed with
    `observation`, from the shared pretrained model."""
    data, truth = simulate_and_prepare(world, trained["root"] / name, **observation)
    recipe = {**REWARD, "training": {**REWARD["training"], "num_train_epochs": epochs}}
    reward(data, trained["root"] / "bc", trained["root"] / name / "proxy", recipe=recipe)
    ensemble = RewardEnsemble.from_pretrained(trained["root"] / name / "proxy")
    return ensemble_proxy(ensemble, trained["vocabulary"], NUM_ITEMS), truth


def rounded_truth_proxy(world):
    """The best a rating model can do without noise: the truth rounded and clipped as ratings are."""
    def proxy(contexts, items):
        rewards = contexts.rewards(world)[np.arange(len(contexts))[:, None], items]
        return np.clip(np.round(rewards), 1, 5)

    return proxy


def test_zero_noise_and_much_data_make_the_proxy_match_the_truth(world, trained):
    # 10 epochs (the other proxies take 4): "much data" is also enough passes over it to fit.
    proxy, truth = train_proxy(world, trained, "noiseless", epochs=10, noise_std=0.0)
    contexts = contexts_of(truth)
    accuracy = proxy_accuracy(world, contexts, proxy, truth.support, items_per_context=10)["on_support"]
    # Ratings are integers: even the rounded truth does not reach 1 (printed as the reference).
    ceiling = proxy_accuracy(world, contexts, rounded_truth_proxy(world), truth.support,
                             items_per_context=10)["on_support"]
    print(f"noiseless proxy {accuracy}\nrounded truth {ceiling}")
    assert accuracy.pearson >= 0.85 and accuracy.spearman >= 0.85 and accuracy.pairwise_accuracy >= 0.8
    assert accuracy.rmse <= 0.5  # half a rating point: the rounding of integer ratings alone costs 0.29


def greedy(proxy, world, contexts):
    """The policy that maximises a proxy: one-hot on its best unseen item of each context."""
    scores = proxy(contexts, np.broadcast_to(np.arange(NUM_ITEMS), (len(contexts), NUM_ITEMS)))
    best = np.argmax(np.where(contexts.seen(world), -np.inf, scores), axis=1)
    probabilities = np.zeros((len(contexts), NUM_ITEMS))
    probabilities[np.arange(len(contexts)), best] = 1.0
    return probabilities


def test_learned_proxy_from_trap_inflated_ratings_raises_proxy_but_not_true_value(world, trained):
    trapped, truth = train_proxy(world, trained, "traps", noise_std=0.6, trap_share=0.2, trap_boost=1.5)
    clean = ensemble_proxy(RewardEnsemble.from_pretrained(trained["root"] / "proxy"), trained["vocabulary"], NUM_ITEMS)
    contexts, traps = contexts_of(truth), truth.traps
    # The learned proxy inherits the observation model's inflation: it over-rates the trap items.
    items = np.broadcast_to(np.arange(NUM_ITEMS), (len(contexts), NUM_ITEMS))
    excess = trapped(contexts, items) - clean(contexts, items)
    assert excess[:, traps].mean() > excess[:, ~traps].mean() + 0.5
    hacked = evaluate_policy(world, contexts, greedy(trapped, world, contexts), proxy=trapped, traps=traps)
    honest = evaluate_policy(world, contexts, greedy(clean, world, contexts), proxy=trapped, traps=traps)
    print(f"hacked {hacked}\nhonest {honest}")
    assert hacked.trap_mass > honest.trap_mass + 0.2
    assert hacked.proxy_value > honest.proxy_value  # optimising the trap proxy raises the proxy value...
    assert hacked.true_value < honest.true_value  # ...but not the true value
    assert hacked.hacking_gap > honest.hacking_gap + 0.2
