"""Evaluate one saved recommender for the benchmark: full-catalogue ranks and the judge rollout, per user.

The per-user arrays are saved (`predictions.npz`) so that subsets, % changes and bootstrap intervals are
computed afterwards without rerunning any model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import SequenceCollator
from ..data.columns import ATTENTION_MASK, ITEM_IDS, TARGET_TIMESTAMPS, TIMESTAMPS
from ..data.history import History
from ..evaluation import RankingPredictions
from ..evaluation.evaluator import rank_batch
from ..evaluation.judge import JudgeScores, history_lengths, last_window, rollout_batch
from ..models import AutoModelForNextItemPrediction
from ..utils.runtime import warm_cpu_heap

__all__ = ["PREDICTIONS_FILE", "PolicyEvaluation", "evaluate_policy", "load_evaluation"]

PREDICTIONS_FILE = "predictions.npz"


@dataclass
class PolicyEvaluation:
    """Ranks and judge scores of one recommender on one test split, users in dataset order."""

    ranking: RankingPredictions
    judge: JudgeScores

    def save(self, directory: str | os.PathLike) -> str:
        path = Path(directory) / PREDICTIONS_FILE
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            ranks=self.ranking.ranks.numpy(),
            target_ratings=self.ranking.target_ratings.numpy(),
            history_rewards=self.ranking.history_rewards.numpy(),
            window_rewards=self.ranking.window_rewards.numpy(),
            window_positions=self.ranking.window_positions.numpy(),
            judge_scores=self.judge.scores.numpy(),
            judge_member_scores=self.judge.member_scores.numpy(),
            judge_items=self.judge.items.numpy(),
            judge_rewards=self.judge.rewards.numpy(),
            judge_steps=self.judge.steps.numpy(),
        )
        os.replace(tmp, path)
        return str(path)


def load_evaluation(directory: str | os.PathLike) -> PolicyEvaluation:
    """Read what `PolicyEvaluation.save` wrote."""
    with np.load(Path(directory) / PREDICTIONS_FILE) as data:
        arrays = {name: torch.from_numpy(data[name]) for name in data.files}
    # Files written before `long_history` got its name hold the same sums as `trajectory_rewards`, and no windows.
    history_rewards = arrays["history_rewards"] if "history_rewards" in arrays else arrays["trajectory_rewards"]
    ranking = RankingPredictions(ranks=arrays["ranks"], target_ratings=arrays["target_ratings"],
                                 history_rewards=history_rewards, window_rewards=arrays.get("window_rewards"),
                                 window_positions=arrays.get("window_positions"))
    judge = JudgeScores(scores=arrays["judge_scores"], member_scores=arrays["judge_member_scores"],
                        items=arrays["judge_items"], rewards=arrays["judge_rewards"], steps=arrays["judge_steps"])
    return PolicyEvaluation(ranking=ranking, judge=judge)


@torch.no_grad()
def evaluate_policy(
    model_dir: str | os.PathLike,
    judge: Any,
    test_dataset: Any,
    *,
    batch_size: int = 256,
    horizon: int = 3,
    gamma: float = 0.9,
    time_gap: int = 60,
    show_progress: bool = True,
) -> PolicyEvaluation:
    """Rank every test target over the full catalogue (seen items excluded) and judge the policy's rollout.

    One pass over the test users, in batches of similar history length: the policy's scores after the
    real history rank the held-out target (`target_ranks`, as `predict_ranks` does) and are step 0 of the
    judge rollout (`rollout_batch`). The policy reads its own window (`config.max_seq_len`); the batches
    keep the longer of the policy's and the judge's windows. Results are returned in dataset order.
    """
    model = AutoModelForNextItemPrediction.from_pretrained(model_dir).eval()
    policy_len = model.config.max_seq_len
    collator = SequenceCollator(max_seq_len=max(policy_len, judge.config.max_seq_len))
    order = np.argsort(history_lengths(test_dataset), kind="stable")
    loader = DataLoader(test_dataset, batch_size=batch_size, sampler=order.tolist(), collate_fn=collator)
    rankings, judged = [], []
    with warm_cpu_heap():  # the same large temporaries every batch: no mmap / page faults for each (2x faster)
        for batch in tqdm(loader, desc="evaluate", disable=not show_progress):
            lengths = batch[ATTENTION_MASK].sum(dim=1)
            window = last_window(batch[ITEM_IDS], batch[TIMESTAMPS], lengths, batch[TARGET_TIMESTAMPS], policy_len)
            ranking, scores = rank_batch(model, batch, history=History(**window))  # the policy reads its own window
            rankings.append(ranking)
            judged.append(rollout_batch(model, judge, batch, horizon=horizon, gamma=gamma, time_gap=time_gap,
                                        policy_max_len=policy_len, first_scores=scores))
    inverse = torch.from_numpy(np.argsort(order, kind="stable"))
    return PolicyEvaluation(ranking=RankingPredictions.concat(rankings).reorder(inverse),
                            judge=JudgeScores.concat(judged).reorder(inverse))
