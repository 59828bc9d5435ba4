import json

import pytest
import torch

from hf_genrec import AutoModelForNextItemPrediction, HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import (
    ItemVocabulary,
    SequenceCollator,
    build_sequences,
    generate_synthetic_interactions,
    leave_one_out_split,
    read_movielens,
    read_movielens_catalog,
)
from hf_genrec.evaluation import MostPopularRecommender, evaluate_ranking, predict_ranks
from hf_genrec.trainers import PretrainConfig, PretrainTrainer


def tiny_model(num_items: int, **overrides) -> HSTUForNextItemPrediction:
    values = dict(num_items=num_items, hidden_size=32, attention_dim=32, linear_dim=32, max_seq_len=50,
                  max_position_embeddings=61, num_negatives=32, input_dropout=0.1, linear_dropout=0.1)
    values.update(overrides)
    return HSTUForNextItemPrediction(HSTUConfig(**values))


@pytest.fixture(scope="module")
def synthetic_splits():
    interactions = generate_synthetic_interactions(num_users=300, num_items=120, mean_events=40, seed=3)
    sequences, vocabulary = build_sequences(interactions)
    return leave_one_out_split(sequences), vocabulary


def train(tmp_path, splits, vocabulary, epochs=4, seed=0, **args):
    torch.manual_seed(seed)
    model = tiny_model(vocabulary.num_items)
    config = PretrainConfig(output_dir=str(tmp_path / "ckpt"), num_train_epochs=epochs, per_device_train_batch_size=32,
                            seed=seed, disable_tqdm=True, logging_steps=5, **args)
    trainer = PretrainTrainer(model=model, args=config, train_dataset=splits["train"],
                              eval_dataset=splits["validation"], processing_class=vocabulary)
    trainer.train()
    return trainer


def test_pretraining_selects_best_epoch_and_beats_most_popular(tmp_path, synthetic_splits):
    splits, vocabulary = synthetic_splits
    trainer = train(tmp_path, splits, vocabulary, epochs=6)
    history = [e for e in trainer.state.log_history if "eval_ndcg@10" in e]
    assert len(history) == 6
    best = max(e["eval_ndcg@10"] for e in history)
    assert trainer.state.best_metric == pytest.approx(best)
    # The model kept at the end is the validation-best epoch's.
    assert trainer.evaluate()["eval_ndcg@10"] == pytest.approx(best, abs=1e-6)

    collator = SequenceCollator(max_seq_len=50)
    hstu = evaluate_ranking(trainer.model, splits["test"], collator)["all"]
    popular = evaluate_ranking(MostPopularRecommender.from_dataset(splits["train"], vocabulary.num_items),
                               splits["test"], collator)["all"]
    assert hstu["ndcg@10"] > popular["ndcg@10"] * 1.2, (hstu, popular)
    # The trainer scores rows shortest-first; its ranks come back in dataset order, equal to a plain pass.
    lengths = [len(row) for row in splits["test"]["item_ids"]]
    assert lengths != sorted(lengths)
    plain = predict_ranks(trainer.model, splits["test"], collator, batch_size=7)
    sorted_pass = trainer.predict_ranks(splits["test"])
    assert torch.equal(sorted_pass.ranks, plain.ranks)
    assert torch.equal(sorted_pass.target_ratings, plain.target_ratings)
    assert torch.equal(sorted_pass.history_rewards, plain.history_rewards)

    trainer.save_model(str(tmp_path / "final"))
    loaded = AutoModelForNextItemPrediction.from_pretrained(tmp_path / "final")
    assert ItemVocabulary.from_pretrained(tmp_path / "final") == vocabulary
    assert evaluate_ranking(loaded, splits["test"], collator)["all"] == hstu


def test_pretraining_is_deterministic(tmp_path, synthetic_splits):
    splits, vocabulary = synthetic_splits
    first = train(tmp_path / "a", splits, vocabulary, epochs=1).model.state_dict()
    second = train(tmp_path / "b", splits, vocabulary, epochs=1).model.state_dict()
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name


@pytest.mark.integration
def test_pretraining_on_movielens_subset_beats_most_popular(tmp_path, data_root):
    ml1m = data_root / "ml-1m"
    interactions = read_movielens(ml1m / "ratings.dat.gz")
    keep = interactions.user_ids <= 1200  # a real subset: the first 1,200 users, every catalogue movie
    interactions = interactions.select(keep.nonzero()[0])
    vocabulary = ItemVocabulary.from_items(read_movielens_catalog(ml1m / "movies.dat"))
    sequences, vocabulary = build_sequences(interactions, vocabulary)
    splits = leave_one_out_split(sequences)
    torch.manual_seed(0)
    model = tiny_model(vocabulary.num_items, hidden_size=50, attention_dim=50, linear_dim=50, max_seq_len=100,
                       max_position_embeddings=111, num_negatives=64)
    config = PretrainConfig(output_dir=str(tmp_path), num_train_epochs=5, per_device_train_batch_size=64,
                            disable_tqdm=True, bf16=True, save_strategy="no", eval_strategy="no",
                            load_best_model_at_end=False)
    PretrainTrainer(model=model, args=config, train_dataset=splits["train"], processing_class=vocabulary).train()
    collator = SequenceCollator(max_seq_len=100)
    hstu = evaluate_ranking(model, splits["test"], collator)["all"]
    popular = evaluate_ranking(MostPopularRecommender.from_dataset(splits["train"], vocabulary.num_items),
                               splits["test"], collator)["all"]
    print(json.dumps({"hstu": hstu, "most_popular": popular}))
    assert hstu["ndcg@10"] > popular["ndcg@10"] and hstu["hr@50"] > popular["hr@50"], (hstu, popular)


def test_torch_compile_trains_like_eager(tmp_path, monkeypatch):
    # `torch_compile: true` must work end to end (dynamo traces the model with dynamic batch shapes; the
    # sampled-softmax negatives once broke that) and train the model eager mode trains. Inductor draws random
    # numbers with its own generator unless `fallback_random`; with it, both modes draw the same negatives.
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    interactions = generate_synthetic_interactions(num_users=40, num_items=30, mean_events=20, seed=4)
    sequences, vocabulary = build_sequences(interactions)
    splits = leave_one_out_split(sequences)
    runs = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = tiny_model(vocabulary.num_items, hidden_size=16, attention_dim=8, linear_dim=8, max_seq_len=16,
                           max_position_embeddings=19, num_negatives=8, input_dropout=0.0, linear_dropout=0.0)
        config = PretrainConfig(output_dir=str(tmp_path / str(compiled)), num_train_epochs=1,
                                per_device_train_batch_size=16, torch_compile=compiled, disable_tqdm=True,
                                report_to=[], logging_steps=1, save_strategy="no", load_best_model_at_end=False)
        trainer = PretrainTrainer(model=model, args=config, train_dataset=splits["train"],
                                  eval_dataset=splits["validation"], processing_class=vocabulary)
        trainer.train()
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        runs[compiled] = (type(trainer.model_wrapped).__name__, losses, trainer.evaluate()["eval_ndcg@10"])
    assert runs[True][0] == "OptimizedModule" and runs[False][0] != "OptimizedModule"
    assert len(runs[True][1]) == 3 and runs[True][1] == pytest.approx(runs[False][1], rel=1e-4)
    assert runs[True][2] == pytest.approx(runs[False][2], abs=1e-4)
