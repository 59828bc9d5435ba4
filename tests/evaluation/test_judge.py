"""The reward-model-as-judge rollout on a hand-checkable case: a fake policy and a fake 2-member judge."""

import pytest
import torch

from hf_genrec.data import History, SequenceCollator
from hf_genrec.evaluation.judge import (
    JudgeScores,
    judge_score,
    last_window,
    rollout_batch,
    trajectory_positions,
)
from hf_genrec.rewards import RewardPrediction

NUM_ITEMS = 5


class IndexPolicy(torch.nn.Module):
    """Scores item i with i: the top-1 is always the highest unseen index. Records what it was shown."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def score_next_items(self, item_ids, attention_mask=None, timestamps=None, query_timestamps=None):
        self.inputs.append((item_ids.clone(), query_timestamps.clone()))
        return torch.arange(NUM_ITEMS + 1, dtype=torch.float).expand(item_ids.shape[0], -1).clone()


class ItemJudge:
    """Member k rewards item y with y + k (k = 0, 1): mean y + 0.5. Records the sequences it scored."""

    num_members = 2

    def __init__(self):
        self.inputs = []

    def predict_positions(self, item_ids, attention_mask, timestamps, query_timestamps, labels):
        self.inputs.append((item_ids.clone(), timestamps.clone(), query_timestamps.clone(), labels.clone()))
        y = labels.double()
        return RewardPrediction.from_members(torch.stack([y, y + 1.0]) * (labels > 0))


def rows():
    def row(items, times, target_time):
        return {"item_ids": items, "ratings": [3.0] * len(items), "timestamps": times, "target_item_id": 3,
                "target_rating": 5.0, "target_timestamp": target_time}

    return [row([1, 5], [100, 200], 300), row([2], [50], 90)]


def test_rollout_by_hand():
    policy, judge = IndexPolicy(), ItemJudge()
    batch = SequenceCollator(max_seq_len=10)(rows())
    scores = rollout_batch(policy, judge, batch, horizon=3, gamma=0.5, time_gap=60)

    # User 0 has seen 1 and 5: it is recommended 4, 3, 2; user 1 (seen 2): 5, 4, 3.
    assert scores.items.tolist() == [[4, 3, 2], [5, 4, 3]]
    # Member 0: 4 + 0.5*3 + 0.25*2 = 6.0; member 1: 5 + 0.5*4 + 0.25*3 = 7.75; mean 6.875.
    # User 1: member 0: 5 + 2 + 0.75 = 7.75; member 1: 6 + 2.5 + 1 = 9.5; mean 8.625.
    assert scores.member_scores.tolist() == [[6.0, 7.75], [7.75, 9.5]]
    assert scores.scores.tolist() == [6.875, 8.625]
    assert scores.rewards[0].tolist() == [4.5, 3.5, 2.5]
    assert scores.steps.tolist() == [3, 3]
    assert scores.mean() == pytest.approx(7.75)
    # Member means over users: 6.875 and 8.625 -> population std 0.875.
    assert scores.spread() == pytest.approx(0.875)
    assert scores.spread(torch.tensor([True, False])) == pytest.approx(0.875)

    # The judge scores the whole trajectory in one pass: the recommended items are appended with the time
    # of the request that recommended them (the first at the target's time, the next ones 60 s apart), and
    # each is the label of the position before it.
    assert len(judge.inputs) == 1
    items, times, queries, labels = judge.inputs[0]
    assert items[0].tolist() == [1, 5, 4, 3] and labels[0].tolist() == [5, 4, 3, 2]
    assert times[0].tolist() == [100, 200, 300, 360]
    assert queries[0].tolist() == [200, 300, 360, 420]
    assert items[1].tolist() == [2, 5, 4, 0] and labels[1].tolist() == [5, 4, 3, 0]
    assert queries[1].tolist() == [90, 150, 210, 0]
    # The policy was asked at the target's time, then 60 s later with the first recommendation appended.
    assert policy.inputs[1][0][0].tolist() == [1, 5, 4] and policy.inputs[1][1][0].tolist() == [200, 300, 360]


def test_windows_and_exhausted_catalogue():
    policy, judge = IndexPolicy(), ItemJudge()
    full = [{"item_ids": [1, 2, 3, 4], "ratings": [1.0] * 4, "timestamps": [1, 2, 3, 4], "target_item_id": 5,
             "target_rating": 5.0, "target_timestamp": 10}]
    batch = SequenceCollator(max_seq_len=10)(full)
    scores = rollout_batch(policy, judge, batch, horizon=3, gamma=0.9, policy_max_len=2, judge_max_len=3)
    # Only item 5 is left: one step, then nothing more to recommend (the rest adds 0).
    assert scores.items.tolist() == [[5, 0, 0]]
    assert scores.steps.tolist() == [1]
    assert scores.member_scores[:, 0].tolist() == [5.0, 6.0]
    # Each model reads only its most recent events.
    assert policy.inputs[1][0].tolist() == [[4, 5]]
    assert judge.inputs[0][0].tolist() == [[2, 3, 4]] and judge.inputs[0][3].tolist() == [[3, 4, 5]]


def test_one_judge_pass_equals_scoring_each_step_from_its_own_history():
    """By causality, the trajectory pass gives each step's reward from exactly the history before it."""
    from hf_genrec import HSTUConfig, HSTUForRewardModeling
    from hf_genrec.rewards import RewardEnsemble

    config = dict(num_items=NUM_ITEMS, hidden_size=8, num_hidden_layers=1, attention_dim=8, linear_dim=8,
                  max_seq_len=10, max_position_embeddings=12, input_dropout=0.0, linear_dropout=0.0)
    torch.manual_seed(0)
    ensemble = RewardEnsemble([HSTUForRewardModeling(HSTUConfig(**config)) for _ in range(2)])
    batch = SequenceCollator(max_seq_len=10)(rows())
    scores = rollout_batch(IndexPolicy(), ensemble, batch, horizon=3, gamma=0.5)
    for user, row in enumerate(rows()):
        items, times, query = list(row["item_ids"]), list(row["timestamps"]), row["target_timestamp"]
        for step, item in enumerate(scores.items[user].tolist()):
            history = torch.tensor([items])
            query_times = torch.tensor([times[1:] + [query]])
            expected = ensemble.predict_candidates(history, torch.ones_like(history), torch.tensor([times]),
                                                   query_times, torch.tensor([[item]])).members[:, 0, 0]
            reward = scores.rewards[user, step].item()
            assert reward == pytest.approx(expected.double().mean().item(), abs=1e-5)
            items, times, query = items + [item], times + [query], query + 60


