"""Exact evaluation of any policy in a `World`: true and proxy value, hacking gap, KL, trap mass, coverage, Gini,
and the proxy reward model's accuracy on and off the logging policy's support (issue 14, items 3-4).

Shapes: C evaluation contexts (a user and the items they consumed, oldest first), T history positions, V items
(the world's whole catalogue, 0-based world indices; simulated logs write item id = world index + 1).

A policy is given as per-context probabilities over the catalogue: a `(C, V)` array, or a callable
`contexts -> (C, V)` (needed for rollouts, where the contexts change). Helpers build them for an hf_genrec
recommender (`recommender_policy`), the logging policy (`logging_policy_probabilities`), the oracle
(`oracle_probabilities`) and the uniform policy (`uniform_probabilities`). With π the policy, r* the world's
true reward and r̂ a proxy reward model, `evaluate_policy` computes

    V*(π) = mean_c sum_i π(i | c) r*(c, i),    V̂(π) = mean_c sum_i π(i | c) r̂(c, i),    gap = V̂ - V*,

KL(π ‖ π_ref) = mean_c sum_i π(i | c) log(π(i | c) / π_ref(i | c)) exactly over the catalogue (0 log 0 = 0; +inf
where π puts mass that π_ref does not), trap mass = mean_c sum_{i in traps} π(i | c), and, from the exposure
e_i = mean_c π(i | c), the coverage (share of items with e_i >= `coverage_threshold` / V) and the Gini of e.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.vocabulary import PAD_INDEX, ItemVocabulary
from ..models import HSTUForNextItemPrediction
from ..rewards.ensemble import RewardEnsemble
from ..rewards.metrics import rmse
from .logging_policy import LoggingPolicy, SimulationTruth
from .world import World

__all__ = [
    "EvaluationContexts",
    "PolicyEvaluation",
    "ProxyAccuracy",
    "context_true_values",
    "ensemble_proxy",
    "evaluate_policy",
    "exposure_gini",
    "kl_divergence",
    "logging_policy_probabilities",
    "oracle_probabilities",
    "proxy_accuracy",
    "recommender_policy",
    "rollout_value",
    "uniform_probabilities",
]

# A proxy reward model: (contexts, items (C, n) world indices) -> (C, n) predicted rewards.
ProxyReward = Callable[["EvaluationContexts", np.ndarray], np.ndarray]
Policy = np.ndarray | Callable[["EvaluationContexts"], np.ndarray]


@dataclass
class EvaluationContexts:
    """C evaluation contexts: who is served and what they consumed before.

    Args:
        users (`np.ndarray` of shape `(C,)`): world user indices.
        history (`np.ndarray` of shape `(C, T)`): world item indices consumed, oldest first; entries < 0 are padding.
    """

    users: np.ndarray
    history: np.ndarray

    def __post_init__(self) -> None:
        self.users = np.asarray(self.users, dtype=np.int64).reshape(-1)
        self.history = np.asarray(self.history, dtype=np.int64)
        if self.history.ndim != 2 or len(self.history) != len(self.users):
            raise ValueError(
                f"history must be (num_contexts={len(self.users)}, length), got shape {self.history.shape}; pass one "
                "row of item indices per user."
            )

    @classmethod
    def from_truth(cls, truth: SimulationTruth, length: int, users: np.ndarray | None = None) -> EvaluationContexts:
        """The contexts after each user's first `length` consumed events of a simulation (observed or not: the
        world's state depends on everything consumed), e.g. the cut before a held-out part of the log."""
        if not 0 <= length <= truth.items.shape[1]:
            raise ValueError(f"length must be in [0, {truth.items.shape[1]}] (events per user), got {length}.")
        users = np.arange(len(truth.items)) if users is None else np.asarray(users, dtype=np.int64)
        return cls(users, truth.items[users, :length])

    def __len__(self) -> int:
        return len(self.users)

    def rewards(self, world: World) -> np.ndarray:
        """r*(c, i) over the whole catalogue -> `(C, V)`."""
        return world.true_reward(self.users, self.history)

    def seen_items(self, num_items: int) -> np.ndarray:
        """Which of `num_items` items each context has consumed -> `(C, num_items)` bool."""
        seen = np.zeros((len(self), num_items), dtype=bool)
        rows, columns = np.nonzero((self.history >= 0) & (self.history < num_items))
        seen[rows, self.history[rows, columns]] = True
        return seen

    def seen(self, world: World) -> np.ndarray:
        """Which items each context has consumed -> `(C, V)` bool."""
        return self.seen_items(world.num_items)

    def append(self, items: np.ndarray) -> EvaluationContexts:
        """The contexts after each user consumes `items` `(C,)`."""
        return EvaluationContexts(self.users, np.concatenate([self.history, np.asarray(items)[:, None]], axis=1))


