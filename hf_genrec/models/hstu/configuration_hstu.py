"""HSTU model configuration."""

from __future__ import annotations

import math

from transformers import PretrainedConfig

from ...losses.reward import REWARD_LOSS_TYPES

LOSS_TYPES = ("sampled_softmax", "full_softmax")

# Upper bounds of the size fields, checked when a config is built: an absurd or hostile `config.json`
# (`num_hidden_layers: 2000000`, `num_items: 5000000000`) is refused at once instead of hanging while millions of
# layers are built or trying to allocate a 160 GB table. Each bound is far above what one accelerator trains (the
# reference MovieLens models: 3,883 items, d = 50, 2 or 8 layers, 200 events).
SIZE_LIMITS: dict[str, int] = {
    # Above the public catalogues (Amazon Reviews 2023: about 48M items); at d = 50 such a table is 20 GB.
    "num_items": 100_000_000,
    "hidden_size": 16_384,  # the width of the largest open LLMs (Llama 3.1 405B); the reference uses 50
    "num_hidden_layers": 1_024,  # the reference trains 2 (HSTU) and 8 (HSTU-large)
    "num_attention_heads": 1_024,
    "attention_dim": 16_384,
    "linear_dim": 16_384,
    # Attention is materialised as (N, N) per head: N = 65,536 already takes 16 GiB per head and history (fp32).
    "max_seq_len": 65_536,
    "max_position_embeddings": 65_536,
    # ln(2**63) / 0.301 < 146, so a few hundred buckets cover any int64 time gap at the reference divisor.
    "num_time_buckets": 65_536,
    "num_negatives": 65_536,  # reference: 128
    "reward_head_hidden_size": 65_536,  # default: 64
}
# The sizes can each be in range while their product is not: bound the parameter count they imply together.
# 2**34 (about 17.2 billion, 64 GiB of float32 weights) is more than one 80-141 GB accelerator trains with Adam.
MAX_PARAMETERS = 2**34


