"""Each post-training method's defining effect, on a tiny HSTU over 30 items with a hand-made reward model
(`FakeRewardEnsemble`: item quality in [1, 5]) and a few optimizer steps from a fixed seed:

- DPO widens the log-probability margin of the chosen over the rejected item, relative to the reference;
- CQL lowers the conservative gap logsumexp_a Q(x, a) − Q(x, y), the more so the larger α;
- PPO raises the reward model's expected score of the items its policy recommends.

(A-SFT against reward-weighted BC is in `test_asft_trainer.py`.)
"""

import torch
from posttrain_helpers import FakeRewardEnsemble, posttrain_trainer, tiny_model

from hf_genrec.data import SequenceCollator
from hf_genrec.losses.cql import cql_loss
from hf_genrec.trainers.dpo import CHOSEN, POSITIONS, REF_CHOSEN_LOGPS, REF_REJECTED_LOGPS, REJECTED, ROWS
from hf_genrec.trainers.policy import (
    PREPARED,
    catalogue_log_probs,
    policy_forward,
    seen_item_mask,
    supervised_mask,
)

FEW_STEPS = dict(max_steps=8, learning_rate=1e-2)


def all_rows_batch(rows):
    return SequenceCollator(max_seq_len=12)([rows[i] for i in range(len(rows))])


def trainer_for(method, tmp_path, rows, **settings):
    return posttrain_trainer(method, tmp_path, rows, model=tiny_model(seed=5), reward_model=FakeRewardEnsemble(),
                             **FEW_STEPS, **settings)


@torch.no_grad()
def context_log_probs(policy, batch, exclude_seen: bool = False) -> torch.Tensor:
    """(P, V + 1) log π(·|x) at every supervised position of `batch` (optionally over unseen items only)."""
    policy.eval()
    supervised = supervised_mask(batch["labels"])
    user = policy_forward(policy, batch).user_embeddings[supervised]
    exclude = None
    if exclude_seen:
        length = batch["item_ids"].shape[1]
        prefixes = batch["item_ids"][:, None, :] * (torch.arange(length)[None, :] <= torch.arange(length)[:, None])
        exclude = seen_item_mask(prefixes[supervised], policy.config.num_items + 1)
    return catalogue_log_probs(policy, user, exclude)


def test_dpo_widens_the_chosen_over_rejected_margin(tmp_path, train_rows):
    trainer = trainer_for("dpo", tmp_path, train_rows)
    trainer.train()
    # Fresh contexts and pairs, chosen by the reward model as in training; the reference log-probabilities
    # come with them.
    torch.manual_seed(0)
    with torch.no_grad():
        prepared = trainer._prepare_micro_batch(all_rows_batch(train_rows))[PREPARED]
    log_probs = context_log_probs(trainer.policy, all_rows_batch(train_rows))  # (P, V + 1), row-major order
    supervised = supervised_mask(all_rows_batch(train_rows)["labels"])
    index = torch.full(supervised.shape, -1, dtype=torch.long)
    index[supervised] = torch.arange(int(supervised.sum()))
    at_context = log_probs[index[prepared[ROWS], prepared[POSITIONS]]]  # (K, V + 1)
    policy_margin = at_context.gather(1, prepared[CHOSEN][:, None]) - at_context.gather(1, prepared[REJECTED][:, None])
    reference_margin = prepared[REF_CHOSEN_LOGPS] - prepared[REF_REJECTED_LOGPS]
    widening = policy_margin.squeeze(1) - reference_margin  # 0 for the untrained policy (π_θ = π_ref)
    assert prepared[CHOSEN].numel() >= 20
    assert widening.mean() > 1.0 and (widening > 0).float().mean() > 0.9


@torch.no_grad()
def conservative_gap(trainer, batch) -> float:
    """Mean of logsumexp_a Q(x, a) − Q(x, y) over the logged items of `batch`."""
    trainer.policy.eval()
    supervised = supervised_mask(batch["labels"])
    _, cosines = trainer._forward_cosines(trainer.policy, batch, supervised)  # (P, V + 1), as training scores them
    head = trainer.head("cql_head")  # Q = s·cos + b, fused into the loss as in training
    _, _, penalty = cql_loss(cosines, batch["labels"][supervised], batch["label_ratings"][supervised], alpha=1.0,
                             scale=head.scale, bias=head.bias)
    return penalty.mean().item()


def test_cql_lowers_the_conservative_gap(tmp_path, train_rows):
    batch = all_rows_batch(train_rows)
    gaps = {}
    for alpha in (0.0, 1.0):
        trainer = trainer_for("cql", tmp_path / str(alpha), train_rows, alpha=alpha)
        start = conservative_gap(trainer, batch)
        trainer.train()
        gaps[alpha] = conservative_gap(trainer, batch)
    # Plain reward regression (α = 0) barely moves the gap; the CQL penalty drives it down.
    assert gaps[1.0] < start - 1.0
    assert gaps[1.0] < gaps[0.0] - 1.0


def test_ppo_raises_the_reward_of_the_recommended_items(tmp_path, train_rows):
    trainer = trainer_for("ppo", tmp_path, train_rows)
    reward_model, batch = trainer.reward_model, all_rows_batch(train_rows)
    supervised = supervised_mask(batch["labels"])
    # R̂(x, y) of every item at every context (the context's history is the row up to the position).
    items = torch.arange(1, trainer.policy.config.num_items + 1)
    rows, positions = supervised.nonzero(as_tuple=True)
    keep = torch.arange(batch["item_ids"].shape[1])[None, :] <= positions[:, None]
    histories = batch["item_ids"][rows] * keep
    rewards = reward_model.predict_candidates(histories, keep.long(), candidate_item_ids=items.expand(len(rows), -1))

    def expected_reward(policy) -> float:
        """E_{y ~ π(·|x)}[R̂(x, y)], averaged over the contexts; π acts over the unseen items, as in PPO."""
        log_probs = context_log_probs(policy, batch, exclude_seen=True)[:, 1:]  # (P, V)
        return (log_probs.exp() * rewards.mean).sum(dim=1).mean().item()

    before = expected_reward(trainer.policy)
    trainer.train()
    assert expected_reward(trainer.policy) > before + 0.5
