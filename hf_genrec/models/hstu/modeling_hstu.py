"""PyTorch HSTU generative recommender.

The whole model is in this file. It follows what the reference code of Zhai et al., "Actions Speak
Louder than Words" (ICML 2024, `meta-recsys/generative-recommenders`, research path) computes for its
public MovieLens experiments, written densely (right-padded batches) instead of with jagged kernels.

Dimensions used in the shape comments:
    B: batch size            N: (cropped) sequence length     d: hidden_size
    h: num_attention_heads   dqk: attention_dim               dv: linear_dim
    V: num_items (the embedding table has V + 1 rows, row 0 is padding)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from ...losses.next_item import full_softmax_loss, sampled_softmax_loss
from .configuration_hstu import HSTUConfig


def next_event_timestamps(timestamps: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Default query times: position i asks about the time of event i + 1.

    The last real position has no next event in the input; it falls back to its own time (pass
    `query_timestamps` with the request time to do better, as the collator does at evaluation).

    Args:
        timestamps: (B, N) event times in seconds.
        attention_mask: (B, N) 1 on real positions (right-padded).

    Returns:
        (B, N) query times.
    """
    shifted = torch.cat([timestamps[:, 1:], timestamps[:, -1:]], dim=1)  # (B, N)
    next_is_real = torch.cat([attention_mask[:, 1:], torch.zeros_like(attention_mask[:, :1])], dim=1).bool()
    return torch.where(next_is_real, shifted, timestamps)


def time_bucket_indices(
    timestamps: torch.Tensor, query_timestamps: torch.Tensor, num_buckets: int, divisor: float
) -> torch.Tensor:
    """Log-scale time buckets of the reference's relative attention bias.

    For query i and key j, dt = query_timestamps[i] - timestamps[j] (the *next* event's time, known at
    request time, minus the key's time); bucket = clamp(floor(ln(max(|dt|, 1)) / divisor), 0, num_buckets).

    Args:
        timestamps: (B, N) key times in seconds.
        query_timestamps: (B, N) query times in seconds.

    Returns:
        (B, N, N) long bucket indices, shared by every layer of a forward pass.
    """
    delta = (query_timestamps[:, :, None] - timestamps[:, None, :]).abs().clamp_(min=1)  # (B, N, N)
    buckets = torch.log(delta.float()).div_(divisor).floor_()  # (B, N, N)
    return buckets.clamp_(0, num_buckets).long()


