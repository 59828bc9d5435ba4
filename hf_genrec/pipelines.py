"""`Recommender`: raw item ids in, raw item ids out. A saved model plus its item vocabulary, for serving.

```python
>>> from hf_genrec.pipelines import Recommender
>>> recommender = Recommender.from_pretrained("runs/quickstart/hstu")  # a directory or a Hub repo id
>>> recommender.recommend([[1193, 661, 914], [3408]], k=5)
[[2355, 1197, 1287, 2804, 594], [2858, 1196, 260, 1210, 480]]
```
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch

from .data import PAD_INDEX, History, ItemVocabulary, UnknownItemError
from .models import AutoModelForNextItemPrediction
from .models.hstu.modeling_hstu import check_top_k

RawId = int | str
# Values a caller may use to pad a history; named in the error when they are not items of the vocabulary.
_PADDING_LIKE = (0, None, "", "0")
_MAX_SECONDS = 2**63 - 1  # int64, the dtype of the model's time inputs


def _seconds(value: object, name: str) -> int:
    """A time in seconds as an `int`: `ValueError` naming `name` unless it is a whole number in 0..2**63 - 1.

    Fractions are refused rather than truncated, and the range keeps every time difference the model takes
    within int64 (times past it would otherwise fail inside torch or wrap around).
    """
    if isinstance(value, torch.Tensor | np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= _MAX_SECONDS:
        raise ValueError(
            f"{name} must be a whole number of seconds in 0..2**63 - 1 (a Unix time), got {value!r}; convert "
            "times to integer seconds before calling recommend."
        )
    return int(value)


class Recommender:
    """Top-k next items for raw-id histories, over the full catalogue, items already seen excluded.

    Each history is encoded with the vocabulary saved beside the model, cut to its most recent
    `max_seq_len` events (the model's input window; the whole history is still excluded from the
    recommendations), batched, scored, and decoded back to raw ids.

    Args:
        model: a next-item model (`HSTUForNextItemPrediction`), in eval mode on its device.
        vocabulary: the `ItemVocabulary` the model was trained with; by default the model's own
            `model.item_vocabulary` (set by `from_pretrained` from the `item_vocabulary.json` beside the weights).
            It becomes `model.item_vocabulary`, so `model.save_pretrained` / `model.push_to_hub` then carry it.
        batch_size: histories scored per forward pass (bounds the (batch, num_items) score memory).
    """

    def __init__(self, model, vocabulary: ItemVocabulary | None = None, batch_size: int = 256):
        if vocabulary is None:
            vocabulary = getattr(model, "item_vocabulary", None)
            if vocabulary is None:
                raise ValueError(
                    "vocabulary is None and the model has no item_vocabulary; pass the ItemVocabulary it was "
                    "trained with (ItemVocabulary.from_pretrained(run_dir)) or load the model from a folder or repo "
                    "that holds item_vocabulary.json."
                )
        if model.config.num_items != vocabulary.num_items:
            raise ValueError(
                f"The model scores {model.config.num_items} items but the vocabulary has {vocabulary.num_items}. "
                "Fix: load the item_vocabulary.json saved beside this model."
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1 (histories per forward pass), got {batch_size!r}.")
        self.model = model.eval()
        self.vocabulary = vocabulary
        model.item_vocabulary = vocabulary  # the model now knows its catalogue: saving it keeps the two together
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        subfolder: str | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 256,
    ) -> Recommender:
        """Load the model and its `item_vocabulary.json` from a run directory or a Hub repo id.

        `revision`, `token`, `cache_dir` and `subfolder` locate both files, as in `from_pretrained`.
        """
        hub_kwargs = {"revision": revision, "token": token, "cache_dir": cache_dir, "subfolder": subfolder}
        hub_kwargs = {name: value for name, value in hub_kwargs.items() if value is not None}
        model = AutoModelForNextItemPrediction.from_pretrained(path_or_repo_id, **hub_kwargs)
        vocabulary = model.item_vocabulary
        if vocabulary is None:  # none beside the weights: this raises the error that says what is missing
            vocabulary = ItemVocabulary.from_pretrained(path_or_repo_id, **hub_kwargs)
        if device is not None:
            model = model.to(device)
        return cls(model, vocabulary, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _encode(self, histories, timestamps, request_timestamps) -> list[tuple[list[int], list[int] | None, int | None]]:
        if isinstance(histories, str | bytes) or not isinstance(histories, Sequence):
            raise ValueError(f"histories must be a list of histories (lists of item ids), got {type(histories).__name__}.")
        first = histories[0] if len(histories) else []
        if isinstance(first, str | bytes) or not isinstance(first, Sequence | torch.Tensor | np.ndarray):
            raise ValueError(
                "histories must be a list of histories, each a list of item ids; got a flat list. "
                "Fix: wrap a single history in a list: recommend([history])."
            )
        if request_timestamps is not None and timestamps is None:
            raise ValueError("request_timestamps needs the events' timestamps too; pass timestamps=.")
        for name, values in (("timestamps", timestamps), ("request_timestamps", request_timestamps)):
            if values is not None and len(values) != len(histories):
                raise ValueError(f"{name} has {len(values)} entries for {len(histories)} histories; pass one per history.")
        encoded = []
        for i, history in enumerate(histories):
            history = list(history)
            if not history:
                raise ValueError(
                    f"history {i} is empty: a recommendation needs at least one past item. Fix: use a "
                    "most-popular list for users without history (hf_genrec.evaluation.MostPopularRecommender)."
                )
            try:
                indices = self.vocabulary.encode(history)
            except UnknownItemError as error:
                hint = ""
                if isinstance(error.item_id, int | str | None) and error.item_id in _PADDING_LIKE:
                    hint = " Histories are unpadded lists of any length: if this is padding, remove it."
                raise UnknownItemError(f"history {i}: {error}{hint}", item_id=error.item_id) from None
            times = None
            if timestamps is not None:
                times = [_seconds(t, f"timestamps[{i}][{j}]") for j, t in enumerate(timestamps[i])]
                if len(times) != len(history):
                    raise ValueError(
                        f"history {i} has {len(history)} items but {len(times)} timestamps; pass one time per item."
                    )
            request = None
            if request_timestamps is not None:
                request = _seconds(request_timestamps[i], f"request_timestamps[{i}]")
            encoded.append((indices, times, request))
        return encoded

    @torch.no_grad()
    def recommend(
        self,
        histories: Sequence[Sequence[RawId]],
        k: int = 10,
        timestamps: Sequence[Sequence[int]] | None = None,
        request_timestamps: Sequence[int] | None = None,
    ) -> list[list[RawId]]:
        """Top-k raw item ids for each history, best first.

        Args:
            histories: one list of raw item ids per user, oldest first (as in the training data).
            k: items per user. Fewer come back when fewer than k unseen items are left.
            timestamps: optional event times (seconds), aligned with `histories`; without them the model
                skips its time features (train and serve the same way).
            request_timestamps: optional time of each request (seconds), the "when" of the next event;
                defaults to the last event's time.

        Raises:
            UnknownItemError: an item is not in the vocabulary (the message names the history); padding values
                (0, None, "") are items too, so histories must not be padded.
            ValueError: `k` not an integer >= 1, an empty history, a flat list instead of a list of histories,
                misaligned times, or a time that is not a whole number of seconds in 0..2**63 - 1.
        """
        k = check_top_k(k)
        encoded = self._encode(histories, timestamps, request_timestamps)
        window = self.model.config.max_seq_len
        results: list[list[RawId]] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            length = max(min(len(items), window) for items, _, _ in chunk)
            full = max(len(items) for items, _, _ in chunk)
            item_ids = torch.full((len(chunk), length), PAD_INDEX, dtype=torch.long)  # (B, N)
            exclude = torch.full((len(chunk), full), PAD_INDEX, dtype=torch.long)  # (B, H)
            times = torch.zeros((len(chunk), length), dtype=torch.long) if timestamps is not None else None
            for b, (items, event_times, _) in enumerate(chunk):
                n = min(len(items), window)
                item_ids[b, :n] = torch.tensor(items[-n:])
                exclude[b, : len(items)] = torch.tensor(items)
                if event_times is not None:
                    times[b, :n] = torch.tensor(event_times[-n:])
            # Without request times, the last position asks about its own time (the rule's default).
            requests = torch.tensor([r for _, _, r in chunk]) if request_timestamps is not None else None  # (B,)
            history = History.from_events(item_ids, (item_ids != PAD_INDEX).long(), times, requests)
            output = self.model.recommend(
                **history.to(self.device).model_inputs(), k=k, exclude_item_ids=exclude.to(self.device)
            )
            top_items, top_scores = output.item_ids.cpu(), output.scores.float().cpu()  # (B, k)
            for row_items, row_scores in zip(top_items.tolist(), top_scores.tolist()):
                # Excluded items score -inf; they only show up when the catalogue runs out.
                kept = [index for index, score in zip(row_items, row_scores) if score != float("-inf")]
                results.append(self.vocabulary.decode(kept))
        return results


__all__ = ["Recommender"]
