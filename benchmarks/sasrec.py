"""SASRec (Kang & McAuley, 2018) as the speed peer of `benchmarks/speed.py`.

Written for the benchmark from the paper's description, with the HSTU reference's retrieval output (as in
its `sasrec-*-final.gin` configs): causal softmax self-attention blocks with a ReLU feed-forward,
learned absolute positions, and the same L2-normalised cosine / temperature scoring and sampled softmax
as our HSTU, so both models do the same output work on the same batches.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hf_genrec.losses.next_item import sampled_softmax_loss


class SASRecBlock(nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.attention_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.ffn_in = nn.Linear(hidden_size, ffn_size)
        self.ffn_out = nn.Linear(ffn_size, hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        batch_size, seq_len, hidden = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).chunk(3, dim=-1)  # (B, N, d) each
        shape = (batch_size, seq_len, self.num_heads, hidden // self.num_heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))  # (B, h, N, d/h)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout.p if self.training else 0.0)
        x = x + self.dropout(self.out(attended.transpose(1, 2).reshape(batch_size, seq_len, hidden)))
        x = x + self.dropout(self.ffn_out(self.dropout(F.relu(self.ffn_in(self.ffn_norm(x))))))
        return x * padding_mask


class SASRec(nn.Module):
    def __init__(self, num_items: int, hidden_size: int = 50, num_layers: int = 2, num_heads: int = 1,
                 ffn_size: int = 50, max_len: int = 211, dropout: float = 0.2, temperature: float = 0.05,
                 num_negatives: int = 128):
        super().__init__()
        self.item_embeddings = nn.Embedding(num_items + 1, hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(max_len, hidden_size)
        self.blocks = nn.ModuleList(SASRecBlock(hidden_size, num_heads, ffn_size, dropout) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden_size, eps=1e-8)
        self.dropout = nn.Dropout(dropout)
        self.temperature = temperature
        self.num_negatives = num_negatives
        nn.init.trunc_normal_(self.item_embeddings.weight, std=0.02)

    def forward(self, item_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, **kwargs):
        padding_mask = attention_mask[..., None].float()  # (B, N, 1)
        positions = torch.arange(item_ids.shape[1], device=item_ids.device)
        x = self.item_embeddings(item_ids) * math.sqrt(self.item_embeddings.embedding_dim)
        x = self.dropout(x + self.position_embeddings(positions)[None]) * padding_mask
        for block in self.blocks:
            x = block(x, padding_mask)
        users = F.normalize(self.final_norm(x), dim=-1, eps=1e-6)  # (B, N, d)
        items = F.normalize(self.item_embeddings.weight, dim=-1, eps=1e-6)
        supervised = labels > 0
        return sampled_softmax_loss(users[supervised], items, labels[supervised], self.temperature, self.num_negatives)
