"""The item vocabulary: raw item id (as written in the data) <-> model index.

It plays the part of a tokenizer: it is built once from the training data, saved next to every model
(`item_vocabulary.json`) and loaded back with `from_pretrained`, so that a checkpoint always
decodes its scores to the ids of the catalogue it was trained on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .errors import UnknownItemError

__all__ = ["PAD_INDEX", "VOCABULARY_FILE", "ItemVocabulary"]

PAD_INDEX = 0
"""Index reserved for padding; real items are 1..num_items."""

VOCABULARY_FILE = "item_vocabulary.json"
_FORMAT_VERSION = 1
_INT_PATTERN = re.compile(r"[+-]?[0-9]+")
# A Hub repo id is `name` or `namespace/name`; anything else that is not a local path is a typo.
_REPO_ID_PATTERN = re.compile(r"[\w.-]+(/[\w.-]+)?")
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean", dict: "object", type(None): "null"}


def _shorten(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _normalise_id(raw_id: Any, position: int) -> int | str:
    """Return `raw_id` as a plain Python int or str (numpy scalars included)."""
    if isinstance(raw_id, bool | np.bool_):
        raise ValueError(f"item id at position {position} is a bool ({raw_id!r}). Fix: use int or str ids.")
    if isinstance(raw_id, int | np.integer):
        return int(raw_id)
    if isinstance(raw_id, str):
        return str(raw_id)
    raise ValueError(
        f"item id at position {position} is {raw_id!r} of type {type(raw_id).__name__}. "
        "Fix: item ids must be int or str, as written in the interaction file."
    )


class ItemVocabulary:
    """Maps raw item ids to model indices; index `PAD_INDEX` (0) is padding, items are 1..num_items.

    Args:
        item_ids (`Sequence[int | str]`):
            Raw item ids in index order: `item_ids[0]` gets index 1. All ids must have the same type
            (all int or all str) and be unique.

    Example:

    ```python
    >>> vocab = ItemVocabulary.from_items([31, 7, 7, 12])
    >>> vocab.raw_ids
    [7, 12, 31]
    >>> vocab.encode([12, "31"])  # numeric strings are accepted for int ids
    [2, 3]
    >>> vocab.decode([1, 3])
    [7, 31]
    ```
    """

    def __init__(self, item_ids: Sequence[int | str]) -> None:
        if isinstance(item_ids, str | bytes | Mapping) or not isinstance(item_ids, Iterable):
            # A string is iterable too, and would silently become one item per character.
            raise ValueError(
                f"item_ids must be a list of ids, not a {type(item_ids).__name__} ({_shorten(item_ids)}). "
                "Fix: pass the ids as a list, e.g. ItemVocabulary([10, 20, 30])."
            )
        ids = [_normalise_id(raw_id, position) for position, raw_id in enumerate(item_ids)]
        if not ids:
            raise ValueError(
                "an item vocabulary needs at least one item. Fix: build it from a non-empty interaction log."
            )
        types = {type(raw_id) for raw_id in ids}
        if len(types) > 1:
            first_int = next(raw_id for raw_id in ids if isinstance(raw_id, int))
            first_str = next(raw_id for raw_id in ids if isinstance(raw_id, str))
            raise ValueError(
                f"item ids mix int and str (e.g. {first_int!r} and {first_str!r}). "
                "Fix: use one type for all ids, e.g. convert them all to str."
            )
        index: dict[int | str, int] = {}
        for position, raw_id in enumerate(ids):
            if raw_id in index:
                raise ValueError(
                    f"item id {raw_id!r} appears twice (positions {index[raw_id] - 1} and {position}). "
                    "Fix: pass unique ids, or use `ItemVocabulary.from_items`, which deduplicates."
                )
            index[raw_id] = position + 1
        self._ids: list[int | str] = ids
        self._index = index
        self._id_type = "int" if isinstance(ids[0], int) else "str"
        self._int64: bool | None = None
        self._sorted_ids: np.ndarray | None = None  # lazily built lookup for `encode_array`
        self._sorted_indices: np.ndarray | None = None

    @classmethod
    def from_items(cls, raw_ids: Iterable[int | str]) -> ItemVocabulary:
        """Builds a vocabulary from the unique ids in `raw_ids`, sorted (numerically for ints,
        lexicographically for strings), so that the same data always gives the same indices."""
        # Fast paths for a whole log (1M ids): numpy's sort-based unique instead of a Python set.
        if isinstance(raw_ids, np.ndarray) and raw_ids.dtype.kind in "iu":
            return cls(np.unique(raw_ids).tolist())  # before any tolist(): 20M ids would be a 700 MB list
        values = raw_ids.tolist() if isinstance(raw_ids, np.ndarray) else list(raw_ids)
        if (
            values
            and all(type(value) is int for value in values)
            and -(2**63) <= min(values) <= max(values) < 2**63
        ):
            return cls(np.unique(np.asarray(values, dtype=np.int64)).tolist())
        if values and all(type(value) is str for value in values):
            return cls(sorted(set(values)))
        unique = {_normalise_id(raw_id, position) for position, raw_id in enumerate(values)}
        try:
            return cls(sorted(unique))
        except TypeError:  # int and str cannot be compared; let __init__ explain the mix
            return cls(list(unique))

    # ------------------------------------------------------------------ container protocol
    @property
    def num_items(self) -> int:
        """Number of real items (the padding index is not counted)."""
        return len(self._ids)

    @property
    def id_type(self) -> str:
        """`"int"` or `"str"`: the type of the raw ids."""
        return self._id_type

    @property
    def raw_ids(self) -> list[int | str]:
        """Raw ids in index order (`raw_ids[k]` has index `k + 1`)."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, raw_id: object) -> bool:
        try:
            self.encode_one(raw_id)
        except (UnknownItemError, ValueError, TypeError):
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemVocabulary):
            return NotImplemented
        return self._id_type == other._id_type and self._ids == other._ids

    __hash__ = None  # compared by value, so not hashable

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_items={self.num_items}, id_type={self._id_type!r})"

    # ------------------------------------------------------------------ encoding
    def _coerce(self, raw_id: Any) -> Any:
        """Casts `raw_id` to the vocabulary's id type where that is unambiguous ("12" -> 12)."""
        if getattr(raw_id, "ndim", None) == 0 and hasattr(raw_id, "item"):  # 0-d tensor or array
            raw_id = raw_id.item()
        if self._id_type == "int":
            if isinstance(raw_id, str) and _INT_PATTERN.fullmatch(raw_id.strip()):
                return int(raw_id)
            if isinstance(raw_id, np.integer):
                return int(raw_id)
        elif isinstance(raw_id, int | np.integer) and not isinstance(raw_id, bool | np.bool_):
            return str(int(raw_id))
        elif isinstance(raw_id, np.str_):
            return str(raw_id)
        return raw_id

    def _unknown(self, raw_id: Any, count: int = 1) -> UnknownItemError:
        examples = ", ".join(repr(raw_id) for raw_id in self._ids[:3])
        more = f" ({count} unknown ids in total)" if count > 1 else ""
        return UnknownItemError(
            f"item {raw_id!r} is not in the item vocabulary{more}, which has {self.num_items} {self._id_type} "
            f"ids such as {examples}. Fix: drop the item from the history, or rebuild the vocabulary with "
            "`hf-genrec prepare` on data that contains it.",
            item_id=raw_id,
        )

    def encode_one(self, raw_id: int | str) -> int:
        """Index of one raw item id. Raises `UnknownItemError` if the item is not in the vocabulary."""
        if isinstance(raw_id, bool | np.bool_):
            raise self._unknown(raw_id)
        index = self._index.get(self._coerce(raw_id))
        if index is None:
            raise self._unknown(raw_id)
        return index

    def encode(self, raw_ids: Iterable[int | str]) -> list[int]:
        """Indices of raw item ids (a list, same order). Raises `UnknownItemError` on an unknown id."""
        if isinstance(raw_ids, np.ndarray):
            return self.encode_array(raw_ids).tolist()
        return [self.encode_one(raw_id) for raw_id in raw_ids]

    def encode_array(self, raw_ids: np.ndarray) -> np.ndarray:
        """Vectorised `encode` for a whole column (e.g. 1M interactions).

        Args:
            raw_ids (`np.ndarray` of shape `(n,)`): raw ids, integer or string/object dtype.

        Returns:
            `np.ndarray` of shape `(n,)`, int64: the indices.
        """
        raw_ids = np.asarray(raw_ids)
        if raw_ids.ndim != 1:
            raw_ids = raw_ids.reshape(-1)
        if raw_ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        if self._id_type == "int" and raw_ids.dtype.kind in "iu" and self._fits_int64():
            if self._sorted_ids is None:
                ids = np.asarray(self._ids, dtype=np.int64)
                order = np.argsort(ids, kind="stable")
                self._sorted_ids, self._sorted_indices = ids[order], order.astype(np.int64) + 1
            positions = np.searchsorted(self._sorted_ids, raw_ids)
            positions = np.minimum(positions, len(self._sorted_ids) - 1)
            found = self._sorted_ids[positions] == raw_ids
            if not found.all():
                missing = raw_ids[~found]
                raise self._unknown(int(missing[0]), count=len(np.unique(missing)))
            return self._sorted_indices[positions]
        if self._id_type == "int" and raw_ids.dtype.kind in "UO":
            try:  # numeric strings ("12") or Python ints in an object array
                return self.encode_array(raw_ids.astype(np.int64))
            except (ValueError, TypeError, OverflowError):
                pass  # fall through: the per-element path names the first unknown id
        # String ids, or object arrays: one dict lookup per element, no per-row exceptions.
        values = raw_ids.tolist()
        lookup = self._index
        if self._id_type == "str" and raw_ids.dtype.kind in "iu":
            values = [str(value) for value in values]
        indices = np.fromiter((lookup.get(value, 0) for value in values), dtype=np.int64, count=len(values))
        missing = np.flatnonzero(indices == 0)
        if missing.size:
            # Values such as "12" for int ids need a cast; only the misses pay for it.
            for position in missing:
                try:
                    indices[position] = self.encode_one(values[position])
                except UnknownItemError:
                    unknown = {values[p] for p in missing if self._coerce(values[p]) not in lookup}
                    raise self._unknown(values[position], count=len(unknown)) from None
        return indices

    def _fits_int64(self) -> bool:
        if self._int64 is None:  # Python ints may exceed int64; those take the dict path
            self._int64 = -(2**63) <= min(self._ids) and max(self._ids) < 2**63
        return self._int64

    def decode(self, indices: Iterable[int]) -> list[int | str]:
        """Raw ids of model indices. Raises `ValueError` for the padding index and `IndexError` out of range."""
        return [self.decode_one(index) for index in indices]

    def decode_one(self, index: int) -> int | str:
        """Raw id of one model index."""
        index = int(index)
        if index == PAD_INDEX:
            raise ValueError(
                f"index {PAD_INDEX} is padding and has no item. Fix: drop padding positions before decoding "
                "(e.g. keep only positions where attention_mask is 1)."
            )
        if not 1 <= index <= self.num_items:
            raise IndexError(
                f"index {index} is out of range: this vocabulary has items 1..{self.num_items}. Fix: decode "
                "with the vocabulary saved next to the model that produced the index."
            )
        return self._ids[index - 1]

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Writes `item_vocabulary.json` into `save_directory` (created if needed); returns the file path."""
        save_directory = os.fspath(save_directory)
        if os.path.isfile(save_directory):
            raise ValueError(
                f"save_directory {save_directory!r} is a file. Fix: pass a directory; the vocabulary is "
                f"written to <directory>/{VOCABULARY_FILE}."
            )
        os.makedirs(save_directory, exist_ok=True)
        path = os.path.join(save_directory, VOCABULARY_FILE)
        payload = {"version": _FORMAT_VERSION, "id_type": self._id_type, "item_ids": self._ids}
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, allow_nan=False)
            handle.write("\n")
        return path

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        subfolder: str | None = None,
    ) -> ItemVocabulary:
        """Loads a vocabulary saved with `save_pretrained`.

        Args:
            path_or_repo_id: a local directory holding `item_vocabulary.json`, the json file itself, or a
                Hugging Face Hub repo id (`namespace/name`).
            revision, token, cache_dir: passed to `huggingface_hub.hf_hub_download` for Hub repos.
            subfolder: the folder of the directory or repo that holds the file, as in `from_pretrained`.
        """
        path = os.fspath(path_or_repo_id)
        if os.path.isdir(path) and subfolder:
            path = os.path.join(path, subfolder)
        if os.path.isdir(path):
            file = os.path.join(path, VOCABULARY_FILE)
            if not os.path.isfile(file):
                raise FileNotFoundError(
                    f"{path!r} has no item vocabulary ({VOCABULARY_FILE} is missing). Fix: save one next to the "
                    f"model with `vocabulary.save_pretrained({path!r})`, or create it with `hf-genrec prepare`."
                )
        elif os.path.isfile(path):
            file = path
        elif _REPO_ID_PATTERN.fullmatch(path) and not path.startswith((".", "/")):
            file = cls._download(path, revision=revision, token=token, cache_dir=cache_dir, subfolder=subfolder)
        else:
            raise FileNotFoundError(
                f"{path!r} is neither a local directory or file nor a Hub repo id. Fix: pass the directory a "
                "model was saved to, or a repo id such as 'user/model'."
            )
        return cls._from_file(file)

    @staticmethod
    def _download(
        repo_id: str, *, revision: str | None, token: str | bool | None, cache_dir: Any, subfolder: str | None
    ) -> str:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError

        try:
            return hf_hub_download(
                repo_id, VOCABULARY_FILE, subfolder=subfolder or None, revision=revision, token=token,
                cache_dir=cache_dir,
            )
        except EntryNotFoundError as error:
            raise FileNotFoundError(
                f"Hub repo {repo_id!r} has no item vocabulary ({VOCABULARY_FILE} is missing"
                f"{f' in {subfolder!r}' if subfolder else ''}). Fix: push the vocabulary with the model "
                "(`model.item_vocabulary = vocabulary` before `model.push_to_hub`)."
            ) from error

    @classmethod
    def _from_file(cls, file: str) -> ItemVocabulary:
        try:
            with open(file, encoding="utf-8") as handle:
                payload = json.load(handle)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{file} line {error.lineno}: not valid JSON ({error.msg}). Fix: re-create the file with "
                "`ItemVocabulary.save_pretrained`."
            ) from error
        if not isinstance(payload, dict) or "item_ids" not in payload:
            raise ValueError(
                f"{file}: expected a JSON object with an 'item_ids' list. Fix: re-create the file with "
                "`ItemVocabulary.save_pretrained`."
            )
        item_ids = payload["item_ids"]
        if not isinstance(item_ids, list):
            raise ValueError(
                f"{file}: field 'item_ids' is a JSON {_JSON_TYPES.get(type(item_ids), type(item_ids).__name__)} "
                f"({_shorten(item_ids)}), not a list of ids. Fix: re-create the file with "
                "`ItemVocabulary.save_pretrained`."
            )
        version = payload.get("version", _FORMAT_VERSION)
        if version != _FORMAT_VERSION:
            raise ValueError(
                f"{file}: field 'version' is {version!r}; this hf_genrec reads version {_FORMAT_VERSION}. "
                "Fix: upgrade hf_genrec, or re-create the vocabulary."
            )
        id_type = payload.get("id_type")
        try:
            vocabulary = cls(item_ids)
        except ValueError as error:
            raise ValueError(f"{file}: field 'item_ids': {error}") from error
        if id_type is not None and id_type != vocabulary.id_type:
            raise ValueError(
                f"{file}: field 'id_type' is {id_type!r} but the ids are {vocabulary.id_type}. Fix: re-create "
                "the file with `ItemVocabulary.save_pretrained`."
            )
        return vocabulary
