"""Gradient accumulation gives the update of the equivalent larger batch, for every trainer (they share
one loss normalisation, `GenRecTrainer.step_loss`).

One SGD step (plain SGD, no clipping: the update is proportional to the gradient, so a wrongly scaled loss
shows; Adam's first step would hide it) with 2 micro-batches of 2 rows must equal one step on the 4 rows
at once. The micro-batches hold different numbers of supervised positions, so a per-micro-batch mean
would weight them wrongly; DPO keeps a random-looking number of pairs per micro-batch.
"""

import pytest
import torch
from posttrain_helpers import (
    FakeRewardEnsemble,
    max_abs_difference,
    posttrain_trainer,
    tiny_config,
    tiny_model,
    trainable_state,
)

from hf_genrec import HSTUForNextItemPrediction, HSTUForRewardModeling
from hf_genrec.data import SequenceCollator
from hf_genrec.trainers import GenRecTrainer, PretrainConfig, PretrainTrainer, RewardConfig, RewardTrainer

SETTINGS = {
    "sft": {},
    "asft": {"baseline": "user_mean", "temperature": 0.5},
    "asft_normalized": {"baseline": "user_mean", "temperature": 0.5, "normalize_weights": True},
    # Every position is a context and every item a candidate, so the pairs do not depend on the RNG.
    "dpo": {"contexts_per_sequence": None, "num_candidates": 64},
    "ipo": {"contexts_per_sequence": None, "num_candidates": 64},
    "cql": {},
}


SGD_STEP = dict(max_steps=1, optim="sgd", learning_rate=0.5, max_grad_norm=0.0, disable_tqdm=True, seed=0)


def one_step(method, tmp_path, rows, batch_size, accumulation, **settings):
    sizes = dict(per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation)
    if method in ("pretrain", "reward"):  # the model's own loss, a mean over the micro-batch's positions
        torch.manual_seed(1)
        # Full softmax: sampled negatives would differ between the two splits of the step.
        model_class, config_class, trainer_class = {
            "pretrain": (HSTUForNextItemPrediction, PretrainConfig, PretrainTrainer),
            "reward": (HSTUForRewardModeling, RewardConfig, RewardTrainer),
        }[method]
        model = model_class(tiny_config(loss_type="full_softmax"))
        args = config_class(str(tmp_path), eval_strategy="no", save_strategy="no", load_best_model_at_end=False,
                            **sizes, **SGD_STEP)
        trainer = trainer_class(model=model, args=args, train_dataset=rows)
    else:
        model = tiny_model(seed=1)
        trainer = posttrain_trainer(method.split("_")[0], tmp_path, rows, model=model,
                                    reward_model=FakeRewardEnsemble(), **sizes, **SGD_STEP, **settings)
    before = trainable_state(model)
    trainer.train()
    return before, trainable_state(model)


@pytest.mark.parametrize("method", ["pretrain", "reward", *SETTINGS])
def test_accumulated_step_equals_large_batch_step(method, tmp_path, train_rows):
    rows = variable_length_rows(train_rows)
    start, large = one_step(method, tmp_path / "large", rows, 4, 1, **SETTINGS.get(method, {}))
    _, accumulated = one_step(method, tmp_path / "accumulated", rows, 2, 2, **SETTINGS.get(method, {}))
    update = max_abs_difference(start, large)
    assert update > 1e-3  # the step moved the weights
    assert max_abs_difference(large, accumulated) < 1e-4 * update


def test_the_comparison_detects_a_wrongly_scaled_loss(tmp_path, train_rows, monkeypatch):
    """With `loss_is_scaled_for_ga = False`, Trainer divides the step-normalised loss by the accumulation
    steps again: the accumulated update is then half the large-batch one, and the test above would fail."""
    monkeypatch.setattr(GenRecTrainer, "loss_is_scaled_for_ga", False)
    rows = variable_length_rows(train_rows)
    start, large = one_step("sft", tmp_path / "large", rows, 4, 1)
    _, accumulated = one_step("sft", tmp_path / "accumulated", rows, 2, 2)
    assert max_abs_difference(large, accumulated) > 0.1 * max_abs_difference(start, large)


def variable_length_rows(train_rows):
    """Four rows of 6, 9, 12 and 15 events. The length-bucketed sampler sorts the step's 4 rows by length, so
    the two micro-batches of 2 hold 12 + 11 and 8 + 5 supervised positions."""
    def crop(row, i):
        return {column: row[column][: 6 + 3 * i] for column in ("item_ids", "ratings", "timestamps")}

    rows = train_rows.select([0, 1, 2, 3]).map(crop, with_indices=True)
    collate = SequenceCollator(max_seq_len=12)
    assert [int((collate([rows[i]])["labels"] > 0).sum()) for i in range(4)] == [5, 8, 11, 12]
    return rows