def _softmax(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `logits` `(C, V)` over the True entries of `allowed` `(C, V)`; 0 elsewhere."""
    if not allowed.any(axis=1).all():
        row = int(np.flatnonzero(~allowed.any(axis=1))[0])
        raise ValueError(f"context {row} has no item left to recommend (every allowed item is consumed); shorten it.")
    logits = np.where(allowed, logits, -np.inf)
    logits = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def _available(world: World, contexts: EvaluationContexts, exclude_seen: bool) -> np.ndarray:
    """`(C, V)` bool: the items a policy may recommend (all, or the unseen ones)."""
    seen = contexts.seen(world)
    if exclude_seen and seen.all(axis=1).any():
        raise ValueError("a context has consumed the whole catalogue; pass exclude_seen=False or shorter histories.")
    return ~seen if exclude_seen else np.ones_like(seen)


def uniform_probabilities(world: World, contexts: EvaluationContexts, exclude_seen: bool = True) -> np.ndarray:
    """The uniform policy over the catalogue (its unseen items by default) -> `(C, V)`."""
    available = _available(world, contexts, exclude_seen)
    return available / available.sum(axis=1, keepdims=True)


def oracle_probabilities(
    world: World, contexts: EvaluationContexts, temperature: float = 0.0, exclude_seen: bool = True
) -> np.ndarray:
    """The oracle: one-hot on argmax_i r*(c, i) (`temperature` 0), else softmax(r* / temperature) -> `(C, V)`.

    Seen items are excluded by default, as the logging policy and `recommender_policy` exclude them.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: argmax), got {temperature}.")
    rewards = contexts.rewards(world)
    available = _available(world, contexts, exclude_seen)
    if temperature > 0:
        return _softmax(rewards / temperature, available)
    best = np.argmax(np.where(available, rewards, -np.inf), axis=1)
    probabilities = np.zeros_like(rewards)
    probabilities[np.arange(len(contexts)), best] = 1.0
    return probabilities


def logging_policy_probabilities(world: World, policy: LoggingPolicy, contexts: EvaluationContexts) -> np.ndarray:
    """pi_log(i | c) over the catalogue (`LoggingPolicy.probabilities` at each context's state) -> `(C, V)`."""
    return policy.probabilities(world, contexts.rewards(world), contexts.seen(world))


def _vocabulary_lookup(vocabulary: ItemVocabulary, num_items: int) -> np.ndarray:
    """The vocabulary index of each world item `(num_items,)`, 0 (`PAD_INDEX`) where the vocabulary lacks it.

    World item i is the log's raw item id i + 1 (see `simulate_logs`); raw ids outside 1..num_items are ignored."""
    try:
        raw_ids = np.asarray([int(raw) for raw in vocabulary.raw_ids], dtype=np.int64)
    except ValueError:
        raise ValueError(
            f"vocabulary holds non-numeric item ids (e.g. {vocabulary.raw_ids[0]!r}); pass the vocabulary of a "
            "simulated log, whose item ids are world item indices + 1."
        ) from None
    lookup = np.full(num_items, PAD_INDEX, dtype=np.int64)
    inside = (raw_ids >= 1) & (raw_ids <= num_items)
    lookup[raw_ids[inside] - 1] = np.arange(1, len(raw_ids) + 1)[inside]
    return lookup


def _model_histories(contexts: EvaluationContexts, lookup: np.ndarray, max_length: int) -> torch.Tensor:
    """Right-padded vocabulary-index histories `(C, N)`: items the vocabulary lacks dropped, the last `max_length`
    kept (`lookup` from `_vocabulary_lookup`)."""
    rows = []
    for history in contexts.history:
        indices = lookup[history[(history >= 0) & (history < len(lookup))]]
        rows.append(indices[indices != PAD_INDEX][-max_length:])
    padded = np.zeros((len(rows), max([1] + [len(row) for row in rows])), dtype=np.int64)
    for row, indices in enumerate(rows):
        padded[row, : len(indices)] = indices
    return torch.from_numpy(padded)


