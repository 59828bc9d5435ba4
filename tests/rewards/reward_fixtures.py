"""Helpers shared by the reward tests: the tiny model settings, training arguments and batches."""

from __future__ import annotations

from hf_genrec.trainers import RewardConfig

TINY_MODEL = dict(
    hidden_size=16,
    num_hidden_layers=1,
    num_attention_heads=1,
    attention_dim=8,
    linear_dim=8,
    max_seq_len=20,
    max_position_embeddings=24,
    num_negatives=8,
    reward_head_hidden_size=8,
)


def tiny_reward_args(output_dir, **overrides) -> RewardConfig:
    values = dict(
        output_dir=str(output_dir),
        ensemble_size=2,
        num_train_epochs=2,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=64,
        seed=11,
        disable_tqdm=True,
        logging_steps=1,
        save_strategy="no",
        load_best_model_at_end=False,
    )
    values.update(overrides)
    return RewardConfig(**values)


def eval_batch(splits, vocabulary, split: str = "test", size: int = 8):
    """A collated evaluation batch of the first `size` rows of `split`."""
    from hf_genrec.data import SequenceCollator

    return SequenceCollator(max_seq_len=TINY_MODEL["max_seq_len"])([splits[split][i] for i in range(size)])
