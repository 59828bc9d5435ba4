import json

import pytest
import torch
from reward_fixtures import TINY_MODEL, eval_batch

from hf_genrec import AutoModelForRewardModeling, HSTUConfig, HSTUForRewardModeling
from hf_genrec.data import History
from hf_genrec.rewards import RewardEnsemble, RewardPrediction, uncertainty_by_popularity


def _inputs(batch):
    return {k: batch[k] for k in ("item_ids", "attention_mask", "timestamps", "query_timestamps")}


def test_candidate_predictions_and_std(tiny_ensemble, tiny_data):
    splits, vocabulary = tiny_data
    batch = eval_batch(splits, vocabulary)
    candidates = torch.randint(1, vocabulary.num_items + 1, (8, 5), generator=torch.Generator().manual_seed(0))
    prediction = tiny_ensemble.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    assert isinstance(prediction, RewardPrediction)
    assert prediction.members.shape == (2, 8, 5) and prediction.mean.shape == prediction.std.shape == (8, 5)
    torch.testing.assert_close(prediction.mean, prediction.members.mean(0))
    torch.testing.assert_close(prediction.std, (prediction.members[0] - prediction.members[1]).abs() / 2)
    assert (prediction.std > 0).all()  # different seeds and resamples -> the members disagree
    assert prediction.members.min() >= tiny_ensemble.reward_min and prediction.members.max() <= tiny_ensemble.reward_max
    # Each member is exactly its own model's batched candidate scoring.
    with torch.no_grad():
        member = tiny_ensemble.members[1].score_candidates(**_inputs(batch), candidate_item_ids=candidates)
    assert torch.equal(prediction.members[1], member)
    assert not prediction.mean.requires_grad


def test_position_and_value_predictions(tiny_ensemble, tiny_data):
    splits, vocabulary = tiny_data
    batch = eval_batch(splits, vocabulary)
    labels = torch.roll(batch["item_ids"], -1, 1) * batch["attention_mask"]
    prediction = tiny_ensemble.predict_positions(**_inputs(batch), labels=labels)
    assert prediction.mean.shape == batch["item_ids"].shape and prediction.members.shape[0] == 2
    assert (prediction.mean[labels == 0] == 0).all()
    values = tiny_ensemble.value_positions(**_inputs(batch))
    assert values.shape == batch["item_ids"].shape and (values[batch["attention_mask"] == 0] == 0).all()
    last = batch["attention_mask"].sum(1) - 1
    torch.testing.assert_close(tiny_ensemble.value_last(**_inputs(batch)), values[torch.arange(8), last])
    assert tiny_ensemble.num_members == 2 and tiny_ensemble.config.num_items == vocabulary.num_items
    assert (tiny_ensemble.reward_min, tiny_ensemble.reward_max) == (1.0, 5.0)


def test_history_form_equals_the_column_form(tiny_ensemble, tiny_data):
    """Each prediction method takes a `History` (what callers pass) or its four columns, with equal results."""
    splits, vocabulary = tiny_data
    batch = eval_batch(splits, vocabulary)
    history = History.from_batch(batch)
    columns = [batch[k] for k in ("item_ids", "attention_mask", "timestamps", "query_timestamps")]
    candidates = torch.randint(1, vocabulary.num_items + 1, (8, 3), generator=torch.Generator().manual_seed(1))
    labels = torch.roll(batch["item_ids"], -1, 1) * batch["attention_mask"]
    assert torch.equal(tiny_ensemble.predict_candidates(history, candidate_item_ids=candidates).members,
                       tiny_ensemble.predict_candidates(*columns, candidates).members)
    assert torch.equal(tiny_ensemble.predict_positions(history, labels=labels).members,
                       tiny_ensemble.predict_positions(*columns, labels).members)
    assert torch.equal(tiny_ensemble.value_positions(history), tiny_ensemble.value_positions(*columns))
    assert torch.equal(tiny_ensemble.value_last(history), tiny_ensemble.value_last(*columns))
    # The history's columns are what the members read: other query times give other rewards.
    later = history.replace(query_timestamps=history.query_timestamps + 10**7 * history.attention_mask)
    assert not torch.equal(tiny_ensemble.value_last(later), tiny_ensemble.value_last(history))
    with pytest.raises(ValueError, match="History and separate history columns"):
        tiny_ensemble.predict_candidates(history, candidates)


