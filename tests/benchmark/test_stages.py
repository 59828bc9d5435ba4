"""Resumable stages: keys from inputs, a finished stage is reused, an interrupted one rerun."""

import json

import pytest

from hf_genrec.benchmark.stages import MARKER, StageStore, file_fingerprint, stage_key


def test_stage_key_depends_on_inputs_only():
    assert stage_key({"a": 1, "b": [1, 2]}) == stage_key({"b": (1, 2), "a": 1})
    assert stage_key({"a": 1}) != stage_key({"a": 2})
    assert len(stage_key({})) == 12


def test_finished_stage_is_reused_and_changed_input_recomputed(tmp_path):
    calls = []

    def work(path):
        calls.append(path)
        (path / "out.txt").write_text("x")
        return {"value": len(calls)}

    store = StageStore(tmp_path)
    first = store.run("train", {"lr": 1}, work)
    assert first.done and first.result == {"value": 1} and (first.path / "out.txt").is_file()
    again = StageStore(tmp_path).run("train", {"lr": 1}, work)
    assert len(calls) == 1 and again.path == first.path and again.result == {"value": 1}
    changed = store.run("train", {"lr": 2}, work)
    assert len(calls) == 2 and changed.path != first.path
    assert [h["cached"] for h in store.history] == [False, False]
    record = json.loads((first.path / MARKER).read_text())
    assert record["inputs"] == {"lr": 1} and record["finished"] >= record["started"]


def test_interrupted_stage_is_wiped_and_rerun(tmp_path):
    store = StageStore(tmp_path)
    stage = store.stage("train", {"lr": 1})
    stage.path.mkdir(parents=True)
    (stage.path / "half-written.bin").write_text("?")  # no marker: a crash mid-stage

    def fail(path):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run("train", {"lr": 1}, fail)
    assert not stage.done  # a failed stage leaves no marker
    store.run("train", {"lr": 1}, lambda path: {"ok": True})
    assert stage.done and not (stage.path / "half-written.bin").exists()


def test_file_fingerprint(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    before = file_fingerprint(tmp_path / "a.txt")
    (tmp_path / "a.txt").write_text("two")
    assert file_fingerprint(tmp_path / "a.txt") != before
    with pytest.raises(FileNotFoundError):
        file_fingerprint(tmp_path / "missing")
