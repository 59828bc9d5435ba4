"""`hf-genrec benchmark` prepares the real Amazon Musical Instruments 5-core ratings under both protocols.

Reads `$HF_GENREC_DATA/amazon-musical-instruments-5core/ratings.csv` (see tests/conftest.py; skipped when absent).
The data go through the command (flags -> `BenchmarkSpec`) and the benchmark's own `prepare` stage, and every count
and target is checked against a direct pandas computation from the CSV. Timestamps have day resolution, so many
events share the cutoff's day: they must all land in the test window (the cutoff is strict).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hf_genrec.commands.benchmark as benchmark_command
from hf_genrec.benchmark.pipeline import prepare_data, split_counts
from hf_genrec.benchmark.stages import StageStore
from hf_genrec.data.columns import (
    ITEM_IDS,
    TARGET_ITEM_ID,
    TARGET_TIMESTAMP,
    TIMESTAMPS,
    USER_ID,
    WINDOW_POSITION,
    WINDOW_REWARD,
)
from hf_genrec.data.prepared import load_prepared

# The documented Amazon settings of the `future` protocol (docs/benchmark.md).
AMAZON_FUTURE = {"cutoff_quantile": 0.7, "horizon": 3, "min_history": 3, "validation_fraction": 0.3}


@pytest.fixture(scope="module")
def amazon_csv(data_root) -> Path:
    path = data_root / "amazon-musical-instruments-5core" / "ratings.csv"
    if not path.is_file():
        pytest.skip(f"{data_root} has no amazon-musical-instruments-5core/ratings.csv")
    return path


@pytest.fixture(scope="module")
def events(amazon_csv) -> pd.DataFrame:
    """The CSV read directly, each user's events in time order, ties in file order (as the README asks)."""
    frame = pd.read_csv(amazon_csv, skipinitialspace=True, dtype={"asin": str, "reviewerID": str})
    frame["order"] = np.arange(len(frame))
    return frame.sort_values(["reviewerID", "unixReviewTime", "order"]).reset_index(drop=True)


def _prepared(tmp_path_factory, amazon_csv, protocol: str, **flags):
    """The splits the benchmark's prepare stage writes for `hf-genrec benchmark --input CSV --format csv --header
    --protocol PROTOCOL` with `flags`: (splits, vocabulary, the prepared data directory)."""
    specs = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmark_command, "run_benchmark", lambda output, spec, show_progress=True: specs.append(spec))
        benchmark_command.benchmark(tmp_path_factory.mktemp(protocol), input_path=amazon_csv, format="csv",
                                    header=True, preset="quick", protocol=protocol, **flags)
    (spec,) = specs
    store = StageStore(tmp_path_factory.mktemp(f"{protocol}-store"))
    future = spec.preset.future if protocol == "future" else None
    stage = store.run(prepare_data, ratings=spec.ratings, split=protocol, future=future, **spec.loader)
    splits, vocabulary = load_prepared(stage.output, protocol)
    return splits, vocabulary, stage.output


@pytest.fixture(scope="module")
def future_data(tmp_path_factory, amazon_csv):
    splits, vocabulary, data_dir = _prepared(tmp_path_factory, amazon_csv, "future", **AMAZON_FUTURE)
    # The split options the prepare stage fixed for every later stage (cutoff and validation start, Unix seconds).
    options = json.loads((data_dir / "prepare.json").read_text())["split_options"]["future"]
    return splits, vocabulary, options


def _expected_future(events: pd.DataFrame) -> tuple[int, int, pd.DataFrame]:
    """(cutoff, validation_start, per-user counts) computed from the CSV: the cutoff is the 0.7 quantile of all event
    times (a real event time), the validation window holds the last 30% of the events before it."""
    times = events["unixReviewTime"].to_numpy()
    cutoff = int(np.quantile(times, AMAZON_FUTURE["cutoff_quantile"], method="higher"))
    validation_start = int(np.quantile(times[times < cutoff], 1 - AMAZON_FUTURE["validation_fraction"],
                                       method="higher"))
    per_user = events.assign(before_validation=times < validation_start, before_cutoff=times < cutoff,
                             after=times >= cutoff).groupby("reviewerID")[["before_validation", "before_cutoff",
                                                                            "after"]].sum()
    return cutoff, validation_start, per_user