class _GatherBias(torch.autograd.Function):
    """`weight[indices]` whose backward is one weighted bincount.

    The default backward of an index gather into a small table is an `index_put` with accumulation,
    which is slow and memory-bound on CPU over B x N x N indices.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices)
        ctx.table_size = weight.shape[0]
        return weight[indices]

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (indices,) = ctx.saved_tensors
        grad_weight = torch.bincount(
            indices.reshape(-1), weights=grad_output.reshape(-1).float(), minlength=ctx.table_size
        )
        return grad_weight.to(grad_output.dtype), None


class HSTURelativeAttentionBias(nn.Module):
    """Relative attention bias over positions and time buckets, one per layer and shared by its heads."""

    def __init__(self, config: HSTUConfig):
        super().__init__()
        self.max_len = config.max_position_embeddings
        self.use_position_bias = config.use_position_bias
        self.use_time_bias = config.use_time_bias
        # One weight per relative position j - i in [-(N-1), N-1] and one per time bucket.
        self.position_weights = nn.Parameter(torch.empty(2 * self.max_len - 1))
        self.time_weights = nn.Parameter(torch.empty(config.num_time_buckets + 1))

    def forward(self, seq_len: int, time_buckets: torch.Tensor | None) -> torch.Tensor | None:
        """Returns the bias, (1, N, N) or (B, N, N), or None when both terms are off."""
        bias = None
        if self.use_position_bias:
            positions = torch.arange(seq_len, device=self.position_weights.device)
            relative = self.max_len - 1 + positions[None, :] - positions[:, None]  # (N, N): N-1 + j - i
            bias = self.position_weights[relative][None]  # (1, N, N)
        if self.use_time_bias and time_buckets is not None:
            time_bias = _GatherBias.apply(self.time_weights, time_buckets)  # (B, N, N)
            bias = time_bias if bias is None else bias + time_bias
        return bias


def hstu_pointwise_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_bias: torch.Tensor | None,
    causal_scale: torch.Tensor,
) -> torch.Tensor:
    """HSTU's pointwise aggregated attention: SiLU(q kᵀ + rab) / N under a causal mask, times v.

    Unlike softmax attention there is no 1/sqrt(dqk) scale and no normalisation over keys; the constant
    1/N (the padded length of the reference, `max_position_embeddings`) is folded into `causal_scale`.

    Args:
        query: (B, N, h, dqk)
        key: (B, N, h, dqk)
        value: (B, N, h, dv)
        attention_bias: (1 | B, N, N) relative bias shared by the heads, or None.
        causal_scale: (N, N) lower-triangular (diagonal included) mask times 1/max_len.

    Returns:
        (B, N, h * dv)
    """
    batch_size, seq_len, num_heads, value_dim = value.shape
    scores = torch.einsum("bnhd,bmhd->bhnm", query, key)  # (B, h, N, N)
    if attention_bias is not None:
        scores = scores + attention_bias[:, None]  # bias broadcast over heads
    weights = F.silu(scores) * causal_scale  # (B, h, N, N)
    output = torch.einsum("bhnm,bmhd->bnhd", weights.to(value.dtype), value)  # (B, N, h, dv)
    return output.reshape(batch_size, seq_len, num_heads * value_dim)


class HSTULayer(GradientCheckpointingLayer):
    """One HSTU layer: pre-norm, one fused U/V/Q/K projection, pointwise attention, gated output.

    y = x + W_o · Dropout(u ⊙ LayerNorm(attention)). There is no separate feed-forward block: the
    U gate and W_o replace it.
    """

    def __init__(self, config: HSTUConfig):
        super().__init__()
        self.hidden_size = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.attention_dim = config.attention_dim
        self.linear_dim = config.linear_dim
        self.eps = config.layer_norm_eps
        self.split_sizes = [
            self.num_heads * self.linear_dim,  # u
            self.num_heads * self.linear_dim,  # v
            self.num_heads * self.attention_dim,  # q
            self.num_heads * self.attention_dim,  # k
        ]
        self.uvqk = nn.Linear(config.hidden_size, sum(self.split_sizes), bias=False)
        self.o_proj = nn.Linear(self.num_heads * self.linear_dim, config.hidden_size, bias=True)
        self.uvqk._hstu_init, self.o_proj._hstu_init = "uvqk", "o_proj"
        self.dropout = nn.Dropout(config.linear_dropout)
        self.relative_bias = HSTURelativeAttentionBias(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        causal_scale: torch.Tensor,
        time_buckets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        batch_size, seq_len, _ = hidden_states.shape
        # Input norm has no learnable affine in the reference.
        normed = F.layer_norm(hidden_states, (self.hidden_size,), eps=self.eps)  # (B, N, d)
        # SiLU on all four of u, v, q, k.
        u, v, q, k = torch.split(F.silu(self.uvqk(normed)), self.split_sizes, dim=-1)
        q = q.reshape(batch_size, seq_len, self.num_heads, self.attention_dim)  # (B, N, h, dqk)
        k = k.reshape(batch_size, seq_len, self.num_heads, self.attention_dim)  # (B, N, h, dqk)
        v = v.reshape(batch_size, seq_len, self.num_heads, self.linear_dim)  # (B, N, h, dv)
        bias = self.relative_bias(seq_len, time_buckets)  # (1 | B, N, N)
        attention = hstu_pointwise_attention(q, k, v, bias, causal_scale)  # (B, N, h * dv)
        attention = F.layer_norm(attention, (attention.shape[-1],), eps=self.eps)
        # The residual adds the un-normalised input.
        return hidden_states + self.o_proj(self.dropout(u * attention))  # (B, N, d)


class HSTUPreTrainedModel(PreTrainedModel):
    config_class = HSTUConfig
    base_model_prefix = "model"
    main_input_name = "item_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HSTULayer"]
    _supports_sdpa = False  # pointwise SiLU attention is not softmax attention

    def _init_weights(self, module: nn.Module) -> None:
        # The reference: item table trunc-normal(0.02), U/V/Q/K normal(0.02), W_o xavier-uniform with
        # PyTorch's default bias, rab weights normal(0.02), position table xavier-normal.
        # transformers only passes modules that own parameters directly (leaves), so the leaves carry
        # their role in `_hstu_init`.
        std = self.config.initializer_range
        role = getattr(module, "_hstu_init", None)
        if role == "item_embeddings":
            if not getattr(module.weight, "_is_hf_initialized", False):  # never touch loaded weights
                init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                module.weight[0].zero_()  # padding row
        elif role == "position_embeddings":
            init.xavier_normal_(module.weight)
        elif role == "uvqk":
            init.normal_(module.weight, std=std)
        elif role == "o_proj":
            init.xavier_uniform_(module.weight)
            bound = 1.0 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, HSTURelativeAttentionBias):
            init.normal_(module.position_weights, std=std)
            init.normal_(module.time_weights, std=std)
        else:
            super()._init_weights(module)


@dataclass
class HSTUModelOutput(ModelOutput):
    """
    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Output of the last layer (not normalised).
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            The input embeddings and every layer's output, when `output_hidden_states=True`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class HSTUModel(HSTUPreTrainedModel):
    """The HSTU backbone: item + position embeddings and a stack of HSTU layers. Returns hidden states."""

    def __init__(self, config: HSTUConfig):
        super().__init__(config)
        self.item_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.item_embeddings._hstu_init, self.position_embeddings._hstu_init = "item_embeddings", "position_embeddings"
        self.input_dropout = nn.Dropout(config.input_dropout)
        self.layers = nn.ModuleList([HSTULayer(config) for _ in range(config.num_hidden_layers)])
        self.activation_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.item_embeddings = value

    def forward(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> HSTUModelOutput:
        r"""
        Args:
            item_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Item indices of each history, oldest first, right-padded with 0.
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 on real events, 0 on padding. Defaults to `item_ids != 0`.
            timestamps (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Event times in seconds. Without them the time term of the attention bias is skipped.
            query_timestamps (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                For each position, the time of the event it predicts (at serving time: the request
                time at the last position). Defaults to the next event's time.
        """
        batch_size, seq_len = item_ids.shape
        if seq_len > self.config.max_position_embeddings:
            raise ValueError(
                f"item_ids has {seq_len} positions but the model has only max_position_embeddings="
                f"{self.config.max_position_embeddings}; keep the most recent {self.config.max_seq_len} events "
                "(SequenceCollator does this)."
            )
        if attention_mask is None:
            attention_mask = (item_ids != 0).long()
        padding_mask = attention_mask[..., None].to(self.item_embeddings.weight.dtype)  # (B, N, 1)

        positions = torch.arange(seq_len, device=item_ids.device)
        hidden_states = self.item_embeddings(item_ids) * math.sqrt(self.config.hidden_size)  # (B, N, d)
        hidden_states = hidden_states + self.position_embeddings(positions)[None]
        hidden_states = self.input_dropout(hidden_states) * padding_mask  # padding zeroed after dropout

        time_buckets = None
        if timestamps is not None and self.config.use_time_bias:
            if query_timestamps is None:
                query_timestamps = next_event_timestamps(timestamps, attention_mask)
            time_buckets = time_bucket_indices(
                timestamps, query_timestamps, self.config.num_time_buckets, self.config.time_bucket_divisor
            )  # (B, N, N), computed once and reused by every layer

        # Right padding plus a causal mask means real queries only ever see real keys.
        causal_scale = torch.ones(seq_len, seq_len, device=item_ids.device).tril_()
        causal_scale = causal_scale / self.config.max_position_embeddings  # (N, N)

        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for layer in self.layers:
            hidden_states = layer(hidden_states, causal_scale, time_buckets)
            if output_hidden_states:
                all_hidden_states = all_hidden_states + (hidden_states,)
        return HSTUModelOutput(last_hidden_state=hidden_states, hidden_states=all_hidden_states)


@dataclass
class NextItemPredictionOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Next-item loss over the positions whose `labels` are not 0, when `labels` are passed.
        logits (`torch.FloatTensor` of shape `(batch_size, sequence_length, num_items + 1)`, *optional*):
            Scores of every item at every position (cosine / temperature; column 0 is -inf), only when
            `output_logits=True` (it is large).
        user_embeddings (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            L2-normalised user vectors; scores are their cosine with the normalised item table.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Backbone output before normalisation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Every layer's output, when `output_hidden_states=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class RecommendationOutput(ModelOutput):
    """
    Args:
        item_ids (`torch.LongTensor` of shape `(batch_size, k)`): recommended item indices, best first.
        scores (`torch.FloatTensor` of shape `(batch_size, k)`): their scores (cosine / temperature).
    """

    item_ids: torch.LongTensor | None = None
    scores: torch.FloatTensor | None = None


class HSTUForNextItemPrediction(HSTUPreTrainedModel):
    """HSTU with next-item scoring against the tied, L2-normalised item embeddings (cosine / temperature)."""

    def __init__(self, config: HSTUConfig):
        super().__init__(config)
        self.model = HSTUModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.item_embeddings = value

    def normalized_item_embeddings(self) -> torch.Tensor:
        """(V + 1, d) L2-normalised item table (row 0, padding, is all zeros)."""
        return F.normalize(self.model.item_embeddings.weight, dim=-1, eps=self.config.l2_norm_eps)

    def user_embeddings(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., d) hidden states -> (..., d) L2-normalised user vectors."""
        return F.normalize(hidden_states, dim=-1, eps=self.config.l2_norm_eps)

    def item_logits(self, user_embeddings: torch.Tensor) -> torch.Tensor:
        """Scores of every item: (..., d) normalised user vectors -> (..., V + 1), padding column -inf."""
        logits = user_embeddings @ self.normalized_item_embeddings().T / self.config.similarity_temperature
        logits[..., 0] = float("-inf")
        return logits

    def next_item_loss(
        self, user_embeddings: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The configured next-item loss over supervised positions.

        Args:
            user_embeddings: (P, d) normalised user vectors.
            labels: (P,) target item indices (no padding).
            weights: optional (P,) per-position weights.
        """
        items = self.normalized_item_embeddings()
        if self.config.loss_type == "full_softmax":
            return full_softmax_loss(user_embeddings, items, labels, self.config.similarity_temperature, weights)
        return sampled_softmax_loss(
            user_embeddings, items, labels, self.config.similarity_temperature, self.config.num_negatives, weights=weights
        )

    def forward(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_logits: bool = False,
        output_hidden_states: bool = False,
        **kwargs,
    ) -> NextItemPredictionOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The next item at each position; 0 means "no target here". When given, the loss is the
                configured next-item loss averaged over the positions with a target.
            output_logits (`bool`, *optional*, defaults to `False`):
                Also return the (batch_size, sequence_length, num_items + 1) scores.

        Other arguments are those of [`HSTUModel.forward`].
        """
        outputs = self.model(
            item_ids,
            attention_mask=attention_mask,
            timestamps=timestamps,
            query_timestamps=query_timestamps,
            output_hidden_states=output_hidden_states,
        )
        user_embeddings = self.user_embeddings(outputs.last_hidden_state)  # (B, N, d)

        loss = None
        if labels is not None:
            supervised = labels > 0  # (B, N)
            loss = self.next_item_loss(user_embeddings[supervised], labels[supervised])  # over P positions

        logits = self.item_logits(user_embeddings) if output_logits else None
        return NextItemPredictionOutput(
            loss=loss,
            logits=logits,
            user_embeddings=user_embeddings,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
        )

    def last_user_embeddings(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B, d) normalised user vector at each history's last real position."""
        if attention_mask is None:
            attention_mask = (item_ids != 0).long()
        hidden = self.model(
            item_ids, attention_mask=attention_mask, timestamps=timestamps, query_timestamps=query_timestamps
        ).last_hidden_state  # (B, N, d)
        last = (attention_mask.sum(dim=1) - 1).clamp(min=0)  # (B,)
        hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]  # (B, d)
        return self.user_embeddings(hidden.float())

    def score_next_items(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B, V + 1) scores of every item as the next one after each history (padding column -inf)."""
        user = self.last_user_embeddings(item_ids, attention_mask, timestamps, query_timestamps)  # (B, d)
        return self.item_logits(user)

    @torch.no_grad()
    def recommend(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        k: int = 10,
        exclude_item_ids: torch.LongTensor | None = None,
        exclude_history: bool = True,
    ) -> RecommendationOutput:
        """Top-k next items for each history, over the full catalogue.

        Args:
            item_ids: (B, N) histories, right-padded with 0 (at most `max_position_embeddings` long).
            k: how many items to return (at most `num_items`).
            exclude_item_ids: (B, H) more item indices to exclude per row (0 = padding), e.g. the full
                history when `item_ids` holds only its most recent window.
            exclude_history: remove the items of `item_ids` from the candidates.

        Returns:
            [`RecommendationOutput`] with (B, k) item indices (best first) and scores.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}.")
        k = min(k, self.config.num_items)
        scores = self.score_next_items(item_ids, attention_mask, timestamps, query_timestamps)  # (B, V + 1)
        if exclude_history:
            scores.scatter_(1, item_ids, float("-inf"))
        if exclude_item_ids is not None:
            scores.scatter_(1, exclude_item_ids.to(scores.device), float("-inf"))
        top_scores, top_items = scores.topk(k, dim=-1)  # (B, k)
        return RecommendationOutput(item_ids=top_items, scores=top_scores)


__all__ = [
    "HSTUPreTrainedModel",
    "HSTUModel",
    "HSTUForNextItemPrediction",
    "HSTUModelOutput",
    "NextItemPredictionOutput",
    "RecommendationOutput",
    "HSTULayer",
    "HSTURelativeAttentionBias",
    "hstu_pointwise_attention",
    "time_bucket_indices",
    "next_event_timestamps",
]