def recommender_policy(
    model: HSTUForNextItemPrediction, vocabulary: ItemVocabulary, num_items: int, batch_size: int = 256
) -> Callable[[EvaluationContexts], np.ndarray]:
    """A recommender as a policy: its full-catalogue softmax (scores cosine / τ from `score_next_items`) over
    the world's items that it knows and the context has not consumed.

    Args:
        model (`HSTUForNextItemPrediction`): the recommender, trained on a simulated log.
        vocabulary (`ItemVocabulary`): its vocabulary, over the log's raw item ids (world index + 1).
        num_items (`int`): V, the world's catalogue size.
        batch_size (`int`, defaults to 256): contexts scored at once.

    Returns:
        A callable `contexts -> (C, V)` probabilities; items outside the vocabulary get 0. The model reads no
        timestamps (it skips its time features) and each history's last `config.max_seq_len` known items.
    """
    lookup = _vocabulary_lookup(vocabulary, num_items)

    def probabilities(contexts: EvaluationContexts) -> np.ndarray:
        histories = _model_histories(contexts, lookup, model.config.max_seq_len)
        known = lookup != PAD_INDEX  # (V,)
        logits = np.full((len(contexts), num_items), -np.inf)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for start in range(0, len(contexts), batch_size):
                chunk = histories[start : start + batch_size].to(device)
                scores = model.score_next_items(chunk, attention_mask=(chunk != PAD_INDEX).long())  # (b, V' + 1)
                columns = torch.from_numpy(lookup[known]).to(scores.device)
                logits[start : start + len(chunk), known] = scores[:, columns].double().cpu().numpy()
        model.train(was_training)
        allowed = known[None, :] & ~contexts.seen_items(num_items)
        return _softmax(logits, allowed)

    return probabilities


def ensemble_proxy(
    ensemble: RewardEnsemble,
    vocabulary: ItemVocabulary,
    num_items: int,
    unknown_reward: float | None = None,
    batch_size: int = 256,
) -> ProxyReward:
    """A `RewardEnsemble`'s mean prediction as a proxy reward `(contexts, items (C, n)) -> (C, n)`.

    Histories are mapped as in `recommender_policy` (items the vocabulary lacks are dropped); an item the
    vocabulary lacks cannot be scored and gets `unknown_reward` (default: the ensemble's `reward_min`).
    `num_items` is V, the world's catalogue size.
    """
    fill = ensemble.reward_min if unknown_reward is None else unknown_reward
    lookup = _vocabulary_lookup(vocabulary, num_items)

    def proxy(contexts: EvaluationContexts, items: np.ndarray) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        histories = _model_histories(contexts, lookup, ensemble.config.max_seq_len)
        candidates = torch.from_numpy(lookup[items])  # (C, n), 0 = unknown
        predictions = np.zeros(items.shape)
        for start in range(0, len(contexts), batch_size):
            chunk = histories[start : start + batch_size]
            chunk_candidates = candidates[start : start + len(chunk)]
            mean = ensemble.predict_candidates(
                chunk, attention_mask=(chunk != PAD_INDEX).long(), candidate_item_ids=chunk_candidates
            ).mean
            predictions[start : start + len(chunk)] = mean.double().cpu().numpy()
        return np.where(candidates.numpy() != PAD_INDEX, predictions, fill)

    return proxy


def _resolve(policy: Policy, contexts: EvaluationContexts, num_items: int) -> np.ndarray:
    """A policy's `(C, V)` probabilities at `contexts`, checked to be distributions."""
    probabilities = np.asarray(policy(contexts) if callable(policy) else policy, dtype=np.float64)
    if probabilities.shape != (len(contexts), num_items):
        raise ValueError(
            f"a policy must give (num_contexts, num_items) = {(len(contexts), num_items)} probabilities, got "
            f"{probabilities.shape}."
        )
    if (probabilities < 0).any() or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("a policy's probabilities must be >= 0 and sum to 1 over the catalogue in every context.")
    return probabilities


