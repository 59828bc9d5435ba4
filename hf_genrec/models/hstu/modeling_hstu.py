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
import operator
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, cached_file, logging

from ...data.history import History
from ...data.history import query_timestamps as default_query_timestamps
from ...data.vocabulary import VOCABULARY_FILE, ItemVocabulary
from ...losses.next_item import (
    catalogue_label_log_probs,
    full_softmax_loss,
    masked_catalogue_scores,
    sampled_softmax_loss,
)
from ...losses.reward import check_finite_rewards, reward_regression_loss
from .configuration_hstu import HSTUConfig
from .loading import (
    _download_kwargs,
    check_checkpoint_shapes,
    load_checked_config,
    read_safetensors_shapes,
    resolve_safetensors_files,
)

logger = logging.get_logger(__name__)


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
    """`weight[indices]` of a small 1-D table, as one `index_select` whose backward is one `scatter_add_`.

    Over B x N x N indices on CPU, advanced indexing forward is twice as slow as `index_select`, and its default
    backward (an `index_put` with accumulation) is memory-bound and slow; `scatter_add_` into the table sums in
    float32 in index order, as a weighted bincount would, in half its time.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(indices)
        ctx.table_size = weight.shape[0]
        return weight.index_select(0, indices.reshape(-1)).view(indices.shape)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (indices,) = ctx.saved_tensors
        grad_weight = grad_output.new_zeros(ctx.table_size, dtype=torch.promote_types(grad_output.dtype, torch.float32))
        grad_weight.scatter_add_(0, indices.reshape(-1), grad_output.reshape(-1).to(grad_weight.dtype))
        return grad_weight.to(grad_output.dtype), None


class HSTUDropout(nn.Dropout):
    """`nn.Dropout` whose mask, on CPU, comes from uniform draws (`rand >= p`) instead of `bernoulli_`.

    Same distribution (each element kept with probability 1 - p and scaled by 1 / (1 - p)) and the same
    reproducibility from `torch.manual_seed` (gradient checkpointing restores the RNG state before recomputing,
    so the recomputed mask is the same); on CPU `bernoulli_` takes 2-3x the time of `rand` for the same tensor, and
    the three dropouts of a 2-layer HSTU step cost ~10% of a bf16 step. Other devices keep the fused kernel.
    """

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or hidden_states.device.type != "cpu" or self.inplace:
            return super().forward(hidden_states)
        mask = torch.rand_like(hidden_states, dtype=torch.promote_types(hidden_states.dtype, torch.float32))
        mask = mask.ge_(self.p).mul_(1.0 / (1.0 - self.p)).to(hidden_states.dtype)  # 0 or 1 / (1 - p)
        return hidden_states * mask


class _CatalogueScores(torch.autograd.Function):
    """`users @ items.T / temperature` with column 0 (padding) set to -inf, and a backward that never copies or
    rescales the (P, V + 1) gradient.

    Autograd's version of the same three ops keeps the division and the in-place column write in the graph: two
    more passes over the (P, V + 1) scores forward and two backward (a clone to zero the column, the division's
    rescale), on tensors of hundreds of MB. Here the column's gradient is dropped by slicing it off and 1/τ scales
    the (P, d) and (V + 1, d) results instead.
    """

    @staticmethod
    def forward(ctx, users: torch.Tensor, items: torch.Tensor, temperature: float) -> torch.Tensor:
        scores = masked_catalogue_scores(users, items, temperature)  # (..., V + 1); autocast applies as to plain ops
        ctx.save_for_backward(users, items)
        ctx.temperature, ctx.compute_dtype = temperature, scores.dtype
        return scores

    @staticmethod
    def backward(ctx, grad_scores: torch.Tensor):
        users, items = ctx.saved_tensors
        dtype, temperature = ctx.compute_dtype, ctx.temperature
        grad = grad_scores.to(dtype).reshape(-1, items.shape[0])[:, 1:]  # (P, V): no gradient to the padding column
        grad_users = grad_items = None
        if ctx.needs_input_grad[0]:
            grad_users = (grad @ items[1:].to(dtype)).div_(temperature).reshape(users.shape).to(users.dtype)
        if ctx.needs_input_grad[1]:
            grad_items = torch.zeros_like(items)  # row 0 (padding) stays 0
            grad_items[1:] = (grad.T @ users.to(dtype).reshape(-1, users.shape[-1])).div_(temperature)
        return grad_users, grad_items, None


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

    def forward(
        self, seq_len: int, time_buckets: torch.Tensor | None, query_positions: torch.LongTensor | None = None
    ) -> torch.Tensor | None:
        """Returns the bias, (1, N, N) or (B, N, N), or None when both terms are off; with `query_positions`
        (B, T), only the rows of those queries: (B, T, N)."""
        bias = None
        positions = torch.arange(seq_len, device=self.position_weights.device)
        queries = positions[:, None] if query_positions is None else query_positions[..., None]  # (N, 1) | (B, T, 1)
        if self.use_position_bias:
            relative = self.max_len - 1 + positions - queries  # (N, N) | (B, T, N): N-1 + j - i
            bias = _GatherBias.apply(self.position_weights, relative)
            bias = bias[None] if query_positions is None else bias  # (1, N, N) | (B, T, N)
        if self.use_time_bias and time_buckets is not None:
            if query_positions is not None:
                rows = torch.arange(time_buckets.shape[0], device=time_buckets.device)[:, None]  # (B, 1)
                time_buckets = time_buckets[rows, query_positions]  # (B, T, N)
            time_bias = _GatherBias.apply(self.time_weights, time_buckets)  # (B, N | T, N)
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
        query: (B, Nq, h, dqk), Nq = N, or 1 when only the last position is asked for
        key: (B, N, h, dqk)
        value: (B, N, h, dv)
        attention_bias: (1 | B, Nq, N) relative bias shared by the heads, or None.
        causal_scale: (Nq, N) lower-triangular (diagonal included) mask times 1/max_len, or (B, Nq, N).

    Returns:
        (B, Nq, h * dv)
    """
    batch_size, num_queries, num_heads, _ = query.shape
    value_dim = value.shape[-1]
    scores = torch.einsum("bnhd,bmhd->bhnm", query, key)  # (B, h, Nq, N)
    if attention_bias is not None:
        scores = scores + attention_bias[:, None]  # bias broadcast over heads
    if causal_scale.dim() == 3:  # one mask row per batch element (last-position queries)
        causal_scale = causal_scale[:, None]  # (B, 1, Nq, N)
    weights = F.silu(scores) * causal_scale  # (B, h, Nq, N)
    output = torch.einsum("bhnm,bmhd->bnhd", weights.to(value.dtype), value)  # (B, Nq, h, dv)
    return output.reshape(batch_size, num_queries, num_heads * value_dim)


