"""The one loss normalisation of every trainer, `GenRecTrainer.step_loss`: a micro-batch's loss is the sum of
its per-unit losses over the units of the whole optimizer step, times the number of processes.

(Its consequence, accumulated and multi-process steps equal to one large step, is tested in
`test_gradient_accumulation.py` and `tests/distributed`.)"""

import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer

from hf_genrec.data import SequenceCollator
from hf_genrec.trainers.policy import PREPARED


def test_step_loss_divides_the_sum_by_the_step_units(tmp_path, train_rows):
    trainer = posttrain_trainer("sft", tmp_path, train_rows)
    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(3)])
    units = int((batch["labels"] > 0).sum())
    loss_sum = torch.tensor(7.3)
    torch.testing.assert_close(trainer.step_loss(loss_sum, batch, torch.tensor(40.0)), loss_sum / 40)
    # Outside the training loop the batch is the whole step: its own units.
    torch.testing.assert_close(trainer.step_loss(loss_sum, batch, None), loss_sum / units)
    # A mean over P units is a sum of mean × P.
    torch.testing.assert_close(trainer.step_loss(torch.tensor(0.7), batch, torch.tensor(40.0), mean_over=8),
                               torch.tensor(0.7 * 8 / 40))


def test_a_mean_loss_of_the_whole_step_passes_bit_for_bit(tmp_path, train_rows):
    """Pretraining with one micro-batch per step on one process returns the model's mean loss unchanged."""
    trainer = posttrain_trainer("sft", tmp_path, train_rows)
    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(3)])
    units = trainer._loss_units(batch)
    for value in torch.rand(100) * 10:
        assert torch.equal(trainer.step_loss(value, batch, trainer._step_units([batch]), mean_over=units), value)


def test_every_parameter_gets_a_gradient_when_no_unit_is_kept(tmp_path, train_rows):
    """DDP with `ddp_find_unused_parameters=False` needs a gradient for every trainable parameter in every
    backward, even from a micro-batch that keeps no unit (here: DPO with no separated pair)."""
    trainer = posttrain_trainer("dpo", tmp_path, train_rows, reward_model=FakeRewardEnsemble(), confidence_z=1e6)
    batch = SequenceCollator(max_seq_len=12)([train_rows[i] for i in range(4)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert trainer._loss_units(batch) == 0 and batch[PREPARED]["chosen"].numel() == 0
    assert loss.item() == 0.0
    loss.backward()
    missing = [name for name, p in trainer.model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