def test_save_load_round_trip_gives_identical_predictions(tiny_ensemble, tiny_data, tmp_path):
    splits, vocabulary = tiny_data
    tiny_ensemble.save_pretrained(tmp_path)
    manifest = json.loads((tmp_path / "ensemble.json").read_text())
    assert manifest["num_members"] == 2 and manifest["seeds"] == [11, 12] and manifest["bootstrap"] is True
    assert manifest["reward_min"] == 1.0 and manifest["trained_on"] == {"data": "synthetic"}
    assert (tmp_path / "item_vocabulary.json").exists()
    for k in range(2):
        assert (tmp_path / f"member-{k}" / "model.safetensors").exists()
        assert type(AutoModelForRewardModeling.from_pretrained(tmp_path / f"member-{k}")) is HSTUForRewardModeling

    loaded = RewardEnsemble.from_pretrained(tmp_path)
    assert loaded.vocabulary == vocabulary and loaded.seeds == [11, 12]
    batch = eval_batch(splits, vocabulary)
    candidates = torch.randint(1, vocabulary.num_items + 1, (8, 6))
    before = tiny_ensemble.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    after = loaded.predict_candidates(**_inputs(batch), candidate_item_ids=candidates)
    assert torch.equal(before.members, after.members) and torch.equal(before.std, after.std)
    assert torch.equal(tiny_ensemble.value_positions(**_inputs(batch)), loaded.value_positions(**_inputs(batch)))


def test_uncertainty_by_popularity_report(tiny_ensemble, tiny_data):
    splits, _ = tiny_data
    report = uncertainty_by_popularity(tiny_ensemble, splits["test"], splits["train"], num_candidates=4)
    assert [row["bin"] for row in report["bins"]] == [1, 2, 3, 4, 5]
    assert sum(row["logged_num_pairs"] for row in report["bins"]) == 60
    assert sum(row["uniform_num_pairs"] for row in report["bins"]) == 240
    assert all(row["uniform_mean_std"] > 0 for row in report["bins"] if row["uniform_num_pairs"])


def test_bad_ensembles_are_refused(tmp_path):
    small = HSTUForRewardModeling(HSTUConfig(num_items=10, **TINY_MODEL))
    large = HSTUForRewardModeling(HSTUConfig(num_items=11, **TINY_MODEL))
    with pytest.raises(ValueError, match="num_items"):
        RewardEnsemble([small, large])
    with pytest.raises(ValueError, match="at least one member"):
        RewardEnsemble([])
    with pytest.raises(ValueError, match="2 seeds for 1 members"):
        RewardEnsemble([small], seeds=[1, 2])
    small.save_pretrained(tmp_path / "single")
    with pytest.raises(FileNotFoundError, match="not a reward ensemble"):
        RewardEnsemble.from_pretrained(tmp_path / "single")


def _training_batch(splits, size: int = 8):
    from hf_genrec.data import SequenceCollator

    return SequenceCollator(max_seq_len=TINY_MODEL["max_seq_len"])([splits["train"][i] for i in range(size)])


