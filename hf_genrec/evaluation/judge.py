"""Reward model as a judge (brief, section 5): score a policy's own recommendations with a separate ensemble.

Shapes: B users in a batch, U users in the dataset, L history length, K judge members, T rollout steps
(the horizon H), V items (columns 0..V, 0 = padding).

Protocol, per test context (a user's history and the time of the held-out request):

1. step t = 0..T-1: the policy scores the catalogue after the current history; its top-1 item among those
   the user has not seen (the full history plus the items already recommended in this rollout) is the
   recommendation y_t; each judge member k scores it, r_k,t = R̂_k(x_t, y_t);
2. y_t is appended to the history (as if the user took it) and the rollout continues from there;
3. the user's score is the discounted sum S = Σ_t γ^t · mean_k r_k,t, and member k's score S_k = Σ_t γ^t r_k,t.

Time of the rollout's requests: step 0 asks at the held-out target's timestamp (the real request time);
each appended item gets the time of the request that recommended it, and step t > 0 asks `time_gap`
seconds after step t-1 (default 60 s: the next request of the same session). The HSTU time bias only sees
log-scale buckets of these gaps, so the value matters little as long as it is a within-session gap.

A user who has seen every item has nothing left to recommend: the rollout stops there for that user and
the remaining steps add 0 (`JudgeScores.steps` says how many steps each user got).

The judge must be a **separate** ensemble, never the one a method trained against (a policy that exploits
its reward model's errors would look good to that same model). The spread reported with the score is the
standard deviation across judge members of their mean scores, `std_k(mean_u S_k[u])` (population form).

Everything is pure tensors in and out: `rollout_batch` scores one collated batch, `judge_score` a dataset.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.columns import ATTENTION_MASK, HISTORY_ITEM_IDS, ITEM_IDS, LABELS, TARGET_TIMESTAMPS, TIMESTAMPS
from ..data.history import History
from ..utils.runtime import warm_cpu_heap

__all__ = [
    "DEFAULT_GAMMA",
    "DEFAULT_HORIZON",
    "DEFAULT_TIME_GAP",
    "JudgeScores",
    "history_lengths",
    "judge_score",
    "last_window",
    "rollout_batch",
    "trajectory_positions",
]

DEFAULT_HORIZON = 3
DEFAULT_GAMMA = 0.9
# Seconds between two rollout requests after the first (which is at the held-out target's time).
DEFAULT_TIME_GAP = 60


@dataclass
class JudgeScores:
    """Per-user outcome of a judge rollout, kept so subsets and bootstrap intervals need no rerun.

    Attributes:
        scores: (U,) float64, the discounted judge-mean reward Σ_t γ^t mean_k r_k,t of each user.
        member_scores: (K, U) float64, the same sum with each judge member's rewards.
        items: (U, T) int64, the recommended item of each step (0 after the catalogue ran out).
        rewards: (U, T) float64, the judge-mean reward of each step (0 after the catalogue ran out).
        steps: (U,) int64, how many steps each user's rollout made (T unless the catalogue ran out).

    Users are in dataset order, aligned with `RankingPredictions` of the same dataset.
    """

    scores: torch.Tensor
    member_scores: torch.Tensor
    items: torch.Tensor
    rewards: torch.Tensor
    steps: torch.Tensor

    def __len__(self) -> int:
        return self.scores.numel()

    @property
    def num_members(self) -> int:
        return self.member_scores.shape[0]

    def mean(self, mask: torch.Tensor | None = None) -> float:
        """Mean score over the users selected by `mask` (all users by default); `nan` over nobody."""
        scores = self.scores if mask is None else self.scores[mask]
        return scores.mean().item() if scores.numel() else math.nan

    def member_means(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(K,) mean score of each judge member over the selected users."""
        members = self.member_scores if mask is None else self.member_scores[:, mask]
        return members.mean(dim=1)

    def spread(self, mask: torch.Tensor | None = None) -> float:
        """Standard deviation across judge members of their mean scores (0 with one member)."""
        means = self.member_means(mask)
        if not means.numel() or torch.isnan(means).any():
            return math.nan
        return means.std(unbiased=False).item()

    def reorder(self, index: torch.Tensor) -> JudgeScores:
        """The users in the order `index` (e.g. the inverse of a length sort)."""
        return JudgeScores(scores=self.scores[index], member_scores=self.member_scores[:, index],
                           items=self.items[index], rewards=self.rewards[index], steps=self.steps[index])

    @classmethod
    def concat(cls, parts: Sequence[JudgeScores]) -> JudgeScores:
        """Concatenate along users, in order."""
        if not parts:
            raise ValueError("JudgeScores.concat needs at least one part.")
        return cls(
            scores=torch.cat([p.scores for p in parts]),
            member_scores=torch.cat([p.member_scores for p in parts], dim=1),
            items=torch.cat([p.items for p in parts]),
            rewards=torch.cat([p.rewards for p in parts]),
            steps=torch.cat([p.steps for p in parts]),
        )


