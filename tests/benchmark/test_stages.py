"""Resumable stages: keys from the inputs a stage is given, a finished stage is reused, an interrupted one rerun."""

import json

import pytest

from hf_genrec.benchmark.stages import (
    MARKER,
    Given,
    StageStore,
    file_fingerprint,
    model_fingerprint,
    stage,
    stage_key,
    stage_seconds,
)


def test_stage_key_depends_on_inputs_only():
    assert stage_key({"a": 1, "b": [1, 2]}) == stage_key({"b": (1, 2), "a": 1})
    assert stage_key({"a": 1}) != stage_key({"a": 2})
    assert len(stage_key({})) == 12


def _counting_stage(calls):
    @stage("train", output="model")
    def train(output, *, lr, show_progress=False):
        calls.append(output)
        output.mkdir()
        (output / "out.txt").write_text(str(lr))
        return {"value": len(calls)}

    return train


def test_finished_stage_is_reused_and_changed_input_recomputed(tmp_path):
    calls = []
    train = _counting_stage(calls)
    store = StageStore(tmp_path)
    first = store.run(train, lr=1)
    assert first.done and first.result == {"value": 1} and (first.output / "out.txt").read_text() == "1"
    assert first.output == first.path / "model" and first.path.name == f"train-{first.key}"
    again = StageStore(tmp_path).run(train, lr=1, show_progress=True)  # an unkeyed-looking input is still keyed
    assert len(calls) == 2 and again.key != first.key
    same = StageStore(tmp_path).run(train, lr=1)
    assert len(calls) == 2 and same.path == first.path and same.result == {"value": 1}
    changed = store.run(train, lr=2)
    assert len(calls) == 3 and changed.path != first.path
    assert [h["cached"] for h in store.history] == [False, False]
    record = json.loads((first.path / MARKER).read_text())
    assert record["inputs"] == {"lr": 1} and record["finished"] >= record["started"]


def test_stage_seconds_count_a_stage_looked_up_again_once(tmp_path):
    train = _counting_stage([])
    store = StageStore(tmp_path)
    first = store.run(train, lr=1)
    store.run(train, lr=2)
    store.run(train, lr=1)  # looked up again, e.g. a chosen trial's tuning run: a second entry with the same key
    assert [entry["key"] for entry in store.history] == [first.key, store.history[1]["key"], first.key]
    # With the entries' recorded times replaced by known ones: the repeated key counts once, a missing time as 0.
    history = [{**entry, "seconds": seconds} for entry, seconds in zip(store.history, (1.5, 2.0, 1.5))]
    assert stage_seconds(history) == 3.5
    assert stage_seconds(history + [{"key": "other", "seconds": None}]) == 3.5


def test_unkeyed_inputs_are_passed_but_not_hashed(tmp_path):
    seen = []

    @stage("evaluate", unkeyed=("show_progress",))
    def evaluate(output, *, model, show_progress):
        seen.append(show_progress)
        return {}

    store = StageStore(tmp_path)
    first = store.run(evaluate, model="m", show_progress=True)
    second = store.run(evaluate, model="m", show_progress=False)
    assert seen == [True] and first.key == second.key and first.inputs == {"model": "m"}


def test_upstream_stages_and_given_files_key_downstream_stages(tmp_path):
    @stage("prepare", output="data")
    def prepare(output, *, ratings, scale):
        assert ratings == given_file.path  # a given file reaches the stage as its path
        output.mkdir()
        (output / "rows.txt").write_text(ratings.read_text() * scale)
        return {}

    @stage("count")
    def count(output, *, data):
        assert data.name == "data"  # an upstream stage reaches the stage as its output path
        return {"length": len((data / "rows.txt").read_text())}

    ratings = tmp_path / "ratings.txt"
    ratings.write_text("ab")
    given_file = Given.file(ratings)
    store = StageStore(tmp_path / "run")
    data = store.run(prepare, ratings=given_file, scale=2)
    first = store.run(count, data=data)
    assert first.result == {"length": 4} and first.inputs == {"data": f"prepare-{data.key}"}

    # New content in the same file: a new prepare key, hence a new key for the stage downstream of it.
    ratings.write_text("abc")
    given_file = Given.file(ratings)
    second = store.run(count, data=store.run(prepare, ratings=given_file, scale=2))
    assert second.key != first.key and second.result == {"length": 6}
    assert [h["cached"] for h in store.history] == [False, False, False, False]


def test_interrupted_stage_is_wiped_and_rerun(tmp_path):
    @stage("train")
    def fail(output, *, lr):
        raise RuntimeError("boom")

    @stage("train")
    def succeed(output, *, lr):
        return {"ok": True}

    store = StageStore(tmp_path)
    planned = store.stage(fail, lr=1)
    planned.path.mkdir(parents=True)
    (planned.path / "half-written.bin").write_text("?")  # no marker: a crash mid-stage
    with pytest.raises(RuntimeError):
        store.run(fail, lr=1)
    assert not planned.done  # a failed stage leaves no marker
    store.run(succeed, lr=1)
    assert planned.done and not (planned.path / "half-written.bin").exists()


def test_file_and_model_fingerprints(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    before = file_fingerprint(tmp_path / "a.txt")
    (tmp_path / "a.txt").write_text("two")
    assert file_fingerprint(tmp_path / "a.txt") != before
    with pytest.raises(FileNotFoundError):
        file_fingerprint(tmp_path / "missing")

    model = tmp_path / "model"
    (model / "checkpoints").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "checkpoints" / "trainer_state.json").write_text("{}")
    before = model_fingerprint(model)
    (model / "checkpoints" / "trainer_state.json").write_text('{"step": 2}')  # checkpoints do not count
    assert model_fingerprint(model) == before
    (model / "config.json").write_text('{"hidden_size": 8}')
    assert model_fingerprint(model) != before and Given.model(model).fingerprint == model_fingerprint(model)
    with pytest.raises(FileNotFoundError):
        model_fingerprint(tmp_path / "a.txt")
