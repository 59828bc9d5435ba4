"""No event at or after the `future` cutoff reaches a training or validation stage of `hf-genrec benchmark`.

Poisoning: every event at or after the cutoff gets an item of its own, which appears nowhere else in the data.
The benchmark runs on that file through its own stages, and every dataset any trainer (pretraining, the reward
ensemble, the judge, every post-training method) receives for training or validation is recorded: none may hold a
poisoned item, while the evaluation's test targets do, H per test user.
"""

import json

import numpy as np
import pytest
from test_benchmark_command import TEST_PRESET  # tests/benchmark is on sys.path (rootdir-relative imports)

from hf_genrec.benchmark.presets import DEFAULT_METHODS
from hf_genrec.commands.benchmark import benchmark
from hf_genrec.data import (
    Interactions,
    build_sequences,
    generate_synthetic_interactions,
    write_movielens_file,
)
from hf_genrec.data.prepared import load_prepared
from hf_genrec.data.splits import future_cutoffs
from hf_genrec.data.vocabulary import ItemVocabulary
from hf_genrec.trainers.base import GenRecTrainer


def _poisoned_ratings(path):
    """TEST_PRESET's synthetic data with a unique item on every event at or after the cutoff; (path, cutoff,
    validation_start, poisoned raw ids)."""
    interactions = generate_synthetic_interactions(**TEST_PRESET.synthetic)
    future = TEST_PRESET.future
    validation_start, cutoff = future_cutoffs(build_sequences(interactions)[0],
                                              cutoff_quantile=future["cutoff_quantile"],
                                              validation_fraction=future["validation_fraction"])
    items = interactions.item_ids.astype(np.int64).copy()
    after = interactions.timestamps >= cutoff
    poison = items.max() + 1 + np.arange(int(after.sum()))
    items[after] = poison  # the cutoff depends on the times only, so it stays where it was
    write_movielens_file(Interactions(user_ids=interactions.user_ids, item_ids=items, ratings=interactions.ratings,
                                      timestamps=interactions.timestamps), path)
    return path, cutoff, validation_start, poison


def _items(dataset) -> set[int]:
    """Every item index in the dataset's item columns (lists or scalars)."""
    found: set[int] = set()
    for column in dataset.column_names:
        if "item" not in column:
            continue
        for value in dataset[column]:
            found.update(value if isinstance(value, list) else [value])
    return found


@pytest.fixture(scope="module")
def poisoned_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("poisoned")
    path, cutoff, validation_start, poison = _poisoned_ratings(tmp / "ratings.dat")
    seen = []
    original = GenRecTrainer.__init__

    def recording_init(self, *args, train_dataset=None, eval_dataset=None, **kwargs):
        seen.append((type(self).__name__, kwargs["args"].output_dir if "args" in kwargs else args[1].output_dir,
                     train_dataset, eval_dataset))
        original(self, *args, train_dataset=train_dataset, eval_dataset=eval_dataset, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GenRecTrainer, "__init__", recording_init)
        results = benchmark(tmp / "run", input_path=path, preset=TEST_PRESET, lambdas=(),
                            judge_data="train+validation", show_progress=False)
    return tmp / "run", results, seen, cutoff, validation_start, poison


def test_no_poisoned_item_in_any_training_or_validation_dataset(poisoned_run):
    output, results, seen, cutoff, validation_start, poison = poisoned_run
    (data_dir,) = output.glob("stages/prepare-*/data")
    vocabulary = ItemVocabulary.from_pretrained(data_dir)
    poisoned = set(vocabulary.encode(poison.tolist()))
    # The prepare stage fixed the cutoff the test computed, and every stage reads it from prepare.json.
    options = json.loads((data_dir / "prepare.json").read_text())["split_options"]["future"]
    assert (options["cutoff"], options["validation_start"]) == (cutoff, validation_start)
    assert results["config"]["split_options"]["cutoff"] == cutoff
    trainers = {name for name, *_ in seen}
    assert {"PretrainTrainer", "RewardTrainer"} <= trainers and len(trainers) >= len(DEFAULT_METHODS)
    assert any("judge-" in str(where) for _, where, *_ in seen)  # the judge's members were recorded too
    for name, where, train, evaluation in seen:
        for role, dataset in (("train", train), ("eval", evaluation)):
            datasets = dataset.values() if isinstance(dataset, dict) else [dataset] if dataset is not None else []
            for part in datasets:
                leaked = _items(part) & poisoned
                assert not leaked, f"{name} ({where}) {role} data holds {len(leaked)} post-cutoff events"
                if "timestamps" in part.column_names:
                    assert max(max(t) for t in part["timestamps"] if t) < cutoff


def test_judge_reads_the_validation_window_and_test_reads_the_poison(poisoned_run):
    output, results, seen, cutoff, validation_start, poison = poisoned_run
    judge_train = [train for _, where, train, _ in seen if "judge-" in str(where)]
    assert judge_train and any(validation_start <= t < cutoff for d in judge_train for ts in d["timestamps"]
                               for t in ts)
    (data_dir,) = output.glob("stages/prepare-*/data")
    splits, vocabulary = load_prepared(data_dir, "future")
    poisoned = set(vocabulary.encode(poison.tolist()))
    test = splits["test"]
    horizon = TEST_PRESET.future["horizon"]
    assert set(test["target_item_id"]) <= poisoned and len(test) == horizon * len(set(test["user_id"]))
    assert results["num_targets"]["all"] == len(test) and results["num_users"]["all"] == len(set(test["user_id"]))
