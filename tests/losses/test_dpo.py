import math

import pytest
import torch

from hf_genrec.losses.dpo import preference_loss, separated_pairs


def test_dpo_and_ipo_on_known_log_probs():
    policy_chosen = torch.tensor([-1.0, -2.0])
    policy_rejected = torch.tensor([-3.0, -1.0])
    ref_chosen = torch.tensor([-1.5, -2.0])
    ref_rejected = torch.tensor([-2.5, -2.0])
    # h = (pc - rc) - (pr - rr) = (0.5 - (-0.5), 0 - 1) = (1, -1)
    beta = 0.5
    losses, chosen_rewards, rejected_rewards = preference_loss(
        policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, "sigmoid"
    )
    expected = torch.tensor([math.log1p(math.exp(-0.5)), math.log1p(math.exp(0.5))])  # -log sigmoid(beta h)
    torch.testing.assert_close(losses, expected)
    torch.testing.assert_close(chosen_rewards, torch.tensor([0.25, 0.0]))
    torch.testing.assert_close(rejected_rewards, torch.tensor([-0.25, 0.5]))

    ipo, _, _ = preference_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, "ipo")
    # (h - 1/(2 beta))^2 with 1/(2 beta) = 1
    torch.testing.assert_close(ipo, torch.tensor([0.0, 4.0]))


def test_unknown_loss_type():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="loss_type"):
        preference_loss(x, x, x, x, 0.1, "hinge")


def test_separated_pairs_keep_only_disjoint_intervals():
    mean = torch.tensor([[4.0, 2.0, 3.0], [3.0, 2.8, 3.1], [5.0, 1.0, 9.0]])
    std = torch.tensor([[0.5, 0.5, 0.1], [0.5, 0.5, 0.5], [0.1, 0.1, 0.1]])
    valid = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    chosen, rejected, keep = separated_pairs(mean, std, z=1.0, valid=valid)
    # Row 0: LB = (3.5, 1.5, 2.9), UB = (4.5, 2.5, 3.1): y_w = 0, y_l = 1, 3.5 > 2.5 -> kept.
    # Row 1: best LB 2.6 < worst UB 3.3 -> dropped. Row 2: the invalid column 2 is ignored.
    assert chosen.tolist() == [0, 2, 0] and rejected.tolist() == [1, 1, 1]
    assert keep.tolist() == [True, False, True]
    # z = 0 compares the means: row 1 is kept then.
    assert separated_pairs(mean, std, z=0.0, valid=valid)[2].tolist() == [True, True, True]