def test_evaluate_policy_ranks_like_predict_ranks(tmp_path):
    from hf_genrec import HSTUConfig, HSTUForNextItemPrediction, HSTUForRewardModeling
    from hf_genrec.benchmark.evaluation import evaluate_policy
    from hf_genrec.evaluation import predict_ranks
    from hf_genrec.rewards import RewardEnsemble

    config = dict(num_items=30, hidden_size=8, num_hidden_layers=1, attention_dim=8, linear_dim=8, max_seq_len=6,
                  max_position_embeddings=8, input_dropout=0.0, linear_dropout=0.0)
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(**config))
    model.save_pretrained(tmp_path)
    judge = RewardEnsemble([HSTUForRewardModeling(HSTUConfig(**{**config, "max_seq_len": 9,
                                                                  "max_position_embeddings": 11}))])
    generator = torch.Generator().manual_seed(1)
    dataset = []
    for length in (3, 12, 5, 8, 2, 7):
        items = (torch.randperm(29, generator=generator)[: length + 1] + 1).tolist()
        dataset.append({"item_ids": items[:-1], "ratings": [float(i % 5 + 1) for i in items[:-1]],
                        "timestamps": list(range(10, 10 * length + 1, 10)), "target_item_id": items[-1],
                        "target_rating": 4.0, "target_timestamp": 10 * length + 30})
    evaluation = evaluate_policy(tmp_path, judge, dataset, batch_size=4, show_progress=False)
    expected = predict_ranks(model, dataset, SequenceCollator(max_seq_len=6), batch_size=4)
    assert torch.equal(evaluation.ranking.ranks, expected.ranks)
    assert torch.equal(evaluation.ranking.history_rewards, expected.history_rewards)
    alone = judge_score(model, judge, dataset, SequenceCollator(max_seq_len=9), batch_size=3)
    assert torch.allclose(evaluation.judge.scores, alone.scores) and torch.equal(evaluation.judge.items, alone.items)


def test_last_window_query_times():
    items = torch.tensor([[7, 8, 9, 0], [4, 0, 0, 0]])
    times = torch.tensor([[10, 20, 30, 0], [5, 0, 0, 0]])
    window = last_window(items, times, torch.tensor([3, 1]), torch.tensor([40, 6]), max_len=2)
    assert window["item_ids"].tolist() == [[8, 9], [4, 0]]
    assert window["query_timestamps"].tolist() == [[30, 40], [6, 0]]
    assert window["attention_mask"].tolist() == [[1, 1], [1, 0]]
    # The same windows as a `History`, the form the policy is called with.
    assert History(**window).timestamps.tolist() == [[20, 30], [5, 0]]