@pytest.mark.integration
def test_future_counts_match_the_csv(future_data, events):
    splits, _, options = future_data
    cutoff, validation_start, per_user = _expected_future(events)
    assert (options["cutoff"], options["validation_start"]) == (cutoff, validation_start)
    horizon, min_history = AMAZON_FUTURE["horizon"], AMAZON_FUTURE["min_history"]
    train = per_user[per_user.before_validation >= 2]
    validation = per_user[(per_user.before_validation >= min_history)
                          & (per_user.before_cutoff - per_user.before_validation >= horizon)]
    test = per_user[(per_user.before_cutoff >= min_history) & (per_user.after >= horizon)]
    assert split_counts(splits) == {
        "train": {"users": len(train), "events": int(train.before_validation.sum())},
        "validation": {"users": len(validation), "events": horizon * len(validation)},
        "test": {"users": len(test), "events": horizon * len(test)},
    }
    assert len(test) >= 100 and len(validation) >= 50  # enough users for intervals and for selection


@pytest.mark.integration
def test_future_no_event_at_or_after_the_cutoff_before_the_test(future_data, events):
    splits, _, options = future_data
    cutoff = options["cutoff"]
    # Day resolution: several events share the cutoff's day; all of them belong to the test window.
    assert (events["unixReviewTime"] == cutoff).sum() > 1
    assert max(max(times) for times in splits["train"][TIMESTAMPS]) < options["validation_start"] <= cutoff
    validation = splits["validation"]
    assert max(validation[TARGET_TIMESTAMP]) < cutoff
    assert max(max(times) for times in validation[TIMESTAMPS]) < cutoff
    assert min(splits["test"][TARGET_TIMESTAMP]) >= cutoff


@pytest.mark.integration
def test_future_test_users_have_exactly_h_targets_their_first_after_the_cutoff(future_data, events):
    splits, vocabulary, options = future_data
    horizon, test = AMAZON_FUTURE["horizon"], splits["test"].to_pandas()
    assert (test.groupby(USER_ID).size() == horizon).all()
    after = events[events["unixReviewTime"] >= options["cutoff"]].groupby("reviewerID").head(horizon)
    expected = after.groupby("reviewerID").agg(items=("asin", list), reward=("overall", "sum"))
    test = test.sort_values([USER_ID, WINDOW_POSITION])
    found = test.groupby(USER_ID).agg(items=(TARGET_ITEM_ID, list), reward=(WINDOW_REWARD, "first"),
                                      history=(ITEM_IDS, "first"))
    assert len(found) == len(set(test[USER_ID]))
    for user, row in found.iterrows():
        assert vocabulary.decode(row["items"]) == expected.loc[user, "items"], user
        assert row["reward"] == pytest.approx(expected.loc[user, "reward"])
        before = events[(events.reviewerID == user) & (events.unixReviewTime < options["cutoff"])]
        assert vocabulary.decode(row["history"].tolist()) == before["asin"].tolist()


@pytest.fixture(scope="module")
def loo_data(tmp_path_factory, amazon_csv):
    splits, vocabulary, _ = _prepared(tmp_path_factory, amazon_csv, "leave-one-out")
    return splits, vocabulary


@pytest.mark.integration
def test_leave_one_out_counts_and_targets_match_the_csv(loo_data, events):
    splits, vocabulary = loo_data
    users = events["reviewerID"].nunique()
    assert split_counts(splits) == {"train": {"users": users, "events": len(events) - 2 * users},
                                    "validation": {"users": users, "events": users},
                                    "test": {"users": users, "events": users}}
    last = events.groupby("reviewerID").tail(1).set_index("reviewerID")["asin"]
    second = events.groupby("reviewerID").nth(-2).set_index("reviewerID")["asin"]
    for split, expected in (("test", last), ("validation", second)):
        frame = splits[split].to_pandas().set_index(USER_ID)
        assert vocabulary.decode(frame[TARGET_ITEM_ID].tolist()) == expected.loc[frame.index].tolist()
    # Training sequences stop before the validation target: neither held-out event is trained on.
    train = splits["train"].to_pandas().set_index(USER_ID)
    lengths = events.groupby("reviewerID").size()
    assert (train[ITEM_IDS].map(len) == lengths.loc[train.index] - 2).all()
