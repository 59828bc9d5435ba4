"""The reward ensemble's state cache during post-training (`cache_reward_states`): each training row's member
backbones run once per training run instead of once per epoch, and the trained weights are those of the uncached
run up to float rounding."""

from __future__ import annotations

import pytest
import torch
from posttrain_helpers import posttrain_trainer, tiny_config, tiny_model

from hf_genrec import HSTUForRewardModeling
from hf_genrec.rewards import RewardEnsemble


def _ensemble() -> RewardEnsemble:
    members = []
    for seed in (11, 12):
        torch.manual_seed(seed)
        members.append(HSTUForRewardModeling(tiny_config(reward_head_hidden_size=8)))
    return RewardEnsemble(members)


@pytest.mark.parametrize(("method", "overrides"), [
    ("asft", {"baseline": "value", "reward_source": "model"}),
    ("dpo", {"num_candidates": 4, "contexts_per_sequence": 2}),
    ("ppo", {"contexts_per_sequence": 2, "samples_per_context": 2}),
])
def test_cached_run_scores_each_row_once_and_trains_the_same_weights(method, overrides, tmp_path, train_rows):
    weights, computed_rows = {}, {}
    for cache in (False, True):
        ensemble = _ensemble()
        rows = []
        original = ensemble._member_states
        ensemble._member_states = lambda history, original=original, rows=rows: rows.append(history.batch_size) or \
            original(history)
        trainer = posttrain_trainer(method, tmp_path / str(cache), train_rows, model=tiny_model(), reward_model=ensemble,
                                    num_train_epochs=3, cache_reward_states=cache, **overrides)
        trainer.train()
        assert ensemble.cached_rows == 0  # freed when training ends
        weights[cache] = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
        computed_rows[cache] = sum(rows)
    # PPO also scores the rows once before training (its value head's initial bias), outside the cache.
    assert computed_rows[True] == len(train_rows) * (2 if method == "ppo" else 1)
    assert computed_rows[False] >= 3 * len(train_rows)  # every epoch, and A-SFT twice a step (rewards and values)
    for name, value in weights[False].items():
        torch.testing.assert_close(weights[True][name], value, atol=1e-4, rtol=1e-4, msg=name)