class HSTUUVQKProjection(nn.Linear):
    """The fused U/V/Q/K input projection of an HSTU layer (no bias). Its own type so that
    `HSTUPreTrainedModel._init_weights` can give it the reference's initialisation."""


class HSTUOutputProjection(nn.Linear):
    """W_o, the output projection of an HSTU layer (with bias). Its own type for `_init_weights`."""


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
        self.uvqk = HSTUUVQKProjection(config.hidden_size, sum(self.split_sizes), bias=False)
        self.o_proj = HSTUOutputProjection(self.num_heads * self.linear_dim, config.hidden_size, bias=True)
        self.dropout = HSTUDropout(config.linear_dropout)
        self.relative_bias = HSTURelativeAttentionBias(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        causal_scale: torch.Tensor,
        time_buckets: torch.Tensor | None = None,
        query_positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B, N, d) -> (B, N, d); with `query_positions` (B,) or (B, T), only those rows are computed -> (B, 1, d)
        or (B, T, d).

        Serving needs only each history's last position from the last layer (a judge the last few); its keys and
        values still come from every position, but the N x N attention shrinks to T x N.
        """
        batch_size, seq_len, _ = hidden_states.shape
        # Input norm has no learnable affine in the reference.
        normed = F.layer_norm(hidden_states, (self.hidden_size,), eps=self.eps)  # (B, N, d)
        # SiLU on all four of u, v, q, k.
        u, v, q, k = torch.split(F.silu(self.uvqk(normed)), self.split_sizes, dim=-1)
        k = k.reshape(batch_size, seq_len, self.num_heads, self.attention_dim)  # (B, N, h, dqk)
        v = v.reshape(batch_size, seq_len, self.num_heads, self.linear_dim)  # (B, N, h, dv)
        if query_positions is not None:
            query_positions = query_positions.reshape(batch_size, -1)  # (B, T)
            rows = torch.arange(batch_size, device=hidden_states.device)[:, None]  # (B, 1)
            hidden_states, u, q = (t[rows, query_positions] for t in (hidden_states, u, q))  # (B, T, .)
            causal_scale = causal_scale[query_positions]  # (B, T, N)
        bias = self.relative_bias(seq_len, time_buckets, query_positions)  # (1 | B, N, N) or (B, T, N)
        q = q.reshape(batch_size, -1, self.num_heads, self.attention_dim)  # (B, N | T, h, dqk)
        attention = hstu_pointwise_attention(q, k, v, bias, causal_scale)  # (B, N | T, h * dv)
        attention = F.layer_norm(attention, (attention.shape[-1],), eps=self.eps)
        # The residual adds the un-normalised input.
        return hidden_states + self.o_proj(self.dropout(u * attention))  # (B, N | T, d)


class HSTUPreTrainedModel(PreTrainedModel):
    """Base class of the HSTU models: loading, saving and resizing shared by every head.

    The item vocabulary rides with the model. `item_vocabulary` (an [`ItemVocabulary`] or None) maps raw item ids
    to the rows of the item table; `from_pretrained` sets it from the `item_vocabulary.json` found beside the
    weights (same repo, `subfolder` and `revision`), and `save_pretrained` writes it beside them, so
    `push_to_hub` (which saves through `save_pretrained`) uploads it and
    `Recommender.from_pretrained(repo_id)` works on the pushed repo. A model built from a config has none: set
    it (`model.item_vocabulary = vocabulary`) before saving, as `Recommender(model, vocabulary)` does.
    """

    config_class = HSTUConfig
    base_model_prefix = "model"
    main_input_name = "item_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["HSTULayer"]
    _supports_sdpa = False  # pointwise SiLU attention is not softmax attention
    # The losses are means over the labelled positions and take no `num_items_in_batch`: `Trainer` must not pass
    # one, and must itself divide by the gradient-accumulation steps (our trainers normalise in `compute_loss`).
    accepts_loss_kwargs = False
    item_vocabulary: ItemVocabulary | None = None

    def __init__(self, config: HSTUConfig, *inputs, **kwargs):
        # Checked again before anything is allocated: fields may have been set since the config was built.
        if isinstance(config, HSTUConfig):
            config.validate_hstu()
        super().__init__(config, *inputs, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained` restricted to safetensors weights, checked before the model is built.

        Pickle-based weight files (`pytorch_model.bin`, `*.pt`, `*.pkl`) can execute code when loaded, so a
        checkpoint that only has those is refused with an explanation instead of being unpickled. The config is
        validated (types, upper bounds) and compared with the safetensors header (item table, number of layers,
        every backbone shape) first, so an absurd or mismatched `config.json` is refused at once with a
        `ValueError` naming the field, instead of hanging, exhausting memory or re-initialising layers silently.
        `ignore_mismatched_sizes=True` skips the comparison (mismatched tensors are then re-initialised, as asked).

        The `item_vocabulary.json` beside the weights, when there is one, becomes `model.item_vocabulary`.
        """
        path = os.fspath(pretrained_model_name_or_path)
        folder = os.path.join(path, kwargs["subfolder"]) if kwargs.get("subfolder") else path
        if os.path.isdir(folder):
            names = os.listdir(folder)
            if not any(n.endswith(".safetensors") for n in names):
                pickled = sorted(n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt")))
                found = f" It only has pickle-based weights ({', '.join(pickled)})." if pickled else ""
                raise OSError(
                    f"{folder!r} has no safetensors weights (model.safetensors).{found} hf_genrec never loads pickled "
                    "weights because unpickling can run arbitrary code. Convert the checkpoint with "
                    "`model.save_pretrained(dir)` (safetensors) in an environment you trust."
                )
        kwargs.setdefault("use_safetensors", True)
        if kwargs.get("state_dict") is None and kwargs.get("gguf_file") is None:
            config = load_checked_config(cls.config_class, path, kwargs)
            files = [] if config is None else resolve_safetensors_files(
                path, kwargs, getattr(config, "transformers_weights", None)
            )
            if files and not kwargs.get("ignore_mismatched_sizes"):  # that flag asks for re-initialised tensors
                check_checkpoint_shapes(cls, config, read_safetensors_shapes(files), path)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) on request
        model.item_vocabulary = model._find_item_vocabulary(path, kwargs)
        return loaded

    def _find_item_vocabulary(self, path: str, kwargs: dict) -> ItemVocabulary | None:
        """The `item_vocabulary.json` saved beside the weights at `path`, when there is one that fits this model.

        A vocabulary of another size is left out with a warning instead of failing the load: a model loaded with
        another `num_items` (and `ignore_mismatched_sizes=True`) is a new catalogue that needs its own vocabulary.
        """
        file = cached_file(
            path, VOCABULARY_FILE, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False, **_download_kwargs(kwargs),
        )
        if file is None:
            return None
        vocabulary = ItemVocabulary.from_pretrained(file)
        if vocabulary.num_items != self.config.num_items:
            logger.warning(
                f"{file} lists {vocabulary.num_items} items but the model scores num_items={self.config.num_items}; "
                "the vocabulary is not attached. Set model.item_vocabulary to this catalogue's vocabulary."
            )
            return None
        return vocabulary

    def _checked_item_vocabulary(self) -> ItemVocabulary | None:
        """`item_vocabulary`, checked against the item table before anything is saved with it."""
        vocabulary = self.item_vocabulary
        if vocabulary is None:
            return None
        if not isinstance(vocabulary, ItemVocabulary):
            raise TypeError(
                f"item_vocabulary must be an ItemVocabulary or None, got {type(vocabulary).__name__}; build one "
                "with ItemVocabulary.from_items(raw_ids)."
            )
        if vocabulary.num_items != self.config.num_items:
            raise ValueError(
                f"item_vocabulary has {vocabulary.num_items} items but the model scores num_items="
                f"{self.config.num_items}; set model.item_vocabulary to the vocabulary of the current catalogue "
                "(after resize_token_embeddings, the grown one) before saving."
            )
        return vocabulary

    def save_pretrained(self, save_directory: str | os.PathLike, is_main_process: bool = True, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, plus `item_vocabulary.json` beside the weights when the model has an
        `item_vocabulary` (so `push_to_hub`, which saves through here, uploads it too)."""
        vocabulary = self._checked_item_vocabulary()  # refused before any file is written
        super().save_pretrained(save_directory, is_main_process, *args, **kwargs)
        if vocabulary is not None and is_main_process and os.path.isdir(save_directory):
            vocabulary.save_pretrained(save_directory)

    def _upload_modified_files(self, working_dir: str | os.PathLike, *args, **kwargs):
        # `save_pretrained(dir, push_to_hub=True)` uploads from inside transformers' `save_pretrained`, before the
        # override above writes the vocabulary: write it first so that upload carries it.
        vocabulary = self._checked_item_vocabulary()
        if vocabulary is not None:
            vocabulary.save_pretrained(working_dir)
        return super()._upload_modified_files(working_dir, *args, **kwargs)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = False
    ) -> nn.Embedding:
        """Grow (or shrink) the item table to `new_num_tokens` rows, i.e. `num_items = new_num_tokens - 1`.

        Rows are added (or removed) at the end; existing items keep their rows and the padding row 0 stays.
        `config.num_items` follows. New rows are initialised as the item table is (truncated normal,
        `initializer_range`); `mean_resizing=True` draws them from the old rows' mean and covariance instead
        (transformers' language-model default). `item_vocabulary` is left as it is: set the grown vocabulary
        (`ItemVocabulary(old.raw_ids + new_ids)`) before saving.
        """
        if new_num_tokens is not None and (
            isinstance(new_num_tokens, bool) or not isinstance(new_num_tokens, int) or new_num_tokens < 2
        ):
            # Checked first: transformers resizes the table before it sets `config.vocab_size`.
            raise ValueError(
                f"new_num_tokens must be an integer >= 2 (the padding row plus at least one item), got "
                f"{new_num_tokens!r}; pass num_items + 1."
            )
        return super().resize_token_embeddings(new_num_tokens, pad_to_multiple_of, mean_resizing)

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the parameters `module` owns itself, by the module's type, as the reference does.

        `PreTrainedModel.initialize_weights` calls this on every submodule, children before parents, at
        construction and for the weights `from_pretrained` did not find; the `transformers.initialization`
        functions leave loaded tensors (`_is_hf_initialized`) alone. Modules that share a torch type but not an
        initialisation have their own small subclass (`HSTUUVQKProjection`, ...). A module that owns parameters
        and has no rule here raises instead of silently keeping some default.
        """
        std = self.config.initializer_range
        if isinstance(module, HSTUItemEmbeddings):  # normal(std) truncated at 2 std, padding row 0
            # Loaded tables are left alone; checked here because zeroing a row slice would bypass the flag.
            if not getattr(module.weight, "_is_hf_initialized", False):
                init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, HSTUPositionEmbeddings):
            init.xavier_normal_(module.weight)
        elif type(module) is nn.Embedding:
            # The bigger table `resize_token_embeddings` builds: new rows start as item rows do; the old rows
            # (padding row 0 included) are copied over it afterwards, and it becomes the item table's weight.
            init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
        elif isinstance(module, HSTUUVQKProjection):
            init.normal_(module.weight, std=std)
        elif isinstance(module, HSTUOutputProjection):  # xavier-uniform weight, PyTorch's default bias
            init.xavier_uniform_(module.weight)
            bound = 1.0 / math.sqrt(module.in_features)
            init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, HSTURelativeAttentionBias):
            init.normal_(module.position_weights, std=std)
            init.normal_(module.time_weights, std=std)
        elif isinstance(module, HSTURegressionHidden):
            init.normal_(module.weight, std=std)
            init.zeros_(module.bias)
        elif isinstance(module, HSTURegressionOutput):
            # Reward and value heads start at the middle of the rating scale instead of 0, far outside it.
            init.normal_(module.weight, std=std)
            init.constant_(module.bias, (self.config.reward_min + self.config.reward_max) / 2)
        elif any(True for _ in module.parameters(recurse=False)):
            path = next((path for path, candidate in self.named_modules() if candidate is module), "?")
            owned = ", ".join(f"{key} {tuple(p.shape)}" for key, p in module.named_parameters(recurse=False))
            raise TypeError(
                f"{type(self).__name__}._init_weights has no initialisation rule for the "
                f"{type(module).__name__} module {path!r} ({owned}). Give it its own module type and a rule in "
                "HSTUPreTrainedModel._init_weights."
            )