class HSTUConfig(PretrainedConfig):
    r"""
    Configuration of an HSTU generative recommender (Zhai et al., "Actions Speak Louder than Words",
    ICML 2024), as computed by the reference code's public MovieLens experiments.

    Items are indices into an item vocabulary: 0 is padding and real items are 1..`num_items`.

    Every field is checked for its type and range when the config is built and again when a model is built;
    sizes have upper bounds (`SIZE_LIMITS`, and `MAX_PARAMETERS` for the parameter count they imply), so a
    corrupt or hostile `config.json` is refused before anything is allocated.

    Args:
        num_items (`int`, *optional*, defaults to 1000):
            Number of items in the catalogue (V). The embedding table has `num_items + 1` rows.
        hidden_size (`int`, *optional*, defaults to 50):
            Item-embedding and residual-stream width d. MovieLens-1M reference: 50.
        num_hidden_layers (`int`, *optional*, defaults to 2):
            Number of HSTU layers. Reference: 2 (HSTU), 8 (HSTU-large).
        num_attention_heads (`int`, *optional*, defaults to 1):
            Heads h per layer. Reference: 1 (HSTU), 2 (HSTU-large).
        attention_dim (`int`, *optional*, defaults to 50):
            Per-head query/key width dqk. Reference: 50 (HSTU), 25 (HSTU-large).
        linear_dim (`int`, *optional*, defaults to 50):
            Per-head value/gate width dv. Reference: 50 (HSTU), 25 (HSTU-large).
        max_seq_len (`int`, *optional*, defaults to 200):
            Longest history the model reads; longer histories keep their most recent events.
        max_position_embeddings (`int`, *optional*, defaults to 211):
            Padded length N of the reference code (history 200 + 11 output slots). It sizes the
            absolute-position table and the 2N-1 relative-position weights, and it is the attention
            normaliser: pointwise attention is divided by this constant, not by the batch's length,
            so cropping a batch to its longest sequence does not change the result.
        input_dropout (`float`, *optional*, defaults to 0.2):
            Dropout on the input embeddings.
        linear_dropout (`float`, *optional*, defaults to 0.2):
            Dropout before each layer's output projection.
        num_time_buckets (`int`, *optional*, defaults to 128):
            Time-delta buckets of the relative attention bias (the table has `num_time_buckets + 1`).
        time_bucket_divisor (`float`, *optional*, defaults to 0.301):
            Bucket = floor(ln(max(|dt|, 1)) / divisor), dt in seconds. 0.301 is the reference value
            (log10(2), applied to the natural log).
        use_time_bias (`bool`, *optional*, defaults to `True`):
            Add the time-bucket term of the relative attention bias when timestamps are given.
        use_position_bias (`bool`, *optional*, defaults to `True`):
            Add the relative-position term of the relative attention bias.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the parameter-free layer norms.
        l2_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the L2 normalisation of user and item vectors.
        similarity_temperature (`float`, *optional*, defaults to 0.05):
            Scores are cosine(user, item) / similarity_temperature (the reference's temperature). Not called
            `temperature` because transformers reserves that name for text generation.
        loss_type (`str`, *optional*, defaults to `"sampled_softmax"`):
            `"sampled_softmax"` (the positive against `num_negatives` uniform negatives per position)
            or `"full_softmax"` (cross-entropy over the whole catalogue).
        num_negatives (`int`, *optional*, defaults to 128):
            Uniform negatives per position for the sampled softmax. Reference: 128 on MovieLens.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Std of the normal initialisation of embeddings, projections and biases tables.
        reward_head_hidden_size (`int`, *optional*, defaults to 64):
            Width of the one hidden layer of the reward head (an MLP on [h_t ; e_item ; h_t * e_item]) and of
            the value head (an MLP on h_t). Used by [`HSTUForRewardModeling`] only.
        reward_min (`float`, *optional*, defaults to 1.0):
            Lowest reward of the data's scale (1 star on MovieLens). Reward predictions are clamped to
            [`reward_min`, `reward_max`] at inference; the training loss uses the unclamped outputs.
        reward_max (`float`, *optional*, defaults to 5.0):
            Highest reward of the data's scale (5 stars on MovieLens).
        reward_loss_type (`str`, *optional*, defaults to `"mse"`):
            Loss of the reward head: `"mse"` (squared error; the blog's choice) or `"huber"` (squared within
            `huber_delta` of the target, linear outside; less sensitive to outlying ratings). The value head
            is always trained with MSE, because E[r | x] is the minimiser of the squared error.
        huber_delta (`float`, *optional*, defaults to 1.0):
            Threshold of the Huber loss, in reward units. Ignored unless `reward_loss_type="huber"`.
        value_loss_weight (`float`, *optional*, defaults to 1.0):
            Weight of the value head's MSE in the reward model's loss (0 leaves the value head untrained).
        next_item_loss_weight (`float`, *optional*, defaults to 0.0):
            Weight of the next-item loss (`loss_type`) in the reward model's loss. 0 trains the reward and
            value heads only; > 0 co-trains them with next-item prediction, as the Netflix post does.

    Example:

    ```python
    >>> from hf_genrec import HSTUConfig, HSTUForNextItemPrediction
    >>> config = HSTUConfig(num_items=3883)  # the HSTU MovieLens-1M configuration
    >>> model = HSTUForNextItemPrediction(config)
    >>> model.config.num_hidden_layers
    2
    ```
    """

    model_type = "hstu"

    def __init__(
        self,
        num_items: int = 1000,
        hidden_size: int = 50,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 1,
        attention_dim: int = 50,
        linear_dim: int = 50,
        max_seq_len: int = 200,
        max_position_embeddings: int = 211,
        input_dropout: float = 0.2,
        linear_dropout: float = 0.2,
        num_time_buckets: int = 128,
        time_bucket_divisor: float = 0.301,
        use_time_bias: bool = True,
        use_position_bias: bool = True,
        layer_norm_eps: float = 1e-6,
        l2_norm_eps: float = 1e-6,
        similarity_temperature: float = 0.05,
        loss_type: str = "sampled_softmax",
        num_negatives: int = 128,
        initializer_range: float = 0.02,
        reward_head_hidden_size: int = 64,
        reward_min: float = 1.0,
        reward_max: float = 5.0,
        reward_loss_type: str = "mse",
        huber_delta: float = 1.0,
        value_loss_weight: float = 1.0,
        next_item_loss_weight: float = 0.0,
        pad_token_id: int = 0,
        **kwargs,
    ):
        self.num_items = num_items
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.attention_dim = attention_dim
        self.linear_dim = linear_dim
        self.max_seq_len = max_seq_len
        self.max_position_embeddings = max_position_embeddings
        self.input_dropout = input_dropout
        self.linear_dropout = linear_dropout
        self.num_time_buckets = num_time_buckets
        self.time_bucket_divisor = time_bucket_divisor
        self.use_time_bias = use_time_bias
        self.use_position_bias = use_position_bias
        self.layer_norm_eps = layer_norm_eps
        self.l2_norm_eps = l2_norm_eps
        self.similarity_temperature = similarity_temperature
        self.loss_type = loss_type
        self.num_negatives = num_negatives
        self.initializer_range = initializer_range
        self.reward_head_hidden_size = reward_head_hidden_size
        self.reward_min = reward_min
        self.reward_max = reward_max
        self.reward_loss_type = reward_loss_type
        self.huber_delta = huber_delta
        self.value_loss_weight = value_loss_weight
        self.next_item_loss_weight = next_item_loss_weight
        kwargs.setdefault("tie_word_embeddings", True)
        super().__init__(pad_token_id=pad_token_id, **kwargs)
        self.validate_hstu()

    @property
    def vocab_size(self) -> int:
        """Rows of the item-embedding table: the catalogue plus the padding index 0."""
        return self.num_items + 1

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        # `PreTrainedModel.resize_token_embeddings` writes the new row count here; the catalogue is one row less.
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(
                f"vocab_size must be an integer >= 2 (the padding row plus at least one item), got {value!r}; "
                "resize to num_items + 1 rows."
            )
        self.num_items = value - 1
        self.validate_hstu()

    def approximate_num_parameters(self) -> int:
        """Parameters of the backbone these sizes imply (item and position tables, then every layer), from the
        config alone: what `validate_hstu` bounds before a model is built. The small reward heads are left out."""
        d, heads = self.hidden_size, self.num_attention_heads
        per_layer = (
            d * heads * (2 * self.linear_dim + 2 * self.attention_dim)  # fused U/V/Q/K projection
            + heads * self.linear_dim * d + d  # output projection and its bias
            + 2 * self.max_position_embeddings - 1 + self.num_time_buckets + 1  # relative attention bias
        )
        return (self.vocab_size + self.max_position_embeddings) * d + self.num_hidden_layers * per_layer

    def validate_hstu(self) -> None:
        """Raise `ValueError` naming the field, its value and the allowed range when values cannot work together.

        Types and upper bounds are checked first, so an absurd `config.json` is refused before anything is
        allocated; every model checks its config again when it is built.
        """
        self._validate_sizes()
        if self.max_position_embeddings < self.max_seq_len:
            raise ValueError(
                f"HSTUConfig.max_position_embeddings ({self.max_position_embeddings}) must be at least "
                f"max_seq_len ({self.max_seq_len}); the reference uses max_seq_len + 11."
            )
        for name in ("input_dropout", "linear_dropout"):
            self._check_number(name, 0.0, 1.0, high_open=True)
        for name in ("similarity_temperature", "time_bucket_divisor", "layer_norm_eps", "l2_norm_eps", "initializer_range"):
            self._check_number(name, 0.0, low_open=True)
        for name in ("use_time_bias", "use_position_bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"HSTUConfig.{name} must be true or false, got {getattr(self, name)!r}.")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"HSTUConfig.loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.loss_type == "sampled_softmax" and self.num_negatives < 1:
            raise ValueError(
                f"HSTUConfig.num_negatives must be a positive integer for the sampled softmax, got "
                f"{self.num_negatives!r}; use loss_type='full_softmax' to train without negatives."
            )
        self.validate_reward_head()
        if self.pad_token_id != 0:
            raise ValueError(f"HSTUConfig.pad_token_id must be 0 (the vocabulary's padding index), got {self.pad_token_id}.")

    def _validate_sizes(self) -> None:
        for name, limit in SIZE_LIMITS.items():
            value = getattr(self, name)
            # num_negatives is unused by the full softmax, where 0 is allowed.
            low = 0 if name == "num_negatives" else 1
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= limit:
                raise ValueError(
                    f"HSTUConfig.{name} must be an integer in {low}..{limit:,}, got {value!r}. Fix the value in the "
                    "config (a config.json with a value out of this range is corrupt or not an HSTU config)."
                )
        parameters = self.approximate_num_parameters()
        if parameters > MAX_PARAMETERS:
            raise ValueError(
                f"HSTUConfig sizes imply about {parameters:,} parameters (num_items={self.num_items}, hidden_size="
                f"{self.hidden_size}, num_hidden_layers={self.num_hidden_layers}, ...), above the limit of "
                f"{MAX_PARAMETERS:,} (64 GiB of float32 weights). Fix: reduce num_items, hidden_size or num_hidden_layers."
            )

    def _check_number(
        self, name: str, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = False
    ) -> None:
        """Raise `ValueError` unless field `name` is a finite real number in the interval from `low` to `high`."""
        value = getattr(self, name)
        number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        if not (number and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)):
            opening = "(" if low_open or low == -math.inf else "["
            interval = f"{opening}{low:g}, {high:g}{')' if high_open or high == math.inf else ']'}"
            raise ValueError(f"HSTUConfig.{name} must be a finite number in {interval}, got {value!r}.")

    def validate_reward_head(self) -> None:
        """Raise `ValueError` naming the field when the reward-model settings cannot work."""
        for name in ("reward_min", "reward_max"):
            self._check_number(name, -math.inf)
        if not self.reward_min < self.reward_max:
            raise ValueError(
                f"HSTUConfig.reward_min ({self.reward_min!r}) must be below reward_max ({self.reward_max!r}); "
                "set them to the data's rating scale (MovieLens: 1.0 and 5.0)."
            )
        if self.reward_loss_type not in REWARD_LOSS_TYPES:
            raise ValueError(
                f"HSTUConfig.reward_loss_type must be one of {REWARD_LOSS_TYPES}, got {self.reward_loss_type!r}."
            )
        self._check_number("huber_delta", 0.0, low_open=True)
        for name in ("value_loss_weight", "next_item_loss_weight"):
            self._check_number(name, 0.0)


__all__ = ["HSTUConfig", "LOSS_TYPES", "MAX_PARAMETERS", "REWARD_LOSS_TYPES", "SIZE_LIMITS"]
