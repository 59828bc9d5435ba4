import math

import torch

from hf_genrec.losses.ppo import categorical_kl, clipped_policy_loss, value_loss


def test_clipped_objective_on_known_ratios():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    new = torch.log(torch.tensor([0.75, 0.75, 0.25, 0.55]))  # ratios 1.5, 1.5, 0.5, 1.1
    advantages = torch.tensor([1.0, -1.0, -2.0, 1.0])
    losses, clipped, ratios = clipped_policy_loss(new, old, advantages, clip_range=0.2)
    torch.testing.assert_close(ratios, torch.tensor([1.5, 1.5, 0.5, 1.1]))
    # -min(rA, clip(r)A): (-min(1.5, 1.2), -min(-1.5, -1.2), -min(-1, -1.6), -min(1.1, 1.1))
    torch.testing.assert_close(losses, torch.tensor([-1.2, 1.5, 1.6, -1.1]))
    assert clipped.tolist() == [True, False, True, False]


def test_clipped_objective_gradient_vanishes_when_clipped():
    logp = torch.log(torch.tensor([0.75])).requires_grad_()
    losses, _, _ = clipped_policy_loss(logp, torch.log(torch.tensor([0.5])), torch.tensor([1.0]), 0.2)
    losses.sum().backward()
    assert logp.grad.item() == 0.0


def test_categorical_kl_exact_and_masked():
    p = torch.tensor([[0.5, 0.5, 0.0]])
    q = torch.tensor([[0.25, 0.25, 0.5]])
    kl = categorical_kl(p.log(), q.log())
    torch.testing.assert_close(kl, torch.tensor([math.log(2.0)]))  # 2 * 0.5 * log(0.5 / 0.25)
    assert categorical_kl(q.log(), q.log()).item() == 0.0


def test_value_loss():
    torch.testing.assert_close(value_loss(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 3.0])), torch.tensor([0.5, 0.0]))
