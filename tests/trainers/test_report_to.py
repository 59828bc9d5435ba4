"""Trainers report to the `report_to` integrations; TensorBoard works offline."""

import pytest
import torch

from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
from hf_genrec.data import build_sequences, generate_synthetic_interactions, leave_one_out_split
from hf_genrec.trainers import PretrainConfig, PretrainTrainer

pytest.importorskip("tensorboard")


def test_pretraining_writes_tensorboard_events(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # transformers 5 takes the TensorBoard directory from the environment (no `logging_dir` argument).
    logging_dir = tmp_path / "tensorboard"
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(logging_dir))
    interactions = generate_synthetic_interactions(num_users=24, num_items=25, mean_events=20, seed=5)
    sequences, vocabulary = build_sequences(interactions)
    splits = leave_one_out_split(sequences)
    torch.manual_seed(0)
    model = HSTUForNextItemPrediction(HSTUConfig(num_items=vocabulary.num_items, hidden_size=8, attention_dim=4,
                                                 linear_dim=4, max_seq_len=10, max_position_embeddings=11,
                                                 num_negatives=4))
    args = PretrainConfig(output_dir=str(tmp_path / "out"), num_train_epochs=2, per_device_train_batch_size=8,
                          logging_steps=1, save_strategy="no", load_best_model_at_end=False, disable_tqdm=True,
                          report_to="tensorboard")
    trainer = PretrainTrainer(model=model, args=args, train_dataset=splits["train"],
                              eval_dataset=splits["validation"], processing_class=vocabulary)
    trainer.train()

    event_files = list(logging_dir.glob("events.out.tfevents.*"))
    assert event_files, f"no event file in {logging_dir}: {list(tmp_path.rglob('*'))}"
    events = EventAccumulator(str(logging_dir))
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert "train/loss" in scalars and "eval/ndcg@10" in scalars, scalars
    assert len(events.Scalars("train/loss")) == trainer.state.global_step  # one point per logging step
    assert len(events.Scalars("eval/ndcg@10")) == 2  # one per epoch
