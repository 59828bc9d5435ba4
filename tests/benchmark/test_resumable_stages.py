"""A resumable stage (pretraining, the reward ensemble) continues what an interrupted run left; others start over."""

import pytest

from hf_genrec.benchmark import pipeline
from hf_genrec.benchmark.stages import StageStore, stage


def _resumable(calls, fail_first: bool):
    @stage("train", output="model", resumable=True)
    def train(output, *, lr, resume=False):
        calls.append({"resume": resume, "found": sorted(p.name for p in output.glob("*")) if output.exists() else []})
        output.mkdir(exist_ok=True)
        (output / f"epoch-{len(calls)}").write_text(str(lr))  # a checkpoint per call
        if fail_first and len(calls) == 1:
            raise KeyboardInterrupt  # the session ends mid-stage
        return {"epochs": len(list(output.glob("epoch-*")))}

    return train


def test_interrupted_resumable_stage_continues_from_its_folder(tmp_path):
    calls = []
    train = _resumable(calls, fail_first=True)
    store = StageStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        store.run(train, lr=1)
    planned = store.stage(train, lr=1)
    assert not planned.done and (planned.output / "epoch-1").exists()  # no marker, the checkpoint kept
    finished = store.run(train, lr=1)
    assert calls == [{"resume": False, "found": []}, {"resume": True, "found": ["epoch-1"]}]
    assert finished.done and finished.result == {"epochs": 2}
    store.run(train, lr=1)  # finished: reused, not called again
    assert len(calls) == 2


def test_fresh_resumable_stage_is_not_resumed(tmp_path):
    calls = []
    StageStore(tmp_path).run(_resumable(calls, fail_first=False), lr=2)
    assert calls == [{"resume": False, "found": []}]


@pytest.mark.parametrize("name, workflow", [("pretrain_model", "pretrain"), ("train_reward_model", "reward")])
def test_training_stages_pass_resume_to_their_workflow(tmp_path, monkeypatch, name, workflow):
    seen = []

    def fake_workflow(*args, **kwargs):
        seen.append({k: kwargs[k] for k in ("resume", "overwrite")})
        return {"test": {}, "best_epoch": 1, "total_runtime_s": 0.0, "table": {}, "markdown": "",
                "train_runtime_s": 0.0, "seeds": [0]}

    monkeypatch.setattr(pipeline, workflow, fake_workflow)
    function = getattr(pipeline, name)
    inputs = {"data": tmp_path, "recipe": {"training": {}}}
    if name == "train_reward_model":
        inputs["pretrained"] = tmp_path
    store = StageStore(tmp_path / "run")
    planned = store.stage(function, **inputs)
    planned.path.mkdir(parents=True)  # left by an interrupted run
    store.run(function, **inputs)
    store_fresh = StageStore(tmp_path / "fresh")
    store_fresh.run(function, **inputs)
    assert seen == [{"resume": True, "overwrite": False}, {"resume": False, "overwrite": True}]
