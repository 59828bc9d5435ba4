import math

import torch

from hf_genrec.losses.cql import cql_loss


def test_cql_loss_on_a_hand_computed_batch():
    q = torch.tensor([[float("-inf"), 1.0, 2.0, 3.0], [float("-inf"), 0.0, 0.0, 4.0]])
    actions = torch.tensor([2, 3])
    rewards = torch.tensor([4.0, 4.0])
    losses, regression, penalty = cql_loss(q, actions, rewards, alpha=0.5)
    lse0 = math.log(math.e + math.e**2 + math.e**3)
    lse1 = math.log(2 + math.e**4)
    torch.testing.assert_close(regression, torch.tensor([4.0, 0.0]))
    torch.testing.assert_close(penalty, torch.tensor([lse0 - 2.0, lse1 - 4.0]))
    torch.testing.assert_close(losses, regression + 0.5 * penalty)
    assert (penalty >= 0).all()
