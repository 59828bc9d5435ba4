"""DPO like TRL: `loss_type` as TRL's list with `loss_weights`, `label_smoothing` (robust DPO), `sync_ref_model`
through TRL's `SyncRefModelCallback`, and the offline mode on a preference dataset (`history`, `chosen`,
`rejected`), on a tiny HSTU over 30 items."""

import dataclasses
import warnings

import pytest
import torch
import trl
from datasets import Dataset
from peft import LoraConfig
from posttrain_helpers import NUM_ITEMS, FakeRewardEnsemble, posttrain_trainer, tiny_model, trainable_state
from trl.trainer.callbacks import SyncRefModelCallback

from hf_genrec.data import SequenceCollator
from hf_genrec.data.preferences import (
    CHOSEN_ITEM_IDS,
    REJECTED_ITEM_IDS,
    PreferenceCollator,
    build_preference_dataset,
    is_preference_dataset,
)
from hf_genrec.losses.dpo import preference_loss
from hf_genrec.trainers import DPOConfig
from hf_genrec.trainers.policy import catalogue_log_probs, policy_forward

TRL_FIELDS = ("beta", "loss_type", "loss_weights", "label_smoothing", "sync_ref_model", "ref_model_mixup_alpha",
              "ref_model_sync_steps")


def hand_made_preferences(num_rows: int = 16) -> Dataset:
    """Pairs whose chosen item is always one of items 1..10 and rejected one of 11..20, after short histories
    over the whole catalogue, with event times."""
    rows = {"history": [], "history_timestamps": [], "timestamp": [], "chosen": [], "rejected": []}
    for i in range(num_rows):
        history = [(i * 3 + 4 * k) % NUM_ITEMS + 1 for k in range(2 + i % 4)]
        times = [1_000_000 + 3_600 * (i + k) for k in range(len(history))]
        rows["history"].append(history)
        rows["history_timestamps"].append(times)
        rows["timestamp"].append(times[-1] + 600)
        rows["chosen"].append((i * 7) % 10 + 1)
        rows["rejected"].append((i * 3) % 10 + 11)
    return Dataset.from_dict(rows)


