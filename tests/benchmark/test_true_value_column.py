"""The benchmark's true-value column (issue 14 item 6): on the embedded simulated world every evaluated model gets
its true value V* at each test target's world state; on real data (`--input`) nothing about truth appears."""

import dataclasses

import numpy as np
import pytest
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.benchmark.report import TRUE_VALUE
from hf_genrec.benchmark.world_value import draw_world_log, target_contexts
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.data.columns import TARGET_ITEM_ID, TARGET_TIMESTAMP, USER_ID
from hf_genrec.data.prepared import load_prepared
from hf_genrec.models import AutoModelForNextItemPrediction
from hf_genrec.simulation import EvaluationContexts, evaluate_policy, recommender_policy
from hf_genrec.simulation.simulated_log import SimulatedLog

# A mini world near TEST_PRESET's synthetic data: 150 users x 40 events over 60 items, every event observed (the
# future split then has 10 test users, some of them also validation users, which the reward table pairs).
MINI_WORLD = {"world": {"num_users": 150, "num_items": 60, "dim": 4, "seed": 0}, "events_per_user": 40,
              "logging": {"strength": 2.0}, "observation": {"trap_share": 0.1},
              "setting": {"noise_std": 0.6, "num_users": 150, "coverage": 1.0}, "seed": 0}
WORLD_PRESET = dataclasses.replace(TEST_PRESET, world=MINI_WORLD)
METHODS = ["sft", "rwbc", "ppo"]


@pytest.fixture(scope="module")
def world_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("world-bench")
    return output, benchmark(output, preset=WORLD_PRESET, methods=METHODS, seeds=1, show_progress=False)


def _hand_contexts(log: SimulatedLog, test) -> tuple[np.ndarray, EvaluationContexts]:
    """Each test row's world state, found by walking the user's consumed events until the target's timestamp."""
    users, histories = [], []
    for user_id, timestamp in zip(test[USER_ID], test[TARGET_TIMESTAMP]):
        user = int(user_id) - 1
        step = next(t for t, time in enumerate(log.truth.timestamps[user]) if time == timestamp)
        histories.append(list(log.truth.items[user, :step]))
        users.append(user)
    width = max(len(h) for h in histories)
    padded = np.full((len(histories), width), -1)
    for row, history in enumerate(histories):
        padded[row, : len(history)] = history
    return np.asarray(users), EvaluationContexts(users, padded)


def test_true_value_column_equals_a_direct_computation(world_run):
    output, results = world_run
    (data_dir,) = (output / "stages").glob("prepare-*/data")
    splits, vocabulary = load_prepared(data_dir, "future")
    test = splits["test"]
    log = SimulatedLog.draw(MINI_WORLD)  # rebuilt from the inputs, not the pipeline's cached log
    users, contexts = _hand_contexts(log, test)
    assert len(np.unique(users)) >= 3  # enough test users for the per-user average to matter
    for name in METHODS:
        (key,) = [stage["key"] for stage in results["stages"] if stage["stage"] == "posttrain"
                  and stage["label"].startswith(f"{name} [") and "chosen" in stage["label"]]
        model_dir = output / "stages" / f"posttrain-{key}" / "model"
        policy = recommender_policy(AutoModelForNextItemPrediction.from_pretrained(model_dir), vocabulary,
                                    log.world.num_items)
        probabilities = policy(contexts)
        # A user's targets averaged first (evaluate_policy over that user's contexts), then the users.
        per_user = [evaluate_policy(log.world, EvaluationContexts(contexts.users[users == u],
                                                                  contexts.history[users == u]),
                                    probabilities[users == u]).true_value for u in np.unique(users)]
        entry = results["methods"][name]["subsets"]["all"]["metrics"][TRUE_VALUE]
        assert entry["value"] == pytest.approx(np.mean(per_user), rel=1e-9), name
        assert entry["per_seed"] == [pytest.approx(np.mean(per_user), rel=1e-9)]
        assert results["methods"][name][TRUE_VALUE] == entry
    assert results["methods"]["rwbc"]["subsets"]["all"]["metrics"][TRUE_VALUE]["pct_vs_rwbc"] == 0.0
    assert "true V*" in results["markdown"] and "Reference policies' true V*" in results["markdown"]


