"""`WorldRewardModel`: the world's true reward r* behind the reward-ensemble interface the post-training trainers
call, so a method can be trained against the truth instead of a learned proxy (the "oracle reward" arm of the
reward-overoptimisation protocol: PPO against r* is the upper bound of what PPO against a proxy could reach).

The trainers hand a reward model right-padded histories of vocabulary indices with their timestamps, never the
user. Every event of a simulated log has its own timestamp (`SimulationTruth.timestamps`), so the last real event
of a history says which user it is and how many items that user had consumed (observed or not) up to it; the
world's state is rebuilt from that full consumed prefix, exactly as `World.true_reward` does for the evaluation.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.history import History
from ..data.vocabulary import PAD_INDEX, ItemVocabulary
from ..rewards.ensemble import RewardPrediction
from .logging_policy import LoggingPolicy, SimulationTruth
from .world import World

__all__ = ["TRUE_PPO", "WorldRewardModel"]

# The row of a method post-trained against r* itself (PPO with `WorldRewardModel` as its reward model): the reference
# for what the truth allows with a method's budget, not a method a user can run on logs.
TRUE_PPO = "ppo_true"


class WorldRewardModel:
    """The true reward r*(u, h, i) of a `World`, with the methods of a `RewardEnsemble` the trainers call
    (`predict_candidates`, `predict_positions`, `value_positions`), as a one-member "ensemble" whose std is 0.

    Args:
        world (`World`): the world whose logs the policy is trained on.
        truth (`SimulationTruth`): the truth of that log (`simulate_logs`), with its `timestamps`.
        vocabulary (`ItemVocabulary`): the vocabulary of the prepared log (raw item id = world index + 1).
        logging_policy (`LoggingPolicy`, *optional*): `value_positions` is the expected r* under this policy
            (what a reward ensemble's value head estimates from the logs); the uniform policy over unseen items
            when `None`.

    Example:

    ```python
    >>> interactions, truth = simulate_logs(world, events_per_user=20, seed=0)
    >>> # write, prepare, pretrain as usual, then post-train against the truth:
    >>> posttrain(data_dir, model_dir, "runs/ppo-true", method="ppo",
    ...           reward_model=WorldRewardModel(world, truth, ItemVocabulary.from_pretrained(data_dir)))
    ```
    """

    num_members = 1

    def __init__(
        self, world: World, truth: SimulationTruth, vocabulary: ItemVocabulary, logging_policy: LoggingPolicy | None = None
    ):
        if truth.timestamps is None:
            raise ValueError("truth.timestamps is None; pass the SimulationTruth that simulate_logs returned with the log.")
        self.world, self.truth, self.logging_policy = world, truth, logging_policy
        raw_ids = np.asarray([int(raw) for raw in vocabulary.raw_ids], dtype=np.int64)
        if raw_ids.min(initial=1) < 1 or raw_ids.max(initial=1) > world.num_items:
            raise ValueError(f"vocabulary item ids must be world indices + 1 in [1, {world.num_items}]; pass the "
                             "vocabulary of a log simulated in this world.")
        self._world_item = np.concatenate([[-1], raw_ids - 1])  # vocabulary index -> world index (-1: padding)
        flat_times = truth.timestamps.reshape(-1)
        self._order = np.argsort(flat_times, kind="stable")
        self._sorted_times = flat_times[self._order]

    @property
    def reward_min(self) -> float:
        return 1.0

    @property
    def reward_max(self) -> float:
        return 5.0

    def to(self, device) -> WorldRewardModel:  # noqa: ARG002 - r* is computed with numpy; results follow the inputs
        return self

    def eval(self) -> WorldRewardModel:
        return self

    # ------------------------------------------------------------------------------------------ states
    def _locate(self, times: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(user, step) of events given by their timestamps and world items `(M,)` each."""
        start = np.searchsorted(self._sorted_times, times, side="left")
        users, steps = np.full(len(times), -1), np.full(len(times), -1)
        width = self.truth.items.shape[1]
        for offset in range(4):  # equal timestamps of different users are rare: look at a few neighbours
            index = np.minimum(start + offset, len(self._order) - 1)
            flat = self._order[index]
            user, step = flat // width, flat % width
            match = (users < 0) & (self._sorted_times[index] == times) & (self.truth.items[user, step] == items)
            users[match], steps[match] = user[match], step[match]
        if (users < 0).any():
            raise ValueError(
                "a history's last event is not an event of this simulation (timestamp and item not found); pass the "
                "histories of the log simulated with this truth, timestamps included."
            )
        return users, steps

    def _rewards_at(self, history: History, positions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """r* over the catalogue `(M, V)` after the events at `positions` `(M, 2)` (row, position) of `history`,
        and the seen mask `(M, V)` of those states."""
        if history.timestamps is None:
            raise ValueError("WorldRewardModel needs the histories' timestamps (they identify the user); the batch "
                             "has none.")
        rows, columns = positions[:, 0].cpu().numpy(), positions[:, 1].cpu().numpy()
        times = history.timestamps.cpu().numpy()[rows, columns]
        items = self._world_item[history.item_ids.cpu().numpy()[rows, columns]]
        users, steps = self._locate(times, items)
        consumed = self.truth.items[users]  # (M, T) every item each user consumed, oldest first
        prefix = np.where(np.arange(consumed.shape[1])[None, :] <= steps[:, None], consumed, -1)
        state_steps, memory, seen, last = self.world.history_state(prefix)
        return self.world.reward_from_state(users, state_steps, memory, seen, last), seen

    def _last_positions(self, history: History) -> torch.Tensor:
        lengths = history.attention_mask.long().sum(dim=1)
        if (lengths == 0).any():
            raise ValueError("every history needs at least one event for WorldRewardModel to know its user.")
        return torch.stack([torch.arange(len(lengths)), lengths.cpu() - 1], dim=1)

    # ---------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict_candidates(self, item_ids: torch.Tensor | History, attention_mask: torch.Tensor | None = None,
                           timestamps: torch.Tensor | None = None, query_timestamps: torch.Tensor | None = None,
                           candidate_item_ids: torch.Tensor | None = None) -> RewardPrediction:
        """r* of `candidate_item_ids` `(B, C)` (vocabulary indices) after each history -> `(B, C)` mean, std 0."""
        history = History.from_arguments(item_ids, attention_mask, timestamps, query_timestamps)
        rewards, _ = self._rewards_at(history, self._last_positions(history))
        candidates = self._world_item[candidate_item_ids.cpu().numpy()]
        values = np.take_along_axis(rewards, np.maximum(candidates, 0), axis=1)
        return self._prediction(values, candidate_item_ids.device)

    @torch.no_grad()
    def predict_positions(self, item_ids: torch.Tensor | History, attention_mask: torch.Tensor | None = None,
                          timestamps: torch.Tensor | None = None, query_timestamps: torch.Tensor | None = None,
                          labels: torch.Tensor | None = None) -> RewardPrediction:
        """r* of the labelled next item at every position `(B, N)`, 0 where `labels` is 0."""
        history = History.from_arguments(item_ids, attention_mask, timestamps, query_timestamps)
        positions = torch.nonzero(labels.cpu() != PAD_INDEX)
        values = np.zeros(tuple(labels.shape))
        if len(positions):
            rewards, _ = self._rewards_at(history, positions)
            targets = self._world_item[labels.cpu().numpy()[positions[:, 0], positions[:, 1]]]
            values[positions[:, 0].numpy(), positions[:, 1].numpy()] = rewards[np.arange(len(positions)), targets]
        return self._prediction(values, labels.device)

    @torch.no_grad()
    def value_positions(self, item_ids: torch.Tensor | History, attention_mask: torch.Tensor | None = None,
                        timestamps: torch.Tensor | None = None,
                        query_timestamps: torch.Tensor | None = None) -> torch.Tensor:
        """`(B, N)` expected r* of the next item at every real position under the logging policy (0 on padding)."""
        history = History.from_arguments(item_ids, attention_mask, timestamps, query_timestamps)
        positions = torch.nonzero(history.attention_mask.cpu() != 0)
        values = np.zeros(tuple(history.item_ids.shape))
        if len(positions):
            rewards, seen = self._rewards_at(history, positions)
            if self.logging_policy is None:
                probabilities = ~seen / np.maximum((~seen).sum(axis=1, keepdims=True), 1)
            else:
                probabilities = self.logging_policy.probabilities(self.world, rewards, seen)
            values[positions[:, 0].numpy(), positions[:, 1].numpy()] = (probabilities * rewards).sum(axis=1)
        return torch.from_numpy(values).float().to(history.item_ids.device)

    @staticmethod
    def _prediction(values: np.ndarray, device: torch.device) -> RewardPrediction:
        members = torch.from_numpy(values).float().to(device)[None]  # (1, B, C)
        return RewardPrediction.from_members(members)