@torch.no_grad()
def pair_log_probs(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(chosen), log π(rejected) at the last history position of a preference batch."""
    model.eval()
    last = batch["attention_mask"].sum(dim=1) - 1
    user = policy_forward(model, batch).user_embeddings[torch.arange(len(last)), last]
    log_probs = catalogue_log_probs(model, user)
    return (log_probs.gather(1, batch[CHOSEN_ITEM_IDS][:, None]).squeeze(1),
            log_probs.gather(1, batch[REJECTED_ITEM_IDS][:, None]).squeeze(1))


# ------------------------------------------------------------------------------------------------ config
def trl_config(tmp_path, **values) -> trl.DPOConfig:
    return trl.DPOConfig(str(tmp_path), use_cpu=True, bf16=False, **values)  # TRL defaults to bf16


def test_dpo_fields_mirror_trl_dpo_config(tmp_path):
    ours, theirs = DPOConfig(str(tmp_path)), trl_config(tmp_path)
    assert {name: getattr(ours, name) for name in TRL_FIELDS} == {name: getattr(theirs, name) for name in TRL_FIELDS}
    # A plain string is TRL's one-element list, in both.
    assert DPOConfig(str(tmp_path), loss_type="ipo").loss_type == trl_config(tmp_path, loss_type="ipo").loss_type
    assert DPOConfig(str(tmp_path), loss_type=["sigmoid", "ipo"], loss_weights=[0.8, 0.2]).loss_weights == [0.8, 0.2]
    assert {f.name for f in dataclasses.fields(trl.DPOConfig)} >= set(TRL_FIELDS)


@pytest.mark.parametrize(
    "values, field",
    [
        ({"loss_type": ["sigmoid", "ipo"], "loss_weights": [1.0]}, "loss_weights"),
        ({"loss_type": ["sigmoid", "hinge"]}, "loss_type"),
        ({"loss_type": []}, "loss_type"),
        ({"loss_type": ["robust"], "label_smoothing": 0.5}, "label_smoothing"),
        ({"sync_ref_model": True, "ref_model_mixup_alpha": 1.5}, "ref_model_mixup_alpha"),
        ({"sync_ref_model": True, "ref_model_sync_steps": 0}, "ref_model_sync_steps"),
    ],
)
def test_bad_dpo_settings_are_refused_by_name(tmp_path, values, field):
    with pytest.raises(ValueError, match=field):
        DPOConfig(str(tmp_path), **values)


def test_label_smoothing_without_a_loss_that_reads_it_warns(tmp_path):
    with pytest.warns(UserWarning, match="label_smoothing"):
        DPOConfig(str(tmp_path), loss_type="sigmoid", label_smoothing=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        DPOConfig(str(tmp_path), loss_type="robust", label_smoothing=0.1)


# -------------------------------------------------------------------------------------------------- losses
def test_loss_weights_combine_loss_types_as_trl():
    torch.manual_seed(0)
    logps = [torch.randn(6) for _ in range(4)]
    sigmoid, _, _ = preference_loss(*logps, beta=0.5, loss_type="sigmoid")
    ipo, _, _ = preference_loss(*logps, beta=0.5, loss_type="ipo")
    mixed, _, _ = preference_loss(*logps, beta=0.5, loss_type=["sigmoid", "ipo"], loss_weights=[0.8, 0.2])
    torch.testing.assert_close(mixed, 0.8 * sigmoid + 0.2 * ipo)
    unweighted, _, _ = preference_loss(*logps, beta=0.5, loss_type=["sigmoid", "ipo"])
    torch.testing.assert_close(unweighted, sigmoid + ipo)
    with pytest.raises(ValueError, match="loss_weights"):
        preference_loss(*logps, beta=0.5, loss_type=["sigmoid", "ipo"], loss_weights=[1.0])


def test_robust_loss_is_unbiased_under_label_flips():
    torch.manual_seed(0)
    chosen, rejected, ref_chosen, ref_rejected = (torch.randn(8) for _ in range(4))
    sigmoid, _, _ = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3, loss_type="sigmoid")
    robust_zero, _, _ = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.3, loss_type="robust")
    torch.testing.assert_close(robust_zero, sigmoid)  # ε = 0: plain DPO
    eps = 0.2
    kept, _, _ = preference_loss(chosen, rejected, ref_chosen, ref_rejected, 0.3, "robust", label_smoothing=eps)
    flipped, _, _ = preference_loss(rejected, chosen, ref_rejected, ref_chosen, 0.3, "robust", label_smoothing=eps)
    # Labels flipped with probability ε: the expected robust loss is the clean DPO loss.
    torch.testing.assert_close((1 - eps) * kept + eps * flipped, sigmoid)
    assert not torch.allclose(kept, sigmoid)


def test_list_loss_type_and_label_smoothing_reach_the_trainer_loss(tmp_path, train_rows):
    """The same sampled pairs, scored with two configs: the trainer's loss follows `loss_type`, `loss_weights`
    and `label_smoothing`."""
    losses = {}
    for name, settings in {
        "sigmoid": {},
        "robust": {"loss_type": ["robust"], "label_smoothing": 0.25},
        "mixed": {"loss_type": ["sigmoid", "ipo"], "loss_weights": [0.5, 2.0]},
    }.items():
        trainer = posttrain_trainer("dpo", tmp_path / name, train_rows, model=tiny_model(seed=5),
                                    reward_model=FakeRewardEnsemble(), **settings)
        batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(8)])
        torch.manual_seed(0)
        with torch.no_grad():
            prepared = trainer._prepare_step([batch])[0]
            trainer.model.train()
            loss_sum, _ = trainer._loss_sum(trainer.model, prepared, "train")
        losses[name] = (loss_sum, prepared["prepared"])
    pairs = losses["sigmoid"][1]
    count = pairs["chosen"].numel()
    assert count > 0
    # At the start π_θ = π_ref: h = 0 for every pair, so each loss is its value at h = 0.
    log2 = torch.log(torch.tensor(2.0))
    torch.testing.assert_close(losses["sigmoid"][0], count * log2)
    torch.testing.assert_close(losses["robust"][0], count * log2 * (1 - 0.25 - 0.25) / (1 - 0.5))
    torch.testing.assert_close(losses["mixed"][0], count * (0.5 * log2 + 2.0 * (1 / (2 * 0.1)) ** 2))


# ------------------------------------------------------------------------------------------ sync_ref_model
def test_sync_ref_model_mixes_the_policy_into_the_reference_with_trls_callback(tmp_path, train_rows):
    trainer = posttrain_trainer("dpo", tmp_path, train_rows, model=tiny_model(seed=5),
                                reward_model=FakeRewardEnsemble(), max_steps=4, learning_rate=1e-2,
                                sync_ref_model=True, ref_model_sync_steps=4, ref_model_mixup_alpha=0.25)
    callbacks = [c for c in trainer.callback_handler.callbacks if isinstance(c, SyncRefModelCallback)]
    assert len(callbacks) == 1 and callbacks[0].ref_model is trainer.ref_model
    initial = trainable_state(trainer.ref_model)
    trainer.train()
    policy, reference = trainable_state(trainer.policy), trainable_state(trainer.ref_model)
    # One sync, at step 4: π_ref = α π_θ + (1 − α) π_ref(initial).
    for name, value in reference.items():
        torch.testing.assert_close(value, 0.25 * policy[name] + 0.75 * initial[name])
    assert any(not torch.equal(reference[name], initial[name]) for name in reference)


def test_without_sync_the_reference_stays_frozen(tmp_path, train_rows):
    trainer = posttrain_trainer("dpo", tmp_path, train_rows, model=tiny_model(seed=5),
                                reward_model=FakeRewardEnsemble(), max_steps=2, learning_rate=1e-2)
    assert not any(isinstance(c, SyncRefModelCallback) for c in trainer.callback_handler.callbacks)
    initial = trainable_state(trainer.ref_model)
    trainer.train()
    assert all(torch.equal(value, initial[name]) for name, value in trainable_state(trainer.ref_model).items())


def test_sync_ref_model_under_peft_is_refused(tmp_path, train_rows):
    with pytest.raises(ValueError, match="sync_ref_model"):
        posttrain_trainer("dpo", tmp_path, train_rows, reward_model=FakeRewardEnsemble(), sync_ref_model=True,
                          peft_config=LoraConfig(r=2, target_modules=["uvqk", "o_proj"], task_type=None))


# ------------------------------------------------------------------------------------------------- offline
def test_offline_dpo_widens_the_logged_margin_over_the_reference(tmp_path):
    pairs = hand_made_preferences()
    assert is_preference_dataset(pairs)
    # No reward model: the pairs are the dataset's.
    trainer = posttrain_trainer("dpo", tmp_path, pairs, model=tiny_model(seed=5), max_steps=8, learning_rate=1e-2)
    assert trainer.offline and trainer.reward_model is None and trainer._name == "DPO"
    batch = trainer.data_collator([pairs[i] for i in range(len(pairs))])
    ref_chosen, ref_rejected = pair_log_probs(trainer.ref_model, batch)
    trainer.train()
    chosen, rejected = pair_log_probs(trainer.policy, batch)
    widening = (chosen - rejected) - (ref_chosen - ref_rejected)  # 0 for the untrained policy (π_θ = π_ref)
    assert widening.mean() > 1.0 and (widening > 0).float().mean() > 0.9
    logged = trainer.state.log_history
    assert any("rewards/margins" in entry for entry in logged)


def test_preference_collator_reads_histories_times_and_pairs():
    rows = [
        {"history": [3, 4, 5, 6], "history_timestamps": [10, 20, 30, 40], "timestamp": 55, "chosen": 7, "rejected": 8},
        {"history": [9], "history_timestamps": [15], "timestamp": 16, "chosen": 2, "rejected": 1},
    ]
    batch = PreferenceCollator(max_seq_len=3)(rows)
    assert batch["item_ids"].tolist() == [[4, 5, 6], [9, 0, 0]]  # the most recent max_seq_len events
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    # Each position asks about the next event's time; the last one about the request's `timestamp`.
    assert batch["query_timestamps"].tolist() == [[30, 40, 55], [16, 0, 0]]
    assert batch[CHOSEN_ITEM_IDS].tolist() == [7, 2] and batch[REJECTED_ITEM_IDS].tolist() == [8, 1]
    untimed = PreferenceCollator(max_seq_len=3)([{"history": [1, 2], "chosen": 3, "rejected": 4}])
    assert "timestamps" not in untimed and untimed["item_ids"].tolist() == [[1, 2]]
    with pytest.raises(ValueError, match="chosen == rejected"):
        PreferenceCollator()([{"history": [1], "chosen": 3, "rejected": 3}])
    with pytest.raises(ValueError, match="mixes"):
        PreferenceCollator()([rows[0], {"item_ids": [1, 2], "ratings": [1.0, 2.0], "timestamps": [1, 2]}])


def test_preference_collator_collates_evaluation_rows_as_the_sequence_collator(synthetic_data):
    rows = [synthetic_data[0]["validation"][i] for i in range(3)]
    ours, theirs = PreferenceCollator(max_seq_len=12)(rows), SequenceCollator(max_seq_len=12)(rows)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[key], theirs[key]) for key in ours)


def test_build_preference_dataset_from_logged_ratings():
    sequences = Dataset.from_dict({
        "user_id": ["a", "b"],
        "item_ids": [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]],
        "ratings": [[5.0, 1.0, 4.0, 2.0, 5.0], [3.0, 5.0, 1.0, 4.0, 2.0, 1.0]],
        "timestamps": [[10, 20, 30, 40, 50], [1, 2, 3, 4, 5, 6]],
    })
    pairs = build_preference_dataset(sequences, high_rating=4.0, low_rating=2.0, seed=0)
    assert is_preference_dataset(pairs)
    rows = pairs.to_list()
    # User a: position 0 has no history; at position 2 (item 3, rated 4) the later low-rated item is 4 (item 2,
    # rated 1, is in the history); position 4 (item 5) has no later low-rated item.
    assert rows[0] == {"history": [1, 2], "history_timestamps": [10, 20], "timestamp": 30, "chosen": 3,
                       "rejected": 4, "user_id": "a"}
    # User b: position 1 (item 7) may reject 8, 10 or 11; position 3 (item 9) 10 or 11.
    b = [row for row in rows if row["user_id"] == "b"]
    assert [(row["history"], row["chosen"]) for row in b] == [([6], 7), ([6, 7, 8], 9)]
    assert b[0]["rejected"] in (8, 10, 11) and b[1]["rejected"] in (10, 11)
    assert len(rows) == 3
    assert build_preference_dataset(sequences, seed=0).to_list() == rows  # seeded
    short = build_preference_dataset(sequences, max_history_length=1, seed=0).to_list()
    assert [row["history"] for row in short] == [[2], [6], [8]]
    with pytest.raises(ValueError, match="low_rating"):
        build_preference_dataset(sequences, high_rating=3.0, low_rating=3.0)


def test_trl_parser_reads_the_list_form_from_flags(tmp_path):
    (args,) = trl.TrlParser((DPOConfig,)).parse_args_and_config(
        ["--output_dir", str(tmp_path), "--loss_type", "sigmoid", "robust", "--loss_weights", "1.0", "0.5",
         "--label_smoothing", "0.1", "--sync_ref_model", "true", "--ref_model_sync_steps", "8"]
    )
    assert args.loss_type == ["sigmoid", "robust"] and args.loss_weights == [1.0, 0.5]
    assert args.label_smoothing == 0.1 and args.sync_ref_model is True and args.ref_model_sync_steps == 8


def test_offline_dpo_under_peft_uses_the_adapter_disabled_reference(tmp_path):
    pairs = hand_made_preferences(8)
    trainer = posttrain_trainer("dpo", tmp_path, pairs, model=tiny_model(seed=5), max_steps=8, learning_rate=1e-1,
                                peft_config=LoraConfig(r=2, target_modules=["uvqk", "o_proj"], task_type=None))
    assert trainer.ref_model is None and trainer.is_peft
    batch = trainer.data_collator([pairs[i] for i in range(len(pairs))])
    with trainer.reference_policy() as reference:
        ref_chosen, ref_rejected = pair_log_probs(reference, batch)
    trainer.train()
    chosen, rejected = pair_log_probs(trainer.policy, batch)
    assert ((chosen - rejected) - (ref_chosen - ref_rejected)).mean() > 0.1