def test_the_oracle_bounds_every_row(world_run):
    _, results = world_run
    references = results["world"]["reference_policies"]
    assert set(references) == {"oracle", "logging", "uniform"}
    for subset in results["subsets"]:
        oracle = references["oracle"][subset]
        if oracle is None:  # a subset without users
            continue
        values = {name: row["subsets"][subset]["metrics"][TRUE_VALUE]["value"]
                  for name, row in results["methods"].items()}
        assert all(oracle >= value for value in values.values()), (subset, oracle, values)
        assert oracle > references["uniform"][subset]
    assert set(results["methods"]) == {"pretrained", *METHODS}


def test_a_targets_context_excludes_it_and_includes_unobserved_earlier_events():
    # Half of the low ratings go missing: many consumed events are absent from the log, but not from the world.
    spec = {**MINI_WORLD, "observation": {"missingness": 0.9}}
    log = draw_world_log(spec)
    truth = log.truth
    raw_ids = sorted(set(int(item) for item in log.interactions.item_ids))
    index = {raw: i + 1 for i, raw in enumerate(raw_ids)}
    # Test rows: every user's last observed event that has an unobserved event before it.
    rows = {USER_ID: [], TARGET_ITEM_ID: [], TARGET_TIMESTAMP: []}
    expected = []
    for user in range(truth.items.shape[0]):
        observed = np.flatnonzero(truth.observed[user])
        step = int(observed[-1])
        if truth.observed[user, :step].all():
            continue
        rows[USER_ID].append(str(user + 1))
        rows[TARGET_ITEM_ID].append(index[int(truth.items[user, step]) + 1])
        rows[TARGET_TIMESTAMP].append(int(truth.timestamps[user, step]))
        expected.append((user, step))
    assert len(expected) >= 3
    contexts = target_contexts(truth, rows, raw_ids)
    for row, (user, step) in enumerate(expected):
        history = contexts.history[row][contexts.history[row] >= 0]
        assert contexts.users[row] == user
        assert list(history) == list(truth.items[user, :step])  # every earlier consumption, in order
        assert truth.items[user, step] not in history  # not the target
        unobserved = truth.items[user, :step][~truth.observed[user, :step]]
        assert unobserved.size and set(unobserved) <= set(history)
    # A row that is no event of the log is refused, not silently mapped.
    rows[TARGET_TIMESTAMP][0] += 1
    with pytest.raises(ValueError, match="not an event of the simulated log"):
        target_contexts(truth, rows, raw_ids)


def test_real_data_has_no_truth(world_run, tmp_path):
    output, first = world_run
    # The same log given as a file (--input): the benchmark cannot know its truth, so it shows none.
    (ratings,) = (output / "stages").glob("simulate_world-*/ratings.dat")
    results = benchmark(tmp_path, preset=WORLD_PRESET, methods=["rwbc"], input_path=ratings,
                        pretrained=first["config"]["pretrained"], show_progress=False)
    assert "world" not in results
    assert all(TRUE_VALUE not in row and TRUE_VALUE not in row["subsets"][subset]["metrics"]
               for row in results["methods"].values() for subset in results["subsets"])
    assert "true V*" not in results["markdown"] and "simulated world" not in results["markdown"]
    assert not any(stage["label"].startswith("true value") for stage in results["stages"])


def test_the_world_flag_draws_the_embedded_data_in_the_embedded_world(tmp_path, monkeypatch, capsys):
    import hf_genrec.commands.benchmark as benchmark_command
    from hf_genrec.benchmark.presets import EMBEDDED_WORLD
    from hf_genrec.cli import main

    specs = []
    monkeypatch.setattr(benchmark_command, "run_benchmark", lambda output_dir, spec, show_progress=True:
                        specs.append(spec) or {"markdown": ""})
    main(["benchmark", "--preset", "tiny", "--world", "--output", str(tmp_path / "world")])
    main(["benchmark", "--preset", "tiny", "--output", str(tmp_path / "generator")])
    assert specs[0].preset.world == EMBEDDED_WORLD and specs[0].ratings is None
    assert specs[1].preset.world is None  # the default stays the generator's data
    ratings = tmp_path / "ratings.dat"
    ratings.write_text("1::1::5::978300000\n", encoding="utf-8")
    # The CLI reports the ValueError as a usage error (exit status 2).
    assert main(["benchmark", "--world", "--input", str(ratings), "--output", str(tmp_path / "both")]) == 2
    assert "--world draws the embedded data in a simulated world, but --input" in capsys.readouterr().err
    assert len(specs) == 2  # refused before anything ran