def kl_divergence(p: np.ndarray, q: np.ndarray, epsilon: float = 0.0) -> float:
    """mean_c KL(p_c ‖ q_c), exact over the catalogue: `(C, V)` and `(C, V)` -> a float.

    Terms with p = 0 are 0; where p > 0 and q = 0 the divergence is +inf, unless `epsilon` > 0 mixes q with the
    uniform distribution first, q <- (1 - epsilon) q + epsilon / V.
    """
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same (contexts, items) shape, got {p.shape} and {q.shape}.")
    if epsilon:
        q = (1.0 - epsilon) * q + epsilon / q.shape[1]
    mass = p > 0
    with np.errstate(divide="ignore"):
        terms = np.where(mass, p * (np.log(np.where(mass, p, 1.0)) - np.log(np.where(mass, q, 1.0))), 0.0)
    return float(terms.sum(axis=1).mean())


def exposure_gini(exposure: np.ndarray) -> float:
    """Gini coefficient of non-negative item exposures `(V,)`: 0 when equal, (V - 1) / V when one item has all.

    G = sum_k (2k - V - 1) e_(k) / (V sum_k e_(k)), with e_(1) <= ... <= e_(V) (k from 1).
    """
    exposure = np.sort(np.asarray(exposure, dtype=np.float64))
    total, size = exposure.sum(), len(exposure)
    if total <= 0:
        raise ValueError("exposure must have a positive sum to compute its Gini coefficient.")
    return float(((2 * np.arange(1, size + 1) - size - 1) * exposure).sum() / (size * total))


def rollout_value(
    world: World,
    contexts: EvaluationContexts,
    policy: Callable[[EvaluationContexts], np.ndarray],
    horizon: int,
    gamma: float = 1.0,
    action: str = "top1",
    seed: int = 0,
) -> float:
    """H-step true value: mean_c sum_{h<H} gamma^h r*(c_h, a_h), where a_h is the policy's top-1 item
    (`action="top1"`) or an item drawn from it (`"sample"`) at the state c_h, and c_{h+1} appends a_h (the
    world recomputes taste drift, satiation and novelty from the longer history).

    Args:
        policy (callable): `contexts -> (C, V)` probabilities (an array cannot follow the changing contexts).
        horizon (`int`): H >= 1 steps.
        gamma (`float`, defaults to 1.0): the discount in [0, 1].
        seed (`int`, defaults to 0): seed of the draws with `action="sample"`.
    """
    if not callable(policy):
        raise ValueError("rollout_value needs a callable policy (contexts -> probabilities): the contexts change.")
    if horizon < 1 or not 0.0 <= gamma <= 1.0 or action not in ("top1", "sample"):
        raise ValueError(
            f"need horizon >= 1, gamma in [0, 1] and action 'top1' or 'sample', got {horizon}, {gamma}, {action!r}."
        )
    rng = np.random.default_rng(seed)
    rows, value = np.arange(len(contexts)), np.zeros(len(contexts))
    for step in range(horizon):
        probabilities = _resolve(policy, contexts, world.num_items)
        if action == "top1":
            chosen = np.argmax(probabilities, axis=1)
        else:
            chosen = _sample_items(probabilities, 1, rng)[:, 0]
        value += gamma**step * contexts.rewards(world)[rows, chosen]
        contexts = contexts.append(chosen)
    return float(value.mean())


@dataclass
class PolicyEvaluation:
    """What `evaluate_policy` measures (see the module docstring for the formulas); None when not asked for.

    Args:
        true_value (`float`): V*(π), one step.
        proxy_value (`float`): V̂(π) under the proxy reward.
        hacking_gap (`float`): V̂(π) - V*(π).
        kl_to_reference (`float`): KL(π ‖ π_ref), e.g. to the pretrained policy.
        kl_to_logging (`float`): KL(π ‖ π_log).
        trap_mass (`float`): mean probability on trap items.
        coverage (`float`): share of items with exposure >= `coverage_threshold` / V.
        gini (`float`): Gini coefficient of the item exposure.
        rollout_value (`float`): the H-step value of `rollout_value`.
    """

    true_value: float
    proxy_value: float | None = None
    hacking_gap: float | None = None
    kl_to_reference: float | None = None
    kl_to_logging: float | None = None
    trap_mass: float | None = None
    coverage: float | None = None
    gini: float | None = None
    rollout_value: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


def context_true_values(world: World, contexts: EvaluationContexts, policy: Policy) -> np.ndarray:
    """V*(π | c) = sum_i π(i | c) r*(c, i) at every context in one pass -> `(C,)` (`evaluate_policy`'s
    `true_value` is its mean).

    Args:
        policy: `(C, V)` probabilities or a callable `contexts -> (C, V)`.
    """
    probabilities = _resolve(policy, contexts, world.num_items)
    return (probabilities * contexts.rewards(world)).sum(axis=1)