def test_candidates_at_contexts_of_full_rows_equal_the_prefix_scores(tiny_ensemble, tiny_data):
    """`predict_candidates_at` reads one pass over the full rows; causality makes it the prefixes' scores."""
    splits, vocabulary = tiny_data
    batch = _training_batch(splits)
    history = History.from_batch(batch)
    lengths = batch["attention_mask"].sum(1)
    rows = torch.tensor([0, 0, 3, 5, 7])
    positions = torch.stack([torch.tensor(0), lengths[0] - 1, lengths[3] // 2, lengths[5] - 2, torch.tensor(1)])
    candidates = torch.randint(1, vocabulary.num_items + 1, (5, 4), generator=torch.Generator().manual_seed(2))
    at_contexts = tiny_ensemble.predict_candidates_at(history, rows, positions, candidates)
    on_prefixes = tiny_ensemble.predict_candidates(history.prefixes(rows, positions), candidate_item_ids=candidates)
    assert at_contexts.members.shape == (2, 5, 4)
    torch.testing.assert_close(at_contexts.members, on_prefixes.members, atol=1e-5, rtol=1e-5)
    # A later event of the row changes nothing at an earlier context; an earlier one does.
    changed = history.replace(item_ids=history.item_ids.clone())
    changed.item_ids[0, lengths[0] - 1] = changed.item_ids[0, lengths[0] - 1] % vocabulary.num_items + 1
    moved = tiny_ensemble.predict_candidates_at(changed, rows, positions, candidates).members
    torch.testing.assert_close(moved[:, 0], at_contexts.members[:, 0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(moved[:, 1], at_contexts.members[:, 1])
    with pytest.raises(ValueError, match="candidate_item_ids"):
        tiny_ensemble.predict_candidates_at(history, rows, positions, candidates + vocabulary.num_items)


def test_state_cache_serves_seen_rows_and_recomputes_changed_ones(tiny_ensemble, tiny_data):
    splits, vocabulary = tiny_data
    batch = _training_batch(splits)
    history = History.from_batch(batch)
    labels = batch["labels"]
    expected_values = tiny_ensemble.value_positions(history)
    expected_rewards = tiny_ensemble.predict_positions(history, labels=labels).members
    try:
        tiny_ensemble.enable_state_cache()
        first = tiny_ensemble.value_positions(history)
        assert tiny_ensemble.cached_rows == 8
        calls = []
        original = tiny_ensemble._member_states
        tiny_ensemble._member_states = lambda h: calls.append(h.batch_size) or original(h)
        # The same rows in another order and another padded width: served from the cache, no backbone pass.
        order = torch.tensor([7, 2, 5, 0, 1, 3, 4, 6])
        wider = History(*(torch.nn.functional.pad(value[order], (0, 3)) for value in history.model_inputs().values()))
        served = tiny_ensemble.value_positions(wider)
        assert calls == []
        torch.testing.assert_close(served[:, : history.item_ids.shape[1]], expected_values[order], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(tiny_ensemble.predict_positions(history, labels=labels).members, expected_rewards,
                                   atol=1e-6, rtol=1e-6)
        assert calls == []
        # A row whose events changed (its first item) is a new row: computed again, alone.
        changed = history.replace(item_ids=history.item_ids.clone())
        changed.item_ids[4, 0] = changed.item_ids[4, 0] % vocabulary.num_items + 1
        recomputed = tiny_ensemble.value_positions(changed)
        assert calls == [1]
        assert not torch.allclose(recomputed[4], expected_values[4])
        # Only a change of a cached column counts: the same events with other query times are another row too.
        later = history.replace(query_timestamps=history.query_timestamps + 10**7 * history.attention_mask)
        tiny_ensemble.value_positions(later)
        assert calls == [1, 8]
        torch.testing.assert_close(recomputed[3], expected_values[3], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(first, expected_values, atol=1e-6, rtol=1e-6)
    finally:
        tiny_ensemble.__dict__.pop("_member_states", None)
        tiny_ensemble.clear_state_cache()
    assert tiny_ensemble.cached_rows == 0


def test_state_cache_keeps_within_its_byte_bound(tiny_ensemble, tiny_data):
    splits, _ = tiny_data
    history = History.from_batch(_training_batch(splits))
    expected = tiny_ensemble.value_positions(history)
    try:
        tiny_ensemble.enable_state_cache(max_bytes=0)
        torch.testing.assert_close(tiny_ensemble.value_positions(history), expected, atol=1e-6, rtol=1e-6)
        assert tiny_ensemble.cached_rows == 0
        with pytest.raises(ValueError, match="max_bytes"):
            tiny_ensemble.enable_state_cache(max_bytes=-1)
    finally:
        tiny_ensemble.clear_state_cache()


def test_predictions_at_some_positions_equal_the_full_ones(tiny_ensemble, tiny_data):
    """`predict_positions(positions=)` computes each member's last layer at those positions only, with or without
    the state cache; the entries equal the full prediction's."""
    splits, _ = tiny_data
    batch = _training_batch(splits)
    history, labels = History.from_batch(batch), batch["labels"]
    lengths = batch["attention_mask"].sum(1)
    positions = torch.stack([lengths - 3, lengths - 1, lengths - 2], dim=1).clamp(min=0)  # (B, 3)
    full = tiny_ensemble.predict_positions(history, labels=labels).members  # (K, B, N)
    expected = full.gather(2, positions[None].expand(2, -1, -1))
    torch.testing.assert_close(tiny_ensemble.predict_positions(history, labels=labels, positions=positions).members,
                               expected, atol=1e-5, rtol=1e-5)
    try:
        tiny_ensemble.enable_state_cache()
        for _ in range(2):  # computed and stored, then served
            torch.testing.assert_close(
                tiny_ensemble.predict_positions(history, labels=labels, positions=positions).members, expected,
                atol=1e-5, rtol=1e-5)
    finally:
        tiny_ensemble.clear_state_cache()


def test_judge_rollout_scores_equal_a_judge_that_scores_every_position(tiny_ensemble, tiny_data, tiny_pretrained):
    """The judge's rewards read at the rollout's steps only (`positions`) equal those read off a full pass."""
    from hf_genrec import AutoModelForNextItemPrediction
    from hf_genrec.evaluation import rollout_batch

    class EveryPosition:  # a judge whose predict_positions takes no `positions`
        config = tiny_ensemble.config

        def predict_positions(self, item_ids, attention_mask=None, timestamps=None, query_timestamps=None,
                              labels=None):
            return tiny_ensemble.predict_positions(item_ids, attention_mask, timestamps, query_timestamps, labels)

    splits, vocabulary = tiny_data
    batch = eval_batch(splits, vocabulary)
    policy = AutoModelForNextItemPrediction.from_pretrained(tiny_pretrained).eval()
    pruned = rollout_batch(policy, tiny_ensemble, batch, horizon=3)
    full = rollout_batch(policy, EveryPosition(), batch, horizon=3)
    assert torch.equal(pruned.items, full.items)
    torch.testing.assert_close(pruned.member_scores, full.member_scores, atol=1e-5, rtol=1e-5)
    assert (pruned.member_scores != 0).all()
