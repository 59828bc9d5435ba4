"""RS-DPO/IPO's pair rule (`DPOConfig.pair_rule`) and the kept-pair fraction it logs (`pairs/kept_frac`):
`confident_extremes` (default: highest lower bound vs lowest upper bound) and `logged_vs_worse` (the logged item
vs a sampled candidate whose interval lies below the logged item's)."""


import pytest
import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model, weights_digest

from hf_genrec.data import SequenceCollator
from hf_genrec.losses.dpo import logged_vs_worse_pairs, separated_pairs
from hf_genrec.trainers import DPOConfig
from hf_genrec.trainers.dpo import CHOSEN, POSITIONS, REJECTED, ROWS
from hf_genrec.trainers.policy import PREPARED

Z = 4.0  # wide enough intervals that the fake ensemble leaves some contexts without a confident pair


class RecordingEnsemble(FakeRewardEnsemble):
    """The fake ensemble, remembering every candidate set it scored and its scores."""

    def __init__(self):
        super().__init__()
        self.scored = []

    def predict_candidates(self, *args, candidate_item_ids=None, **kwargs):
        prediction = super().predict_candidates(*args, candidate_item_ids=candidate_item_ids, **kwargs)
        self.scored.append((candidate_item_ids.clone(), prediction.mean.float(), prediction.std.float()))
        return prediction


def has_confident_pair(mean, std, z) -> bool:
    """Brute force over ordered pairs of one context's candidates: some LB(i) > UB(j), i ≠ j."""
    count = mean.numel()
    return any(mean[i] - z * std[i] > mean[j] + z * std[j] for i in range(count) for j in range(count) if i != j)


def test_kept_fraction_of_a_crafted_case_equals_the_hand_count():
    # z = 1. Context 0: LB (2.5, 0.5, 1.5) vs UB (3.5, 1.5, 2.5): 2.5 > 1.5, kept. Context 1: every interval
    # overlaps (best LB 1.2 < worst UB 2.9). Context 2: LB(0) = 4 > UB(1) = 3 (column 2 is invalid). Context 3:
    # one valid candidate. Hand count: 2 of 4.
    mean = torch.tensor([[3.0, 1.0, 2.0], [2.0, 2.2, 1.9], [4.0, 1.0, 1.0], [4.0, 1.0, 1.0]])
    std = torch.tensor([[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, True], [True, True, True], [True, True, False], [True, False, False]])
    chosen, rejected, keep = separated_pairs(mean, std, 1.0, valid)
    assert keep.tolist() == [True, False, True, False]
    assert keep.float().mean().item() == 0.5
    assert (chosen[keep].tolist(), rejected[keep].tolist()) == ([0, 0], [1, 1])


def test_logged_vs_worse_pairs_of_a_crafted_case():
    # Column 0 is the logged item; z = 1, std 0.25. Context 0: LB(logged) = 2.75; UB = 3.75, 1.25, 0.75: the
    # first worse column is 2. Context 1: the logged item is the worst: no pair. Context 2: column 1 would
    # qualify but is invalid, so column 2 (UB 1.75 < 3.75).
    mean = torch.tensor([[3.0, 3.5, 1.0, 0.5], [1.0, 2.0, 3.0, 1.5], [4.0, 1.0, 1.5, 5.0]])
    std = torch.full_like(mean, 0.25)
    valid = torch.tensor([[True] * 4, [True] * 4, [True, False, True, True]])
    chosen, rejected, keep = logged_vs_worse_pairs(mean, std, 1.0, valid)
    assert keep.tolist() == [True, False, True]
    assert chosen.tolist() == [0, 0, 0]
    assert rejected[keep].tolist() == [2, 2]


def test_config_checks_the_pair_rule(tmp_path):
    with pytest.raises(ValueError, match="pair_rule must be one of"):
        DPOConfig(str(tmp_path), pair_rule="extremes")
    with pytest.raises(ValueError, match="include_logged_item=False; set include_logged_item=True"):
        DPOConfig(str(tmp_path), pair_rule="logged_vs_worse", include_logged_item=False)


@pytest.mark.parametrize("method", ["dpo", "ipo"])
def test_logged_kept_fraction_equals_a_brute_force_count(method, tmp_path, train_rows):
    ensemble = RecordingEnsemble()
    trainer = posttrain_trainer(method, tmp_path, train_rows, reward_model=ensemble, max_steps=3,
                                num_candidates=2, confidence_z=Z)
    trainer.train()
    logged = [entry["pairs/kept_frac"] for entry in trainer.state.log_history if "pairs/kept_frac" in entry]
    counted = [
        sum(has_confident_pair(mean[c], std[c], Z) for c in range(len(mean))) / len(mean)
        for _, mean, std in ensemble.scored
    ]
    assert len(logged) == len(counted) == 3
    assert logged == pytest.approx(counted, abs=1e-6)
    assert 0.0 < min(counted) and max(counted) < 1.0  # the case discriminates: some contexts are dropped


def test_logged_vs_worse_pairs_the_logged_item_with_a_confidently_worse_one(tmp_path, train_rows):
    ensemble = RecordingEnsemble()
    trainer = posttrain_trainer("dpo", tmp_path, train_rows, reward_model=ensemble, pair_rule="logged_vs_worse",
                                num_candidates=2, confidence_z=Z)
    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(8)])
    torch.manual_seed(0)
    with torch.no_grad():
        prepared = trainer._prepare_step([batch])[0][PREPARED]
    candidates, mean, std = ensemble.scored[-1]
    assert torch.equal(prepared[CHOSEN], batch["labels"][prepared[ROWS], prepared[POSITIONS]])  # the logged items

    # Independently: per context, the first candidate (after the logged one) confidently below it.
    lower, upper = mean - Z * std, mean + Z * std
    expected, kept_contexts = [], []
    for c in range(len(candidates)):
        worse = [j for j in range(1, candidates.shape[1])
                 if candidates[c, j] != candidates[c, 0] and upper[c, j] < lower[c, 0]]
        if worse:
            expected.append((candidates[c, 0].item(), candidates[c, worse[0]].item()))
            kept_contexts.append(c)
    assert 0 < len(expected) < len(candidates)
    assert list(zip(prepared[CHOSEN].tolist(), prepared[REJECTED].tolist())) == expected
    # Each kept pair's rejected item, looked up among its context's candidates, is confidently worse.
    for c, rejected in zip(kept_contexts, prepared[REJECTED].tolist()):
        column = candidates[c].tolist().index(rejected)
        assert upper[c, column] < lower[c, 0]
    kept_frac = trainer._metrics["train"]["pairs/kept_frac"][-1]
    assert kept_frac == pytest.approx(len(expected) / len(candidates))


def test_logged_vs_worse_trains(tmp_path, train_rows):
    model = tiny_model()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    trainer = posttrain_trainer("dpo", tmp_path, train_rows, model=model, reward_model=FakeRewardEnsemble(),
                                pair_rule="logged_vs_worse", max_steps=2)
    trainer.train()
    assert any(not torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert any("rewards/margins" in entry for entry in trainer.state.log_history)


@pytest.mark.parametrize("method", ["dpo", "ipo"])
def test_default_pair_rule_trains_the_same_weights_as_confident_extremes(method, tmp_path, train_rows):
    digests = []
    for name, settings in (("omitted", {}), ("explicit", {"pair_rule": "confident_extremes"})):
        trainer = posttrain_trainer(method, tmp_path / name, train_rows, reward_model=FakeRewardEnsemble(),
                                    max_steps=3, **settings)
        trainer.train()
        digests.append(weights_digest(trainer.policy))
    assert digests[0] == digests[1]
