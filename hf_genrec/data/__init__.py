"""The data pipeline: interaction files -> sequences -> splits -> batches, plus the item vocabulary.

One function per step, each taking and returning a `Dataset` or a batch:

```python
>>> from hf_genrec.data import read_movielens, build_sequences, split_sequences, SequenceCollator
>>> interactions = read_movielens("ml-1m/ratings.dat")
>>> sequences, vocabulary = build_sequences(interactions)
>>> splits = split_sequences(sequences, "leave-one-out")
>>> batch = SequenceCollator(max_seq_len=200)([splits["train"][0], splits["train"][1]])
```
"""

from .collator import SequenceCollator
from .columns import (
    ATTENTION_MASK,
    HISTORY_ITEM_IDS,
    HISTORY_REWARD_SUMS,
    ITEM_IDS,
    LABEL_RATINGS,
    LABELS,
    QUERY_TIMESTAMPS,
    RATINGS,
    TARGET_ITEM_ID,
    TARGET_ITEM_IDS,
    TARGET_RATING,
    TARGET_RATINGS,
    TARGET_TIMESTAMP,
    TARGET_TIMESTAMPS,
    TIMESTAMPS,
    USER_ID,
)
from .errors import DataFormatError, UnknownItemError
from .history import HISTORY_FIELDS, History, query_timestamps
from .interactions import Interactions
from .loaders import read_delimited, read_movielens, read_movielens_catalog
from .sequences import DUPLICATE_POLICIES, SEQUENCE_FEATURES, build_sequences
from .splits import (
    EVALUATION_FEATURES,
    FUTURE_EVALUATION_FEATURES,
    SPLITS,
    future_split,
    leave_one_out_split,
    split_sequences,
    temporal_split,
)
from .streaming import LengthBucketedStream, stream_split
from .synthetic import generate_synthetic_interactions, write_movielens_file
from .vocabulary import PAD_INDEX, VOCABULARY_FILE, ItemVocabulary

__all__ = [
    # vocabulary
    "ItemVocabulary",
    "PAD_INDEX",
    "VOCABULARY_FILE",
    # interactions and loaders
    "Interactions",
    "read_movielens",
    "read_movielens_catalog",
    "read_delimited",
    # sequences and splits
    "SEQUENCE_FEATURES",
    "EVALUATION_FEATURES",
    "FUTURE_EVALUATION_FEATURES",
    "DUPLICATE_POLICIES",
    "build_sequences",
    "SPLITS",
    "leave_one_out_split",
    "temporal_split",
    "future_split",
    "split_sequences",
    # batches
    "SequenceCollator",
    "History",
    "HISTORY_FIELDS",
    "query_timestamps",
    # streamed training
    "stream_split",
    "LengthBucketedStream",
    # embedded synthetic data
    "generate_synthetic_interactions",
    "write_movielens_file",
    # errors
    "DataFormatError",
    "UnknownItemError",
    # column names and batch keys
    "USER_ID",
    "ITEM_IDS",
    "RATINGS",
    "TIMESTAMPS",
    "TARGET_ITEM_ID",
    "TARGET_RATING",
    "TARGET_TIMESTAMP",
    "ATTENTION_MASK",
    "QUERY_TIMESTAMPS",
    "LABELS",
    "LABEL_RATINGS",
    "TARGET_ITEM_IDS",
    "TARGET_RATINGS",
    "TARGET_TIMESTAMPS",
    "HISTORY_ITEM_IDS",
    "HISTORY_REWARD_SUMS",
]
