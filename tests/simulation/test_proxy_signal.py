"""Where a proxy reward is measured (issue 14, the `quick` preset's "blind" proxy): a sharp logging policy shows each
context only a few items of its support, so a proxy learned from the log can be accurate there and blind on the
rest of the support. `proxy_accuracy(..., logging_probabilities=...)` measures it on the logging policy's own
(context, item) pairs (`on_logging`), next to the uniform draws from the support (`on_support`)."""

import dataclasses

import numpy as np
import pytest

from hf_genrec.simulation import (
    EvaluationContexts,
    LoggingPolicy,
    ObservationModel,
    World,
    logging_policy_probabilities,
    proxy_accuracy,
    simulate_logs,
)

# The presets' reward shape (base 1, taste weight 3, continuation 3, logging strength 3), in a tiny catalogue.
NUM_ITEMS, NUM_USERS, EVENTS = 60, 200, 8
POLICY = LoggingPolicy(strength=3.0, coverage=0.5, seed=0)


@pytest.fixture(scope="module")
def setup():
    world = World.synthetic(num_users=NUM_USERS, num_items=NUM_ITEMS, dim=4, seed=0, affinity_scale=3.0,
                            continuation=3.0, base=1.0)
    _, truth = simulate_logs(world, events_per_user=EVENTS, policy=POLICY, observation=ObservationModel(noise_std=0.0),
                             seed=0)
    contexts = EvaluationContexts.from_truth(truth, EVENTS - 1)
    return world, truth, contexts, logging_policy_probabilities(world, POLICY, contexts)


def log_only_proxy(world, logging, top=3, fill=3.0):
    """A proxy that knows r* on the `top` items the logging policy favours at each context and nothing elsewhere
    (a constant): what a reward model fitted on a sharp policy's log can at best learn."""
    ranked = np.argsort(-logging, axis=1)[:, :top]  # (C, top)
    known = np.zeros(logging.shape, dtype=bool)
    known[np.arange(len(logging))[:, None], ranked] = True

    def proxy(contexts, items):
        rows = np.arange(len(contexts))[:, None]
        return np.where(known[rows, items], contexts.rewards(world)[rows, items], fill)

    return proxy, known


def test_a_proxy_blind_off_the_logged_items_is_blind_on_support_but_accurate_on_logging(setup):
    world, truth, contexts, logging = setup
    proxy, known = log_only_proxy(world, logging)
    mass = (logging * known).sum(axis=1).mean()
    assert mass > 0.8  # the sharp policy's 3 favourite items carry most of its mass: the log is about them
    accuracy = proxy_accuracy(world, contexts, proxy, truth.support, logging_probabilities=logging)
    print({where: dataclasses.asdict(value) for where, value in accuracy.items()})
    # Uniform draws from the support mostly miss the logged items (as in the `quick` run: Pearson 0.03-0.08)...
    assert accuracy["on_support"].pearson < 0.6
    # ...while on the logging policy's pairs the proxy is the truth up to the unlogged remainder of its mass.
    assert accuracy["on_logging"].pearson > 0.9
    assert accuracy["on_logging"].rmse < 0.5 * accuracy["on_support"].rmse


def test_on_logging_pairs_are_drawn_from_the_logging_policy(setup):
    world, truth, contexts, logging = setup
    # Two contexts, each repeated 2000 times with 2 draws: 4000 draws of each context's pi_log (the pairwise
    # accuracy costs k^2 per row, so many rows of few items rather than few rows of many).
    picked, repeats, per_context = np.array([0, 1]), 2000, 2
    rows = np.repeat(picked, repeats)
    repeated = EvaluationContexts(contexts.users[rows], contexts.history[rows])
    asked = []

    def recording_proxy(contexts, items):
        asked.append(np.array(items))
        return contexts.rewards(world)[np.arange(len(contexts))[:, None], items]

    accuracy = proxy_accuracy(world, repeated, recording_proxy, truth.support, items_per_context=per_context,
                              logging_probabilities=logging[rows])
    drawn = asked[-1].reshape(len(picked), repeats * per_context)  # the on_logging call comes last
    frequencies = np.stack([np.bincount(row, minlength=NUM_ITEMS) for row in drawn]) / drawn.shape[1]
    # The draws' item frequencies match pi_log (binomial std <= 0.008 with 4000 draws), and no item with zero
    # probability (seen, or outside the support) is ever drawn.
    assert np.abs(frequencies - logging[picked]).max() < 0.04
    assert (logging[picked[:, None], drawn] > 0).all()
    # The exact proxy is exact there too.
    assert accuracy["on_logging"].rmse == pytest.approx(0.0, abs=1e-12)


def test_logging_probabilities_leave_the_support_measurements_unchanged(setup):
    world, truth, contexts, logging = setup
    proxy, _ = log_only_proxy(world, logging)
    without = proxy_accuracy(world, contexts, proxy, truth.support, seed=5)
    with_logging = proxy_accuracy(world, contexts, proxy, truth.support, seed=5, logging_probabilities=logging)
    assert set(without) == {"on_support", "off_support"}
    for where in without:
        assert dataclasses.asdict(with_logging[where]) == pytest.approx(dataclasses.asdict(without[where]),
                                                                        nan_ok=True)


def test_logging_probabilities_of_the_wrong_shape_are_refused(setup):
    world, truth, contexts, logging = setup
    with pytest.raises(ValueError, match="num_contexts, num_items"):
        proxy_accuracy(world, contexts, log_only_proxy(world, logging)[0], truth.support,
                       logging_probabilities=logging[:, :-1])