def evaluate_policy(
    world: World,
    contexts: EvaluationContexts,
    policy: Policy,
    *,
    proxy: ProxyReward | None = None,
    reference: Policy | None = None,
    logging_policy: Policy | None = None,
    traps: np.ndarray | None = None,
    coverage_threshold: float = 0.1,
    kl_epsilon: float = 0.0,
    horizon: int | None = None,
    gamma: float = 1.0,
    rollout_action: str = "top1",
) -> PolicyEvaluation:
    """Evaluates `policy` exactly over the catalogue at `contexts` (formulas in the module docstring).

    Args:
        policy: `(C, V)` probabilities or a callable `contexts -> (C, V)`.
        proxy (*optional*): a proxy reward `(contexts, items (C, n)) -> (C, n)` (e.g. `ensemble_proxy`).
        reference, logging_policy (*optional*): the reference (pretrained) and logging policies, as `policy`.
        traps (`np.ndarray` of shape `(V,)` bool, *optional*): the trap items (`SimulationTruth.traps`).
        coverage_threshold (`float`, defaults to 0.1): an item is covered when its exposure is at least this
            share of the uniform exposure 1 / V.
        kl_epsilon (`float`, defaults to 0.0): uniform smoothing of the reference distributions (see `kl_divergence`).
        horizon (`int`, *optional*): also the H-step `rollout_value` (needs a callable policy), with `gamma` and
            `rollout_action`.
    """
    probabilities = _resolve(policy, contexts, world.num_items)
    result = PolicyEvaluation(true_value=float(context_true_values(world, contexts, probabilities).mean()))
    if proxy is not None:
        items = np.broadcast_to(np.arange(world.num_items), probabilities.shape)
        predicted = np.asarray(proxy(contexts, items), dtype=np.float64)
        result.proxy_value = float((probabilities * predicted).sum(axis=1).mean())
        result.hacking_gap = result.proxy_value - result.true_value
    if reference is not None:
        reference = _resolve(reference, contexts, world.num_items)
        result.kl_to_reference = kl_divergence(probabilities, reference, kl_epsilon)
    if logging_policy is not None:
        logging_probabilities = _resolve(logging_policy, contexts, world.num_items)
        result.kl_to_logging = kl_divergence(probabilities, logging_probabilities, kl_epsilon)
    if traps is not None:
        result.trap_mass = float(probabilities[:, np.asarray(traps, dtype=bool)].sum(axis=1).mean())
    exposure = probabilities.mean(axis=0)  # (V,)
    result.coverage = float((exposure >= coverage_threshold / world.num_items).mean())
    result.gini = exposure_gini(exposure)
    if horizon is not None:
        result.rollout_value = rollout_value(world, contexts, policy, horizon, gamma, rollout_action)
    return result


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `values` `(n,)`, ties sharing their average rank."""
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    group = np.cumsum(starts) - 1  # (n,) tie group of each sorted entry
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    ranks = np.empty(len(values))
    ranks[order] = ((first + last) / 2.0 + 1.0)[group]
    return ranks


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else float("nan")


@dataclass
class ProxyAccuracy:
    """A proxy reward's accuracy on `num_pairs` (context, item) pairs.

    Args:
        num_pairs (`int`): pairs compared.
        rmse (`float`): sqrt(mean (r̂ - r*)^2).
        pearson (`float`), spearman (`float`): correlations of r̂ and r* over all pairs (Spearman: with average ranks).
        pairwise_accuracy (`float`): over pairs of items of the same context with different r*, the share that r̂
            orders as r* does (a tie in r̂ counts one half).
    """

    num_pairs: int
    rmse: float
    pearson: float
    spearman: float
    pairwise_accuracy: float


def _accuracy(true: np.ndarray, predicted: np.ndarray) -> ProxyAccuracy:
    """`ProxyAccuracy` of `predicted` against `true`, both `(C, k)` (k items per context); NaN when empty."""
    if true.size == 0:
        return ProxyAccuracy(0, *(float("nan"),) * 4)
    flat_true, flat_predicted = true.reshape(-1), predicted.reshape(-1)
    true_order = np.sign(true[:, :, None] - true[:, None, :])  # (C, k, k)
    predicted_order = np.sign(predicted[:, :, None] - predicted[:, None, :])
    ordered = true_order > 0
    agree = np.where(predicted_order == true_order, 1.0, np.where(predicted_order == 0, 0.5, 0.0))
    return ProxyAccuracy(
        num_pairs=int(true.size),
        rmse=rmse(flat_predicted, flat_true),
        pearson=_pearson(flat_true, flat_predicted),
        spearman=_pearson(_ranks(flat_true), _ranks(flat_predicted)),
        pairwise_accuracy=float(agree[ordered].mean()) if ordered.any() else float("nan"),
    )


def _draw_items(allowed: np.ndarray, per_context: int, rng: np.random.Generator) -> np.ndarray:
    """`per_context` distinct allowed items per context, drawn uniformly -> `(C, k)`, k = min(per_context,
    fewest allowed items of a context)."""
    keys = np.where(allowed, rng.random(allowed.shape), np.inf)
    k = int(min(per_context, allowed.sum(axis=1).min(initial=per_context)))
    return np.argsort(keys, axis=1)[:, :k]


def _sample_items(probabilities: np.ndarray, per_context: int, rng: np.random.Generator) -> np.ndarray:
    """`per_context` items per context drawn with replacement from `probabilities` `(C, V)` -> `(C, k)` (inverse
    CDF): i.i.d. (context, item) pairs of the policy, so means over them estimate its expectations."""
    cumulative = probabilities.cumsum(axis=1)
    draws = rng.random((len(probabilities), per_context)) * cumulative[:, -1:]
    items = (cumulative[:, None, :] <= draws[:, :, None]).sum(axis=2)  # (C, k): items whose CDF the draw passed
    return np.minimum(items, probabilities.shape[1] - 1)


def proxy_accuracy(
    world: World,
    contexts: EvaluationContexts,
    proxy: ProxyReward,
    support: np.ndarray,
    items_per_context: int = 10,
    seed: int = 0,
    logging_probabilities: np.ndarray | None = None,
) -> dict[str, ProxyAccuracy]:
    """The proxy's accuracy against r* on (context, item) pairs inside the logging policy's support and outside.

    For each context, `items_per_context` unseen items are drawn uniformly from the support and as many from
    outside it (fewer when a context has fewer; none off support when the support is the whole catalogue).

    Uniform draws from the support are not where the log has data: a sharp logging policy puts almost all its
    mass on a few items of each context (issue 14, `quick` preset: exp(entropy) 2-7 items of 70-170), so a proxy
    can be accurate on what the log shows and blind on the rest of the support. `logging_probabilities` adds
    that measurement.

    Args:
        support (`np.ndarray` of shape `(V,)` bool): the logging policy's support (`SimulationTruth.support`).
        logging_probabilities (`np.ndarray` of shape `(C, V)`, *optional*): pi_log at the contexts
            (`logging_policy_probabilities`); when given, `"on_logging"` is the accuracy on `items_per_context`
            items per context drawn from it with replacement, i.e. on the logging policy's own (context, item)
            distribution. Drawn after the other two, so they do not change.

    Returns:
        `{"on_support": ProxyAccuracy, "off_support": ProxyAccuracy}`, plus `"on_logging"` when asked for.
    """
    support = np.asarray(support, dtype=bool)
    if support.shape != (world.num_items,):
        raise ValueError(f"support must be a ({world.num_items},) bool mask over the catalogue, got {support.shape}.")
    rng = np.random.default_rng(seed)
    unseen, rewards = ~contexts.seen(world), contexts.rewards(world)
    rows = np.arange(len(contexts))[:, None]
    results = {}
    for name, inside in (("on_support", support), ("off_support", ~support)):
        items = _draw_items(unseen & inside[None, :], items_per_context, rng)  # (C, k)
        predicted = np.asarray(proxy(contexts, items), dtype=np.float64) if items.size else np.zeros(items.shape)
        results[name] = _accuracy(rewards[rows, items], predicted)
    if logging_probabilities is not None:
        logging_probabilities = _resolve(logging_probabilities, contexts, world.num_items)
        items = _sample_items(logging_probabilities, items_per_context, rng)  # (C, k)
        predicted = np.asarray(proxy(contexts, items), dtype=np.float64)
        results["on_logging"] = _accuracy(rewards[rows, items], predicted)
    return results
