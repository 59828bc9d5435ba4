"""The shared policy pieces: contexts, prefixes, seen items, sampling, the PPO batch repeat and rollout ids."""

import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model

from hf_genrec.data import SequenceCollator
from hf_genrec.trainers.policy import (
    PREPARED,
    catalogue_log_probs,
    context_batch,
    sample_contexts,
    sample_items,
    seen_item_mask,
)
from hf_genrec.trainers.ppo import ROLLOUT_ID, RepeatBatchesSampler, RolloutCollator, RolloutRows


def test_sample_contexts_draws_distinct_supervised_positions():
    labels = torch.tensor([[5, 6, 7, 8, 0], [9, 3, 0, 0, 0], [0, 0, 0, 0, 0]])
    torch.manual_seed(0)
    rows, positions = sample_contexts(labels, per_sequence=3)
    assert rows.tolist().count(0) == 3 and rows.tolist().count(1) == 2 and 2 not in rows.tolist()
    assert (labels[rows, positions] > 0).all()
    assert len(set(zip(rows.tolist(), positions.tolist()))) == len(rows)
    all_rows, all_positions = sample_contexts(labels, per_sequence=None)
    assert list(zip(all_rows.tolist(), all_positions.tolist())) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]


def test_context_batch_ends_each_prefix_at_its_context():
    inputs = {
        "item_ids": torch.tensor([[4, 5, 6, 7]]),
        "attention_mask": torch.ones(1, 4, dtype=torch.long),
        "timestamps": torch.tensor([[10, 20, 30, 40]]),
        "query_timestamps": torch.tensor([[20, 30, 40, 50]]),
    }
    prefixes = context_batch(inputs, torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert prefixes.item_ids.tolist() == [[4, 5, 0], [4, 5, 6]]
    assert prefixes.attention_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert prefixes.timestamps.tolist() == [[10, 20, 0], [10, 20, 30]]
    assert prefixes.query_timestamps.tolist() == [[20, 30, 0], [20, 30, 40]]  # last: the logged event's time

    # A batch without query times gets them from the one rule on the full histories: a prefix's last
    # position still asks about the logged next event, not about its own time.
    without_queries = {key: value for key, value in inputs.items() if key != "query_timestamps"}
    prefixes = context_batch(without_queries, torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert prefixes.query_timestamps.tolist() == [[20, 30, 0], [20, 30, 40]]


def test_seen_items_and_sampling_without_replacement():
    seen = seen_item_mask(torch.tensor([[2, 3, 0]]), num_columns=6)
    assert seen.tolist() == [[True, False, True, True, False, False]]
    log_probs = torch.log_softmax(torch.zeros(1, 6).masked_fill(seen, float("-inf")), dim=-1)
    torch.manual_seed(0)
    items, valid = sample_items(log_probs, num_samples=5)
    drawn = items[valid].tolist()
    assert sorted(drawn) == [1, 4, 5]  # the three unseen items, each once; two draws are invalid
    assert valid.sum() == 3
    items, valid = sample_items(log_probs, num_samples=50, replacement=True)
    assert valid.all() and set(items.flatten().tolist()) <= {1, 4, 5}


def test_catalogue_log_probs_is_the_full_softmax():
    model = tiny_model()
    user = torch.nn.functional.normalize(torch.randn(2, 16), dim=-1)
    log_probs = catalogue_log_probs(model, user)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2))
    assert torch.isinf(log_probs[:, 0]).all()


def test_repeat_batches_sampler_keys_each_group_with_a_new_rollout_id():
    sampler = RepeatBatchesSampler(list(range(7)), chunk_size=3, repeats=2)
    first_epoch = list(sampler)
    # The short last chunk is dropped; both passes over a group carry its id.
    assert first_epoch == [(0, 0), (1, 0), (2, 0), (0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (3, 1), (4, 1), (5, 1)]
    assert len(sampler) == 12
    assert [rollout_id for _, rollout_id in sampler] == [2] * 6 + [3] * 6  # never reused in a later epoch


def test_rollout_rows_and_collator_carry_the_rollout_id(train_rows):
    rows = RolloutRows(train_rows)
    collate = RolloutCollator(SequenceCollator(max_seq_len=12))
    batch = collate([rows[(4, 7)], rows[(9, 7)]])
    plain = SequenceCollator(max_seq_len=12)([train_rows[4], train_rows[9]])
    assert batch[ROLLOUT_ID].tolist() == [7, 7]
    assert batch.keys() - {ROLLOUT_ID} == plain.keys()
    assert all(torch.equal(batch[key], plain[key]) for key in plain)
    assert ROLLOUT_ID not in collate([train_rows[4]])  # rows without an id (evaluation) collate as before


def test_ppo_reuses_each_rollout_for_ppo_epochs_steps(tmp_path, train_rows):
    reward_model = FakeRewardEnsemble()
    trainer = posttrain_trainer("ppo", tmp_path, train_rows, reward_model=reward_model, ppo_epochs=3, max_steps=6)
    trainer.train()
    assert trainer.state.global_step == 6
    assert reward_model.calls == 2  # one rollout (one ensemble query) per 3 optimizer steps
    ratios = [entry["val/ratio"] for entry in trainer.state.log_history if "val/ratio" in entry]
    assert ratios[0] == 1.0 and ratios[1] != 1.0  # later epochs see the updated policy against π_old


def test_ppo_reuses_a_rollout_exactly_when_the_rollout_id_matches(tmp_path, train_rows):
    reward_model = FakeRewardEnsemble()
    trainer = posttrain_trainer("ppo", tmp_path, train_rows, reward_model=reward_model, ppo_epochs=4)
    rows = RolloutRows(train_rows)

    def step(rollout_id):
        micro_batches = [trainer.data_collator([rows[(i, rollout_id)] for i in range(start, start + 2)])
                         for start in (0, 2)]
        return trainer._prepare_step(micro_batches)

    first = step(rollout_id=5)
    assert reward_model.calls == 2  # one ensemble query per micro-batch
    repeat = step(rollout_id=5)
    assert reward_model.calls == 2 and all(a[PREPARED] is b[PREPARED] for a, b in zip(first, repeat))
    # The same rows under a new id are a new rollout (a new pass over the data), not a repeat.
    step(rollout_id=6)
    assert reward_model.calls == 4