def _padded(rows: list[list[int]], width: int) -> list[list[int]]:
    return [row + [0] * (width - len(row)) for row in rows]


def _windows_row_by_row(items, times, lengths, query_time, max_len):
    """The judge's windows built one row at a time in plain Python (the rule before `query_timestamps`):
    the last `max_len` events; each asks about the next event's time, the last one about `query_time`."""
    rows = {name: [] for name in ("item_ids", "timestamps", "query_timestamps")}
    for row_items, row_times, length, query in zip(items.tolist(), times.tolist(), lengths.tolist(), query_time.tolist()):
        start = max(length - max_len, 0)
        rows["item_ids"].append(row_items[start:length])
        rows["timestamps"].append(row_times[start:length])
        rows["query_timestamps"].append(row_times[start + 1 : length] + [query] if length else [])
    return rows


def _positions_row_by_row(items, times, lengths, max_len):
    """Training-style rows in plain Python: inputs are the last `max_len` events that have a successor,
    each labelled with (and asking about the time of) the event after it."""
    rows = {name: [] for name in ("item_ids", "timestamps", "query_timestamps", "labels")}
    for row_items, row_times, length in zip(items.tolist(), times.tolist(), lengths.tolist()):
        start = max(length - 1 - max_len, 0)
        rows["item_ids"].append(row_items[start : max(length - 1, 0)])
        rows["timestamps"].append(row_times[start : max(length - 1, 0)])
        rows["query_timestamps"].append(row_times[start + 1 : length])
        rows["labels"].append(row_items[start + 1 : length])
    return rows


def _check_against_rows(inputs: dict, expected: dict) -> None:
    width = inputs["item_ids"].shape[1]
    for name, rows in expected.items():
        assert inputs[name].tolist() == _padded(rows, width), name
    assert inputs["attention_mask"].tolist() == _padded([[1] * len(row) for row in expected["item_ids"]], width)


def test_judge_windows_equal_the_row_by_row_rule():
    """`last_window` and `trajectory_positions` (built on `query_timestamps`) give the rows of the old rule."""
    items = torch.tensor([[7, 8, 9, 6, 0], [4, 0, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    times = torch.tensor([[10, 20, 30, 45, 0], [5, 0, 0, 0, 0], [1, 2, 3, 4, 5], [0, 0, 0, 0, 0]])
    lengths, query_time = torch.tensor([4, 1, 5, 0]), torch.tensor([50, 6, 9, 7])
    for max_len in (1, 2, 3, 4, 5, 8):
        window = last_window(items, times, lengths, query_time, max_len)
        _check_against_rows(window, _windows_row_by_row(items, times, lengths, query_time, max_len))
        positions = trajectory_positions(items, times, lengths, max_len)
        _check_against_rows(positions, _positions_row_by_row(items, times, lengths, max_len))
    # One case by hand: the last 2 events of row 0 with a successor are 8 and 9, labelled 9 and 6.
    positions = trajectory_positions(items[:1], times[:1], lengths[:1], max_len=2)
    assert positions["item_ids"].tolist() == [[8, 9]] and positions["labels"].tolist() == [[9, 6]]
    assert positions["query_timestamps"].tolist() == [[30, 45]]

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        lengths = torch.randint(0, 7, (5,), generator=generator)
        real = torch.arange(6)[None, :] < lengths[:, None]
        items = torch.randint(1, 30, (5, 6), generator=generator) * real
        times = torch.randint(1, 100, (5, 6), generator=generator).cumsum(dim=1) * real
        query_time = times.max(dim=1).values + 7
        max_len = int(torch.randint(1, 8, (1,), generator=generator))
        _check_against_rows(last_window(items, times, lengths, query_time, max_len),
                            _windows_row_by_row(items, times, lengths, query_time, max_len))
        _check_against_rows(trajectory_positions(items, times, lengths, max_len),
                            _positions_row_by_row(items, times, lengths, max_len))


def test_judge_score_over_a_dataset_is_batched_in_order():
    policy, judge = IndexPolicy(), ItemJudge()
    whole = judge_score(policy, judge, rows(), SequenceCollator(max_seq_len=10), batch_size=2, gamma=0.5)
    one_by_one = judge_score(policy, judge, rows(), SequenceCollator(max_seq_len=10), batch_size=1, gamma=0.5)
    assert whole.scores.tolist() == one_by_one.scores.tolist() == [6.875, 8.625]
    assert JudgeScores.concat([whole, whole]).member_scores.shape == (2, 4)
    with pytest.raises(ValueError, match="horizon"):
        rollout_batch(policy, judge, SequenceCollator()(rows()), horizon=0)
