"""Tiny HSTU configs and hand-made batches shared by the model tests."""

import torch

from hf_genrec import HSTUConfig


def tiny_config(**overrides) -> HSTUConfig:
    values = dict(
        num_items=40,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        attention_dim=6,
        linear_dim=8,
        max_seq_len=12,
        max_position_embeddings=15,
        input_dropout=0.0,
        linear_dropout=0.0,
        num_negatives=8,
    )
    values.update(overrides)
    return HSTUConfig(**values)


def batch(seed: int = 0, batch_size: int = 3, seq_len: int = 10, num_items: int = 40):
    g = torch.Generator().manual_seed(seed)
    item_ids = torch.randint(1, num_items + 1, (batch_size, seq_len), generator=g)
    lengths = torch.tensor([seq_len, seq_len - 3, 4])[:batch_size]
    mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
    item_ids = item_ids * mask
    timestamps = (torch.cumsum(torch.randint(1, 200_000, (batch_size, seq_len), generator=g), 1) + 10**9) * mask
    return item_ids, mask, timestamps