def _window_index(lengths: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the last `kept` of the `lengths` events of right-padded rows lie, W = the longest `kept`.

    Returns `(index (B, W), keep (B, W))`: the position in the full row of each window position (not
    clamped; it means nothing where `keep` is False) and whether the window position holds an event.
    """
    width = max(int(kept.max().item()) if kept.numel() else 1, 1)
    positions = torch.arange(width, device=lengths.device)[None, :]  # (1, W)
    return (lengths - kept)[:, None] + positions, positions < kept[:, None]


def last_window(
    item_ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor, query_time: torch.Tensor, max_len: int
) -> dict[str, torch.Tensor]:
    """Model inputs for the most recent `max_len` events of right-padded histories.

    Args:
        item_ids, timestamps: (B, L) histories, right-padded with 0.
        lengths: (B,) real events per row.
        query_time: (B,) time of the request served after each history.
        max_len: events the model reads.

    Returns:
        `History.model_inputs()` of the windows (`History(**last_window(...))` rebuilds it): `item_ids`,
        `attention_mask`, `timestamps`, `query_timestamps`, each (B, W) with W = longest kept length; the
        query times follow `query_timestamps`, with `query_time` at the last real position.
    """
    kept = lengths.clamp(max=max_len)  # (B,)
    index, keep = _window_index(lengths, kept)
    index = index.clamp(max=item_ids.shape[1] - 1)
    window = History.from_events(
        item_ids.gather(1, index) * keep, keep.long(), timestamps.gather(1, index) * keep, query_time
    )
    return window.model_inputs()


def trajectory_positions(
    item_ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor, max_len: int
) -> dict[str, torch.Tensor]:
    """Training-style inputs over the most recent `max_len + 1` events of right-padded sequences.

    Position i reads events up to i and is labelled with the event after it (as `SequenceCollator` builds
    training rows), so a reward model's `predict_positions` scores every event from the history before it.

    Args:
        item_ids, timestamps: (B, L) sequences, right-padded with 0.
        lengths: (B,) real events per row (at least 2).
        max_len: input events the model reads.

    Returns:
        `History.model_inputs()` of the inputs plus `labels`, each (B, W) with W the longest kept input;
        the last real position of row b is labelled with its last event, and asks about that event's time.
    """
    inputs = (lengths - 1).clamp(min=0)  # (B,) events that have a successor
    index, keep = _window_index(inputs, inputs.clamp(max=max_len))
    last = item_ids.shape[1] - 1
    current, following = index.clamp(max=last), (index + 1).clamp(max=last)
    final_time = timestamps.gather(1, inputs[:, None])[:, 0]  # (B,) time of each row's last event
    history = History.from_events(
        item_ids.gather(1, current) * keep, keep.long(), timestamps.gather(1, current) * keep, final_time
    )
    return {**history.model_inputs(), LABELS: item_ids.gather(1, following) * keep}


def _append(item_ids: torch.Tensor, timestamps: torch.Tensor, lengths: torch.Tensor, items: torch.Tensor,
            times: torch.Tensor, active: torch.Tensor):
    """Append one event per active row at its first free position: (B, L) -> (B, L + 1)."""
    batch = torch.arange(item_ids.shape[0], device=item_ids.device)
    item_ids = torch.cat([item_ids, torch.zeros_like(item_ids[:, :1])], dim=1)
    timestamps = torch.cat([timestamps, torch.zeros_like(timestamps[:, :1])], dim=1)
    item_ids[batch[active], lengths[active]] = items[active]
    timestamps[batch[active], lengths[active]] = times[active].to(timestamps.dtype)
    return item_ids, timestamps, lengths + active.long()


def _model_device(model: Any) -> torch.device:
    parameters = getattr(model, "parameters", None)
    if parameters is not None:
        for tensor in parameters():
            return tensor.device
    return torch.device("cpu")


def _window_length(model: Any, requested: int | None, unbounded: int) -> int:
    """Events `model` reads: `requested`, else its `config.max_seq_len`, else all (`unbounded`)."""
    return requested or getattr(getattr(model, "config", None), "max_seq_len", None) or unbounded


@dataclass
class _Trajectories:
    """Histories extended by a rollout's recommendations: (B, L + T) right-padded, `lengths` real events."""

    item_ids: torch.Tensor
    timestamps: torch.Tensor
    lengths: torch.Tensor
    items: torch.Tensor  # (B, T) the recommendation of each step, 0 once the catalogue ran out


def _policy_rollout(
    policy: Any,
    batch: dict[str, torch.Tensor],
    horizon: int,
    time_gap: int,
    max_len: int,
    first_scores: torch.Tensor | None,
) -> _Trajectories:
    """The policy's rollout: each step's top-1 unseen item, appended at the time of the request that chose it."""
    item_ids = batch[ITEM_IDS]
    timestamps = batch.get(TIMESTAMPS)
    if timestamps is None:
        timestamps = torch.zeros_like(item_ids)
    lengths = batch[ATTENTION_MASK].sum(dim=1)  # (B,)
    query_time = batch[TARGET_TIMESTAMPS].to(torch.long)  # (B,) step 0 asks at the real request time
    seen = batch[HISTORY_ITEM_IDS]  # (B, H), 0 = padding
    device = _model_device(policy)
    active = torch.ones(item_ids.shape[0], dtype=torch.bool)
    items_per_step = []
    for step in range(horizon):
        if step == 0 and first_scores is not None:
            scores = first_scores.float().cpu().clone()
        else:
            window = History(**last_window(item_ids, timestamps, lengths, query_time, max_len)).to(device)
            scores = policy.score_next_items(**window.model_inputs()).float().cpu()  # (B, V + 1)
        scores[:, 0] = float("-inf")
        scores.scatter_(1, seen, float("-inf"))  # seen items and this rollout's earlier recommendations
        best, top = scores.max(dim=1)  # (B,), ties go to the lowest item index
        active = active & torch.isfinite(best)  # a user with every item seen has nothing left
        top = torch.where(active, top, torch.zeros_like(top))
        items_per_step.append(top)
        item_ids, timestamps, lengths = _append(item_ids, timestamps, lengths, top, query_time, active)
        seen = torch.cat([seen, top[:, None]], dim=1)
        query_time = query_time + time_gap
    return _Trajectories(item_ids, timestamps, lengths, torch.stack(items_per_step, dim=1))


def _judge_rewards(judge: Any, trajectories: _Trajectories, steps: torch.Tensor, max_len: int) -> torch.Tensor:
    """(K, B, T) each judge member's reward of each step's recommendation, 0 after a rollout stopped.

    One pass per member over the trajectory: y_t is the label of the position just before it, so by
    causality member k scores it from exactly the history and the earlier recommendations.
    """
    inputs = trajectory_positions(trajectories.item_ids, trajectories.timestamps, trajectories.lengths, max_len)
    kept = inputs[ATTENTION_MASK].sum(dim=1)  # (B,)
    step_index = torch.arange(trajectories.items.shape[1])[None, :]  # (1, T)
    valid = step_index < steps[:, None]  # (B, T)
    # (B, T) input position holding the context of step t
    columns = ((kept - steps)[:, None] + step_index).clamp(min=0, max=inputs[ATTENTION_MASK].shape[1] - 1)
    if "positions" in inspect.signature(judge.predict_positions).parameters:
        # Only the T step positions: the judge's last layer runs there alone (the earlier ones feed its keys).
        members = judge.predict_positions(**inputs, positions=columns).members.double().cpu()  # (K, B, T)
    else:  # a judge that scores every position
        members = judge.predict_positions(**inputs).members.double().cpu()  # (K, B, W)
        members = members.gather(2, columns[None].expand(members.shape[0], -1, -1))
    return members * valid  # (K, B, T)


@torch.no_grad()
def rollout_batch(
    policy: Any,
    judge: Any,
    batch: dict[str, torch.Tensor],
    *,
    horizon: int = DEFAULT_HORIZON,
    gamma: float = DEFAULT_GAMMA,
    time_gap: int = DEFAULT_TIME_GAP,
    policy_max_len: int | None = None,
    judge_max_len: int | None = None,
    first_scores: torch.Tensor | None = None,
) -> JudgeScores:
    """Roll out the policy's top-1 recommendations for `horizon` steps and score them with the judge.

    The policy runs once per step (each step's recommendation depends on the previous ones). The judge
    then scores the whole trajectory in one pass per member (`predict_positions`): the reward of y_t is
    read at the position just before it, so by causality the judge sees exactly the history and the
    earlier recommendations. Each model reads its own most recent events: the policy the last
    `policy_max_len` events before each step, the judge the last `judge_max_len` events of the trajectory
    before its final item (for a history shorter than `judge_max_len - horizon + 2` events this is the
    whole context of every step; beyond, the first steps' contexts lose up to `horizon - 1` oldest events).

    Args:
        policy: `score_next_items(item_ids=, attention_mask=, timestamps=, query_timestamps=) -> (B, V + 1)`
            (an `HSTUForNextItemPrediction`, or anything with that method), called with
            `**History.model_inputs()`.
        judge: `predict_positions(item_ids=, attention_mask=, timestamps=, query_timestamps=, labels=)`
            returning an object with `members` (K, B, N) (a `RewardEnsemble`).
        batch: an evaluation batch of `SequenceCollator` (`item_ids`, `attention_mask`, `timestamps`,
            `target_timestamps`, `history_item_ids`) built with a `max_seq_len` at least as long as both
            models' windows. Every history must hold at least one event.
        horizon: T, the rollout steps (>= 1).
        gamma: discount γ in [0, 1].
        time_gap: seconds between two rollout requests after the first.
        policy_max_len, judge_max_len: events each model reads; default: its `config.max_seq_len`, else all.
        first_scores: (B, V + 1) the policy's scores for step 0 if the caller already has them (e.g. from
            ranking the held-out targets), to save one policy pass.

    Returns:
        `JudgeScores` for the B users of the batch (on CPU).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}.")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
    if (batch[ATTENTION_MASK].sum(dim=1) < 1).any():
        raise ValueError("the judge rollout needs at least one history event per test context.")
    unbounded = batch[ITEM_IDS].shape[1] + horizon
    policy_max_len = _window_length(policy, policy_max_len, unbounded)
    trajectories = _policy_rollout(policy, batch, horizon, time_gap, policy_max_len, first_scores)
    steps = (trajectories.items > 0).sum(dim=1)  # (B,) the rollout stops for good once the catalogue is exhausted
    rewards = _judge_rewards(judge, trajectories, steps, _window_length(judge, judge_max_len, unbounded))

    discounts = gamma ** torch.arange(horizon, dtype=torch.float64)  # (T,)
    member_scores = (rewards * discounts).sum(dim=-1)  # (K, B)
    return JudgeScores(
        scores=member_scores.mean(dim=0),
        member_scores=member_scores,
        items=trajectories.items,
        rewards=rewards.mean(dim=0),
        steps=steps,
    )


def judge_score(
    policy: Any,
    judge: Any,
    dataset: Any,
    collator: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
    *,
    batch_size: int = 256,
    horizon: int = DEFAULT_HORIZON,
    gamma: float = DEFAULT_GAMMA,
    time_gap: int = DEFAULT_TIME_GAP,
    show_progress: bool = False,
) -> JudgeScores:
    """`rollout_batch` over every row of an evaluation dataset, in order (see the module docstring).

    Args:
        policy, judge: see `rollout_batch`; the policy is put in eval mode for the pass, its mode restored.
        dataset: evaluation rows (history + `target_*`), e.g. the test split.
        collator: `SequenceCollator(max_seq_len=...)` with a window at least as long as both models read.
        batch_size: users per pass.

    Returns:
        `JudgeScores` of all U users, aligned with `predict_ranks` on the same dataset.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # Batches of similar-length histories (each batch is padded to its longest), results put back in order.
    order = np.argsort(history_lengths(dataset), kind="stable")
    loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), collate_fn=collator)
    was_training = getattr(policy, "training", False)
    if hasattr(policy, "eval"):
        policy.eval()
    try:
        with warm_cpu_heap():  # the same large temporaries every batch: no mmap / page faults for each
            parts = [
                rollout_batch(policy, judge, batch, horizon=horizon, gamma=gamma, time_gap=time_gap)
                for batch in tqdm(loader, desc="judge rollout", disable=not show_progress)
            ]
    finally:
        if hasattr(policy, "train"):
            policy.train(was_training)
    return JudgeScores.concat(parts).reorder(torch.from_numpy(np.argsort(order, kind="stable")))


def history_lengths(dataset: Any) -> np.ndarray:
    """(U,) history lengths: read from Arrow for a `datasets.Dataset`, else row by row."""
    if hasattr(dataset, "with_format"):
        from ..data.sampling import sequence_lengths

        return sequence_lengths(dataset)
    return np.array([len(row[ITEM_IDS]) for row in dataset], dtype=np.int64)