class HSTUItemEmbeddings(nn.Embedding):
    """The item table (row 0 is padding), read at the input and, L2-normalised, to score items (tied)."""


class HSTUPositionEmbeddings(nn.Embedding):
    """Learned absolute position embeddings, one row per position of the input window."""


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
        self.item_embeddings = HSTUItemEmbeddings(config.vocab_size, config.hidden_size, padding_idx=0)
        self.position_embeddings = HSTUPositionEmbeddings(config.max_position_embeddings, config.hidden_size)
        self.input_dropout = HSTUDropout(config.input_dropout)
        self.layers = nn.ModuleList([HSTULayer(config) for _ in range(config.num_hidden_layers)])
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
        last_position_only: bool = False,
        query_positions: torch.LongTensor | None = None,
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
                time at the last position). Defaults to `hf_genrec.data.history.query_timestamps` without a
                request time: the next event's time, and at the last real position its own time.
            output_hidden_states (`bool`, *optional*, defaults to `False`):
                Also return the input embeddings and every layer's output.
            last_position_only (`bool`, *optional*, defaults to `False`):
                Compute the last layer only at each history's last real position (what serving needs);
                `last_hidden_state` is then `(batch_size, 1, hidden_size)`.
            query_positions (`torch.LongTensor` of shape `(batch_size, T)`, *optional*):
                Compute the last layer only at these positions of each history (e.g. a judge's last few);
                `last_hidden_state` is then `(batch_size, T, hidden_size)`, equal to the full output's rows there.
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
                query_timestamps = default_query_timestamps(timestamps, attention_mask)
            time_buckets = time_bucket_indices(
                timestamps, query_timestamps, self.config.num_time_buckets, self.config.time_bucket_divisor
            )  # (B, N, N), computed once and reused by every layer

        # Right padding plus a causal mask means real queries only ever see real keys.
        causal_scale = torch.ones(seq_len, seq_len, device=item_ids.device).tril_()
        causal_scale = causal_scale / self.config.max_position_embeddings  # (N, N)

        if last_position_only and query_positions is not None:
            raise ValueError("pass last_position_only or query_positions, not both.")
        if last_position_only:
            query_positions = (attention_mask.sum(dim=1) - 1).clamp(min=0)[:, None]  # (B, 1)
        elif query_positions is not None:
            query_positions = _integer_tensor(query_positions, "query_positions").to(item_ids.device)
            if query_positions.dim() != 2 or query_positions.shape[0] != batch_size:
                raise ValueError(f"query_positions must be (batch_size={batch_size}, T), got "
                                 f"{tuple(query_positions.shape)}.")
            if query_positions.numel() and (int(query_positions.min()) < 0 or int(query_positions.max()) >= seq_len):
                raise ValueError(f"query_positions must lie in 0..{seq_len - 1} (the positions of item_ids), got "
                                 f"{int(query_positions.min())}..{int(query_positions.max())}.")
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        for index, layer in enumerate(self.layers):
            is_last = index == len(self.layers) - 1
            hidden_states = layer(hidden_states, causal_scale, time_buckets, query_positions if is_last else None)
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
        label_log_probs (`torch.FloatTensor` of shape `(P,)`, *optional*):
            float32 log-probability of `logits_labels` under the full-catalogue softmax at the `logits_mask`
            positions, when `logits_labels` is passed (`logits` is then None).
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    user_embeddings: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    label_log_probs: torch.FloatTensor | None = None


@dataclass
class RecommendationOutput(ModelOutput):
    """
    Args:
        item_ids (`torch.LongTensor` of shape `(batch_size, k)`): recommended item indices, best first.
        scores (`torch.FloatTensor` of shape `(batch_size, k)`): their scores (cosine / temperature).
    """

    item_ids: torch.LongTensor | None = None
    scores: torch.FloatTensor | None = None


def check_top_k(k: object) -> int:
    """`k` (items per history) as an `int`; `ValueError` naming it unless it is an integer >= 1.

    Python, NumPy and 0-d integer tensor values are accepted; bools, floats and strings are not (`topk` would
    otherwise fail deep inside torch, or a float would be truncated silently).
    """
    try:
        value = None if isinstance(k, bool) else operator.index(k)
    except TypeError:
        value = None
    if value is None:
        raise ValueError(f"k must be an integer (items per history), got {k!r} of type {type(k).__name__}; pass e.g. k=10.")
    if value < 1:
        raise ValueError(f"k must be at least 1, got {value}; pass the number of items to return per history.")
    return value


def _integer_tensor(tensor: torch.Tensor, name: str) -> torch.Tensor:
    """`tensor` as int64 (unchanged when it already is); `ValueError` naming `name` when it holds non-integers."""
    if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(
            f"{name} must hold integers (item indices or seconds), got dtype {tensor.dtype}; pass a torch.long tensor."
        )
    return tensor.long()


class HSTUItemScoringMixin:
    """Cosine / temperature scoring of the tied, L2-normalised item table and the next-item loss.

    Shared by every head on an HSTU backbone held as `self.model` ([`HSTUForNextItemPrediction`],
    [`HSTUForRewardModeling`]), so they score items and compute the next-item loss identically.

    The public methods take the history columns as keywords (`score_next_items(**history.model_inputs())`);
    inside, they travel as one [`History`], and `run_backbone` is the one place that hands them to
    `self.model`.
    """

    def run_backbone(
        self,
        history: History,
        output_hidden_states: bool = False,
        last_position_only: bool = False,
        query_positions: torch.LongTensor | None = None,
    ) -> HSTUModelOutput:
        """The backbone's [`HSTUModel.forward`] on `history`: every head reaches its backbone through here."""
        return self.model(
            **history.model_inputs(),
            output_hidden_states=output_hidden_states,
            last_position_only=last_position_only,
            query_positions=query_positions,
        )

    def _check_items(self, item_ids: torch.Tensor, name: str) -> None:
        """`ValueError` naming argument `name` unless `item_ids` are indices into the item table (0 = padding)."""
        if item_ids.numel() and (int(item_ids.min()) < 0 or int(item_ids.max()) > self.config.num_items):
            raise ValueError(
                f"{name} must hold item indices in 0..{self.config.num_items} (0 = padding), got "
                f"{int(item_ids.min())}..{int(item_ids.max())}."
            )

    def normalized_item_embeddings(self) -> torch.Tensor:
        """(V + 1, d) L2-normalised item table (row 0, padding, is all zeros)."""
        return F.normalize(self.model.item_embeddings.weight, dim=-1, eps=self.config.l2_norm_eps)

    def user_embeddings(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(..., d) hidden states -> (..., d) L2-normalised user vectors."""
        return F.normalize(hidden_states, dim=-1, eps=self.config.l2_norm_eps)

    def item_logits(
        self,
        user_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """Scores of every item: (..., d) normalised user vectors -> (..., V + 1), padding column -inf.

        `item_embeddings` is the (V + 1, d) normalised table when the caller already holds it (serving
        normalises it once per call, not once per chunk); by default it is computed here. `temperature` is τ of
        cosine / τ (default: `config.similarity_temperature`).
        """
        if item_embeddings is None:
            item_embeddings = self.normalized_item_embeddings()
        if temperature is None:
            temperature = self.config.similarity_temperature
        if torch.compiler.is_compiling():  # the graph compiler fuses the plain ops itself
            return masked_catalogue_scores(user_embeddings, item_embeddings, temperature)
        return _CatalogueScores.apply(user_embeddings, item_embeddings, temperature)

    def item_logits_float32(self, user_embeddings: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """`item_logits` in float32 with autocast off: (..., d) user vectors -> (..., V + 1) float32 scores.

        What policy log-probabilities are computed from: under bf16 autocast the scores (up to ±1/τ) would carry an
        error of ~0.1, which is noise on log-probability ratios.
        """
        with torch.autocast(device_type=user_embeddings.device.type, enabled=False):
            return self.item_logits(user_embeddings.float(), temperature=temperature).float()

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

    def last_user_embeddings(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B, d) normalised user vector at each history's last real position."""
        return self._last_user_embeddings(History(item_ids, attention_mask, timestamps, query_timestamps))

    def _last_user_embeddings(self, history: History) -> torch.Tensor:
        hidden = self.run_backbone(history, last_position_only=True).last_hidden_state  # (B, 1, d)
        return self.user_embeddings(hidden[:, 0].float())  # (B, d)


class HSTUForNextItemPrediction(HSTUItemScoringMixin, HSTUPreTrainedModel):
    """HSTU with next-item scoring against the tied, L2-normalised item embeddings (cosine / temperature)."""

    def __init__(self, config: HSTUConfig):
        super().__init__(config)
        self.model = HSTUModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.item_embeddings = value

    def forward(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        output_logits: bool = False,
        output_hidden_states: bool = False,
        logits_mask: torch.BoolTensor | None = None,
        logits_temperature: float | None = None,
        logits_labels: torch.LongTensor | None = None,
    ) -> NextItemPredictionOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The next item at each position; 0 means "no target here". When given, the loss is the
                configured next-item loss averaged over the positions with a target.
            output_logits (`bool`, *optional*, defaults to `False`):
                Also return the (batch_size, sequence_length, num_items + 1) scores.
            logits_mask (`torch.BoolTensor` of shape `(batch_size, sequence_length)`, *optional*):
                Score the whole catalogue only at the True positions: `logits` is then (P, num_items + 1) float32
                (P True positions, in the order of `tensor[logits_mask]`), computed with autocast off (under bf16
                autocast the scores, up to ±1/τ, would carry an error of ~0.1). Trainers get item scores this
                way so that they come from inside the forward, where FSDP / ZeRO-3 gather a sharded item table.
            logits_temperature (`float`, *optional*):
                τ of the scores at `logits_mask`, cosine / τ (default: `config.similarity_temperature`; 1.0
                gives the cosines, column 0 still -inf).
            logits_labels (`torch.LongTensor` of shape `(P,)`, *optional*):
                One item per `logits_mask` position: return its log-probability under the softmax of those scores
                (`label_log_probs`, float32) instead of the scores, without building the (P, num_items + 1) matrix.
                A training loss (SFT, reward-weighted BC, A-SFT): under autocast its score matmuls run in the autocast
                dtype, as the next-item losses' do (`catalogue_label_log_probs`).

        Other arguments are those of [`HSTUModel.forward`].
        """
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        outputs = self.run_backbone(history, output_hidden_states=output_hidden_states)
        user_embeddings = self.user_embeddings(outputs.last_hidden_state)  # (B, N, d)

        loss = None
        if labels is not None:
            supervised = labels > 0  # (B, N)
            loss = self.next_item_loss(user_embeddings[supervised], labels[supervised])  # over P positions

        if logits_mask is not None and output_logits:
            raise ValueError("pass output_logits=True (scores at every position) or logits_mask (scores at the "
                             "masked positions), not both; drop output_logits to score only the masked positions.")
        logits = self.item_logits(user_embeddings) if output_logits else None
        if logits_labels is not None and logits_mask is None:
            raise ValueError("logits_labels needs logits_mask (the positions its items belong to); pass both.")
        label_log_probs = None
        if logits_labels is not None:
            temperature = self.config.similarity_temperature if logits_temperature is None else logits_temperature
            label_log_probs = catalogue_label_log_probs(
                user_embeddings[logits_mask], self.normalized_item_embeddings(), logits_labels, temperature
            )  # (P,)
        elif logits_mask is not None:
            logits = self.item_logits_float32(user_embeddings[logits_mask], logits_temperature)  # (P, V + 1)
        return NextItemPredictionOutput(
            loss=loss,
            logits=logits,
            user_embeddings=user_embeddings,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            label_log_probs=label_log_probs,
        )

    def score_next_items(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        item_embeddings: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, V + 1) scores of every item as the next one after each history (padding column -inf).

        `item_embeddings`: the normalised (V + 1, d) item table, if already computed (see `item_logits`).
        """
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        return self._score_next_items(history, item_embeddings)

    def _score_next_items(self, history: History, item_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        user = self._last_user_embeddings(history)  # (B, d)
        # Rankings are read off these scores: compute them in fp32 even under bf16 autocast (ties otherwise).
        with torch.autocast(device_type=user.device.type, enabled=False):
            return self.item_logits(user, item_embeddings)

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
        chunk_size: int = 512,
    ) -> RecommendationOutput:
        """Top-k next items for each history, over the full catalogue.

        Args:
            item_ids: (B, N) histories, right-padded with 0 (at most `max_position_embeddings` long).
            k: how many items to return (at most `num_items`).
            exclude_item_ids: (B, H) more item indices to exclude per row (0 = padding), e.g. the full
                history when `item_ids` holds only its most recent window.
            exclude_history: remove the items of `item_ids` from the candidates.
            chunk_size: histories scored at once; larger batches are processed in chunks so memory stays
                bounded (the results do not depend on it).

        Returns:
            [`RecommendationOutput`] with (B, k) item indices (best first) and scores.

        Raises:
            ValueError: `k` is not an integer >= 1; an index is not an integer in 0..num_items; a history is
                left-padded or has padding between its events; times are not integers >= 0; a row is empty.
        """
        k = check_top_k(k)
        if item_ids.dim() != 2 or item_ids.shape[1] == 0:
            raise ValueError(f"item_ids must be a (batch, length) tensor with length >= 1, got shape {tuple(item_ids.shape)}.")
        k = min(k, self.config.num_items)
        history, exclude_item_ids = self._checked_recommend_inputs(
            History(item_ids, attention_mask, timestamps, query_timestamps), exclude_item_ids
        )
        attention_mask = history.attention_mask  # (B, N)
        if (attention_mask.sum(dim=1) == 0).any():
            empty = (attention_mask.sum(dim=1) == 0).nonzero()[:, 0].tolist()
            raise ValueError(f"rows {empty[:10]} have an empty history; recommend needs at least one event per row.")
        positions = torch.arange(1, item_ids.shape[1] + 1, device=item_ids.device)
        extents = ((attention_mask > 0) * positions).amax(dim=1)  # (B,) last real position + 1
        # Chunks of similar length, each cropped to its longest history: the attention normaliser is the fixed
        # max_position_embeddings and the mask is causal, so dropping trailing padding changes no score, and a
        # chunk of short histories no longer pays for the longest one in the batch.
        order = torch.argsort(extents, stable=True)  # (B,)
        with torch.autocast(device_type=item_ids.device.type, enabled=False):
            item_embeddings = self.normalized_item_embeddings().float()  # (V + 1, d), once for every chunk
        top_scores, top_items = [], []
        for start in range(0, item_ids.shape[0], chunk_size):  # bounded memory for large batches
            rows = order[start : start + chunk_size]
            chunk = history.crop(int(extents[rows].max())).select(rows)  # (b, width)
            scores = self._score_next_items(chunk, item_embeddings)  # (b, V + 1)
            if exclude_history:
                scores.scatter_(1, chunk.item_ids, float("-inf"))
            if exclude_item_ids is not None:
                scores.scatter_(1, exclude_item_ids[rows].to(scores.device), float("-inf"))
            chunk_scores, chunk_items = scores.topk(k, dim=-1)  # (b, k)
            top_scores.append(chunk_scores)
            top_items.append(chunk_items)
        restore = torch.argsort(order)  # back to the caller's row order
        return RecommendationOutput(item_ids=torch.cat(top_items)[restore], scores=torch.cat(top_scores)[restore])

    def _checked_recommend_inputs(
        self, history: History, exclude_item_ids: torch.Tensor | None
    ) -> tuple[History, torch.Tensor | None]:
        """`history` and `exclude_item_ids` as int64 tensors, checked for what `recommend` assumes: item indices
        in 0..num_items, right padding, times >= 0. `ValueError` naming the argument otherwise, instead of a
        torch indexing error or (for left padding) a silently wrong ranking."""
        item_ids = _integer_tensor(history.item_ids, "item_ids")
        self._check_items(item_ids, "item_ids")
        mask = history.attention_mask  # (B, N)
        if ((mask != 0) & (mask != 1)).any():
            raise ValueError("attention_mask must hold only 0 (padding) and 1 (real event).")
        gaps = (mask[:, 1:] != 0) & (mask[:, :-1] == 0)  # (B, N - 1): a real event after padding
        real_padding = (mask != 0) & (item_ids == 0)  # (B, N): the padding index at a real position
        bad_rows = gaps.any(dim=1) | real_padding.any(dim=1)  # (B,)
        if bad_rows.any():
            row = int(bad_rows.nonzero()[0])
            raise ValueError(
                f"history {row} has padding (item 0 or attention_mask 0) before or between its events: recommend "
                "reads right-padded histories. Fix: put each history's items first, oldest first, and the 0 padding "
                "after them (SequenceCollator does this); left padding is not supported."
            )
        times = {}
        for name in ("timestamps", "query_timestamps"):
            value = getattr(history, name)
            if value is not None:
                times[name] = _integer_tensor(value, name)
                if value.numel() and int(times[name].min()) < 0:
                    raise ValueError(f"{name} must be seconds >= 0, got {int(times[name].min())}.")
        if exclude_item_ids is not None:
            exclude_item_ids = _integer_tensor(exclude_item_ids, "exclude_item_ids")
            if exclude_item_ids.dim() != 2 or exclude_item_ids.shape[0] != item_ids.shape[0]:
                raise ValueError(
                    f"exclude_item_ids must be (batch, H) with one row per history ({item_ids.shape[0]}), got "
                    f"shape {tuple(exclude_item_ids.shape)}."
                )
            self._check_items(exclude_item_ids, "exclude_item_ids")
        return history.replace(item_ids=item_ids, **times), exclude_item_ids


class HSTURegressionHidden(nn.Linear):
    """The hidden layer of an `HSTURegressionHead`. Its own type for `_init_weights`."""


class HSTURegressionOutput(nn.Linear):
    """The scalar output layer of an `HSTURegressionHead`. Its own type for `_init_weights`: its bias
    starts at the middle of the rating scale."""


class HSTURegressionHead(nn.Module):
    """A shallow MLP regressing one scalar per row: Linear -> SiLU -> Linear.

    It runs in fp32 even under bf16 autocast: it is tiny, and bf16 resolves ratings near 4 only to 1/64.
    """

    def __init__(self, in_features: int, config: HSTUConfig):
        super().__init__()
        self.dense = HSTURegressionHidden(in_features, config.reward_head_hidden_size)
        self.out_proj = HSTURegressionOutput(config.reward_head_hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (...)"""
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self.out_proj(F.silu(self.dense(features.float()))).squeeze(-1)


@dataclass
class RewardModelOutput(ModelOutput):
    """
    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            `reward_loss + value_loss_weight * value_loss + next_item_loss_weight * next_item_loss`, when
            `labels` and `label_ratings` are passed.
        rewards (`torch.FloatTensor` of shape `(batch_size, sequence_length)`, *optional*):
            Predicted reward of the labelled next item at each position (unclamped), when `labels` are passed.
        values (`torch.FloatTensor` of shape `(batch_size, sequence_length)`):
            Predicted E[r | history up to the position] (unclamped).
        reward_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The reward head's `reward_loss_type` loss over the positions with a label.
        value_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The value head's MSE over the same positions.
        next_item_loss (`torch.FloatTensor` of shape `()`, *optional*):
            The next-item loss, only when `next_item_loss_weight > 0`.
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, sequence_length, hidden_size)`):
            Backbone output before normalisation.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Every layer's output, when `output_hidden_states=True`.
    """

    loss: torch.FloatTensor | None = None
    rewards: torch.FloatTensor | None = None
    values: torch.FloatTensor | None = None
    reward_loss: torch.FloatTensor | None = None
    value_loss: torch.FloatTensor | None = None
    next_item_loss: torch.FloatTensor | None = None
    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class HSTUForRewardModeling(HSTUItemScoringMixin, HSTUPreTrainedModel):
    """HSTU with a shallow reward head and a value head (the Netflix post's "shallow reward head on top of
    the generative recommender").

    - reward r(x_t, y) = MLP([u_t ; e_y ; u_t ⊙ e_y]): u_t is the user vector after the history up to
      position t, e_y the embedding of the item y chosen next (both L2-normalised as in next-item
      scoring, then scaled by sqrt(d) so their entries are O(1)); a scalar on the data's scale.
    - value V(x_t) = MLP(u_t): regresses the observed reward without seeing the item, so it estimates
      E[r | x] under the logging policy (A-SFT's `value` baseline, PPO's critic).

    The backbone is `self.model`, as in [`HSTUForNextItemPrediction`], so `from_pretrained` on a
    pretrained next-item checkpoint loads its backbone and initialises the two heads.

    Example:

    ```python
    >>> from hf_genrec import HSTUForRewardModeling
    >>> model = HSTUForRewardModeling.from_pretrained("runs/ml1m-hstu")  # heads are new, backbone loaded
    >>> rewards = model.score_candidates(item_ids, attention_mask, timestamps, query_timestamps, candidates)
    ```
    """

    def __init__(self, config: HSTUConfig):
        super().__init__(config)
        self.model = HSTUModel(config)
        self.reward_head = HSTURegressionHead(3 * config.hidden_size, config)
        self.value_head = HSTURegressionHead(config.hidden_size, config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.item_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.item_embeddings = value

    def freeze_backbone(self) -> HSTUForRewardModeling:
        """Stop gradients into the backbone (item table included): only the two heads train."""
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        return self

    def reward_features(self, user_embeddings: torch.Tensor, item_embeddings: torch.Tensor) -> torch.Tensor:
        """(..., d) normalised user and item vectors -> (..., 3d) input of the reward head."""
        scale = math.sqrt(self.config.hidden_size)  # unit vectors have entries ~ 1/sqrt(d)
        user, item = user_embeddings * scale, item_embeddings * scale
        return torch.cat([user, item, user * item], dim=-1)  # (..., 3d)

    def _clamp(self, rewards: torch.Tensor) -> torch.Tensor:
        return rewards.clamp(self.config.reward_min, self.config.reward_max)

    def forward(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        label_ratings: torch.FloatTensor | None = None,
        output_hidden_states: bool = False,
    ) -> RewardModelOutput:
        r"""
        Args:
            labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The item chosen after each position; 0 means "no target here". When given, `rewards` holds
                the reward head's prediction for it.
            label_ratings (`torch.FloatTensor` of shape `(batch_size, sequence_length)`, *optional*):
                The observed reward of each labelled item. With `labels`, the loss is computed over the
                positions whose label is not 0.

        Other arguments are those of [`HSTUModel.forward`].
        """
        if label_ratings is not None and labels is None:
            raise ValueError("label_ratings were passed without labels; pass the labelled items too.")
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        outputs = self.run_backbone(history, output_hidden_states=output_hidden_states)
        user_embeddings = self.user_embeddings(outputs.last_hidden_state)  # (B, N, d)
        values = self.values_from_user_embeddings(user_embeddings, clamp=False)  # (B, N)

        rewards = None
        if labels is not None:
            self._check_items(labels, "labels")
            # (B, N): the item after each position (padding's item vector is zeros)
            rewards = self.rewards_from_user_embeddings(user_embeddings, labels[..., None], clamp=False)[..., 0]

        loss = reward_loss = value_loss = next_item_loss = None
        if label_ratings is not None:
            supervised = labels > 0  # (B, N)
            targets = label_ratings[supervised].float()  # (P,)
            check_finite_rewards(targets, "label_ratings")
            reward_loss = reward_regression_loss(
                rewards[supervised], targets, self.config.reward_loss_type, self.config.huber_delta
            )
            value_loss = reward_regression_loss(values[supervised], targets, "mse")
            loss = reward_loss + self.config.value_loss_weight * value_loss
            if self.config.next_item_loss_weight > 0:
                next_item_loss = self.next_item_loss(user_embeddings[supervised], labels[supervised])
                loss = loss + self.config.next_item_loss_weight * next_item_loss

        return RewardModelOutput(
            loss=loss,
            rewards=rewards,
            values=values,
            reward_loss=reward_loss,
            value_loss=value_loss,
            next_item_loss=next_item_loss,
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
        )

    def score_candidates(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        candidate_item_ids: torch.LongTensor | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """Rewards of C candidate next items after each history: one backbone pass, then the head on all C.

        Args:
            item_ids: (B, N) histories, right-padded with 0.
            query_timestamps: (B, N); at the last real position, the time of the event being scored.
            candidate_item_ids: (B, C) item indices (0 = padding; its score means nothing).
            clamp: clamp to [`reward_min`, `reward_max`].

        Returns:
            (B, C) predicted rewards.
        """
        if candidate_item_ids is None:
            raise ValueError("score_candidates needs candidate_item_ids of shape (batch_size, num_candidates).")
        if candidate_item_ids.dim() != 2 or candidate_item_ids.shape[0] != item_ids.shape[0]:
            raise ValueError(
                f"candidate_item_ids must be (batch_size={item_ids.shape[0]}, num_candidates), got "
                f"{tuple(candidate_item_ids.shape)}."
            )
        self._check_items(candidate_item_ids, "candidate_item_ids")
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        user = self._last_user_embeddings(history)  # (B, d)
        return self.rewards_from_user_embeddings(user, candidate_item_ids, clamp=clamp)  # (B, C)

    def position_user_embeddings(self, history: History, positions: torch.LongTensor | None = None) -> torch.Tensor:
        """(B, N, d) float32 normalised user vector after the history up to each position: all that the two
        heads read of a history (`rewards_from_user_embeddings`, `values_from_user_embeddings`). With `positions`
        (B, T), only those (the last layer computed there only): (B, T, d)."""
        hidden = self.run_backbone(history, query_positions=positions).last_hidden_state  # (B, N | T, d)
        return self.user_embeddings(hidden.float())

    def rewards_from_user_embeddings(
        self, user_embeddings: torch.Tensor, item_ids: torch.LongTensor, clamp: bool = True
    ) -> torch.Tensor:
        """Rewards of items after given user vectors: (..., d) user vectors and (..., C) item indices -> (..., C)
        (a user vector is shared by the C items that follow it)."""
        items = self.normalized_item_embeddings()[item_ids]  # (..., C, d)
        features = self.reward_features(user_embeddings[..., None, :].expand_as(items), items)  # (..., C, 3d)
        rewards = self.reward_head(features)  # (..., C)
        return self._clamp(rewards) if clamp else rewards

    def values_from_user_embeddings(self, user_embeddings: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Value estimates after given user vectors: (..., d) -> (...)."""
        values = self.value_head(user_embeddings * math.sqrt(self.config.hidden_size))  # (...)
        return self._clamp(values) if clamp else values

    def score_positions(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """(B, N) reward of the labelled next item at every position (0 where `labels` is 0)."""
        if labels is None:
            raise ValueError("score_positions needs labels: the item chosen after each position, 0 = none.")
        self._check_items(labels, "labels")
        user = self.position_user_embeddings(History(item_ids, attention_mask, timestamps, query_timestamps))
        rewards = self.rewards_from_user_embeddings(user, labels[..., None], clamp=clamp)[..., 0]  # (B, N)
        return rewards.masked_fill(labels == 0, 0.0)

    def value_positions(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """(B, N) value estimate E[r | history up to each position] (0 on padding)."""
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        values = self.values_from_user_embeddings(self.position_user_embeddings(history), clamp=clamp)  # (B, N)
        return values.masked_fill(history.attention_mask == 0, 0.0)

    def value_last(
        self,
        item_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        clamp: bool = True,
    ) -> torch.Tensor:
        """(B,) value estimate at each history's last real position (the request being served)."""
        history = History(item_ids, attention_mask, timestamps, query_timestamps)
        user = self._last_user_embeddings(history)  # (B, d)
        return self.values_from_user_embeddings(user, clamp=clamp)  # (B,)


__all__ = [
    "HSTUPreTrainedModel",
    "HSTUModel",
    "HSTUForNextItemPrediction",
    "HSTUForRewardModeling",
    "HSTUItemScoringMixin",
    "HSTURegressionHead",
    "HSTUModelOutput",
    "RewardModelOutput",
    "NextItemPredictionOutput",
    "RecommendationOutput",
    "HSTULayer",
    "HSTUItemEmbeddings",
    "HSTUPositionEmbeddings",
    "HSTUUVQKProjection",
    "HSTUOutputProjection",
    "HSTURegressionHidden",
    "HSTURegressionOutput",
    "HSTURelativeAttentionBias",
    "hstu_pointwise_attention",
    "time_bucket_indices",
]
