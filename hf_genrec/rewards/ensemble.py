"""Reward-model ensembles: K `HSTUForRewardModeling` members loaded as one object, with uncertainty.

Shapes: K members, B histories, N positions, C candidate items per history.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data.history import HISTORY_FIELDS, History
from ..data.vocabulary import VOCABULARY_FILE, ItemVocabulary
from ..models import HSTUConfig, HSTUForRewardModeling

__all__ = ["ENSEMBLE_FILE", "RewardEnsemble", "RewardPrediction", "member_directory"]

ENSEMBLE_FILE = "ensemble.json"
_FORMAT_VERSION = 1
# Config fields that must agree between members: the item indices and the reward scale they predict on.
_SHARED_FIELDS = ("num_items", "reward_min", "reward_max", "max_seq_len")
# Default bound of the per-row state cache (`enable_state_cache`): MovieLens-1M's training rows under a
# 5-member, d = 50 ensemble take about 0.8 GB.
DEFAULT_STATE_CACHE_BYTES = 4 << 30


def member_directory(index: int) -> str:
    """The sub-directory of member `index` in a saved ensemble (`member-0`, `member-1`, ...)."""
    return f"member-{index}"


def _check_members_agree(configs: Sequence[HSTUConfig]) -> None:
    """Raise `ValueError` naming the field when the members' configs differ on one of `_SHARED_FIELDS`."""
    for index, config in enumerate(configs):
        for name in _SHARED_FIELDS:
            first, other = getattr(configs[0], name), getattr(config, name)
            if first != other:
                raise ValueError(
                    f"members 0 and {index} disagree on config.{name}: {first!r} vs {other!r}; the members of an "
                    "ensemble are trained on one dataset and reward scale."
                )


def _read_manifest(manifest_file: Path) -> dict[str, Any]:
    """The checked content of an `ensemble.json`: members are exactly `member-0` ... `member-{K-1}`.

    The member names are paths the loader opens, so any other value (`../elsewhere`, an absolute path) is
    refused rather than followed out of the ensemble's directory.
    """
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{manifest_file} is not valid JSON ({error}); save the ensemble again.") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{manifest_file} must hold a JSON object, got {type(manifest).__name__}; save the ensemble again.")
    if manifest.get("format_version") != _FORMAT_VERSION:
        raise ValueError(
            f"{manifest_file} has format_version {manifest.get('format_version')!r}; this hf_genrec reads "
            f"version {_FORMAT_VERSION}."
        )
    members = manifest.get("members")
    count = len(members) if isinstance(members, list) else 0
    if count < 1 or members != [member_directory(k) for k in range(count)]:
        shown = repr(members) if count <= 8 else f"a list of {count} entries"
        raise ValueError(
            f"{manifest_file}: 'members' must list member-0 ... member-{{K-1}} (K >= 1), got {shown}; an "
            "ensemble saved by `save_pretrained` has exactly these sub-directories."
        )
    if manifest.get("num_members", count) != count:
        raise ValueError(f"{manifest_file}: num_members is {manifest['num_members']!r} but 'members' lists {count}.")
    seeds, trained_on = manifest.get("seeds"), manifest.get("trained_on")
    if seeds is not None and not (isinstance(seeds, list) and all(type(seed) is int for seed in seeds)):
        raise ValueError(f"{manifest_file}: 'seeds' must be a list of integers or null, got {seeds!r}.")
    if trained_on is not None and not isinstance(trained_on, dict):
        raise ValueError(f"{manifest_file}: 'trained_on' must be a JSON object or null, got {trained_on!r}.")
    return manifest


def _check_member_configs(directory: Path, manifest: dict[str, Any]) -> None:
    """Raise `ValueError` when the members' configs (each validated as it is read) disagree with each other
    or with the manifest's item count, before any member's weights are read."""
    configs = [HSTUConfig.from_pretrained(directory / name) for name in manifest["members"]]
    _check_members_agree(configs)
    if "num_items" in manifest and manifest["num_items"] != configs[0].num_items:
        raise ValueError(
            f"{directory / ENSEMBLE_FILE}: num_items is {manifest['num_items']!r} but the members score "
            f"{configs[0].num_items} items; save the ensemble again."
        )


@dataclass
class RewardPrediction:
    """Rewards predicted by an ensemble.

    Attributes:
        mean: (B, C) or (B, N) mean over members.
        std: same shape, the across-member standard deviation (population form, `unbiased=False`: the
            spread of these K members, 0 when K = 1).
        members: (K, B, C) or (K, B, N) every member's prediction.
    """

    mean: torch.Tensor
    std: torch.Tensor
    members: torch.Tensor

    @classmethod
    def from_members(cls, members: torch.Tensor) -> RewardPrediction:
        """(K, ...) member predictions -> mean and std over K."""
        return cls(mean=members.mean(dim=0), std=members.std(dim=0, unbiased=False), members=members)


class RewardEnsemble(nn.Module):
    """K reward models trained with different seeds and bootstrap resamples of users, used as one.

    The mean is the reward estimate; the std across members is an epistemic-uncertainty signal (it
    grows where the members were trained on little data, e.g. rarely rated items). RS-DPO builds its
    intervals mean ± z·std from it; A-SFT and PPO use `value_positions` as the baseline / critic.

    Every prediction runs under `torch.no_grad()` with the members in eval mode (the constructor and
    `from_pretrained` call `eval()`); inputs are moved to the members' device.

    **Judge ensembles.** To judge a post-trained policy (reward-model-as-judge evaluation), train a
    *second* ensemble with `hf-genrec reward` and different seeds (e.g. `--seed 1000`), optionally on
    train + validation, into its own directory. Never judge a method with the ensemble it was trained
    against: a policy that exploits its reward model's errors would look good to that same model.
    See `docs/reward-models.md`.

    Saved layout (`save_pretrained`): `member-0/` … `member-{K-1}/` (each a normal `from_pretrained`-able
    `HSTUForRewardModeling` checkpoint, safetensors), `ensemble.json` (K, seeds, bootstrap, reward scale,
    what it was trained on) and `item_vocabulary.json`.

    Args:
        members: the K reward models; they must share the item vocabulary and reward scale.
        seeds: the training seed of each member (recorded in `ensemble.json`).
        bootstrap: whether each member was trained on a bootstrap resample of the training users.
        trained_on: free-form description of the training data and settings (JSON-serialisable).
        vocabulary: the item vocabulary the members index.

    Example:

    ```python
    >>> ensemble = RewardEnsemble.from_pretrained("runs/ml1m-reward")
    >>> history = History.from_batch(batch)  # a `SequenceCollator` batch
    >>> prediction = ensemble.predict_candidates(history, candidate_item_ids=candidates)
    >>> prediction.mean.shape, prediction.members.shape  # (B, C), (K, B, C)
    ```
    """

    def __init__(
        self,
        members: Sequence[HSTUForRewardModeling],
        *,
        seeds: Sequence[int] | None = None,
        bootstrap: bool = False,
        trained_on: dict[str, Any] | None = None,
        vocabulary: ItemVocabulary | None = None,
    ):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("a RewardEnsemble needs at least one member.")
        for index, member in enumerate(members):
            if not isinstance(member, HSTUForRewardModeling):
                raise ValueError(f"member {index} is a {type(member).__name__}, not an HSTUForRewardModeling.")
        _check_members_agree([member.config for member in members])
        if seeds is not None and len(seeds) != len(members):
            raise ValueError(f"got {len(seeds)} seeds for {len(members)} members.")
        if vocabulary is not None and vocabulary.num_items != members[0].config.num_items:
            raise ValueError(
                f"the vocabulary has {vocabulary.num_items} items but the members score {members[0].config.num_items}."
            )
        self.members = nn.ModuleList(members)
        self.seeds = list(seeds) if seeds is not None else None
        self.bootstrap = bool(bootstrap)
        self.trained_on = dict(trained_on or {})
        self.vocabulary = vocabulary
        self._state_cache: _StateCache | None = None
        self.eval()

    # ----------------------------------------------------------------------------------- attributes
    @property
    def num_members(self) -> int:
        return len(self.members)

    @property
    def config(self) -> HSTUConfig:
        """The members' `HSTUConfig` (member 0's; the vocabulary and reward scale are shared)."""
        return self.members[0].config

    @property
    def reward_min(self) -> float:
        return float(self.config.reward_min)

    @property
    def reward_max(self) -> float:
        return float(self.config.reward_max)

    @property
    def device(self) -> torch.device:
        return next(self.members[0].parameters()).device

    def _history(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None,
        timestamps: torch.LongTensor | None,
        query_timestamps: torch.LongTensor | None,
    ) -> History:
        """The histories a prediction method was given, as a `History` on the members' device."""
        return History.from_arguments(item_ids, attention_mask, timestamps, query_timestamps).to(self.device)

    # ------------------------------------------------------------------------------ per-position states
    def enable_state_cache(self, max_bytes: int = DEFAULT_STATE_CACHE_BYTES) -> None:
        """Keep each history row's per-position member states after their first computation.

        The members are frozen, so a row's states (`position_user_embeddings`) are a function of its events:
        a post-training run that sees the same training rows every epoch (and scores new candidate items at
        them every step) runs the members' backbones once per row instead of once per row and epoch. Rows are
        keyed by the bytes of their real events (every history column), so a changed row is never served stale
        states. At most `max_bytes` of states are kept (float32, K x events x d per row); rows beyond are
        computed each time. `clear_state_cache` frees them.
        """
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}.")
        self._state_cache = _StateCache(max_bytes=int(max_bytes))

    def clear_state_cache(self) -> None:
        """Drop every cached row state and stop caching."""
        self._state_cache = None

    @property
    def cached_rows(self) -> int:
        """Rows whose states the cache holds (0 when caching is off)."""
        return 0 if self._state_cache is None else len(self._state_cache.states)

    def _member_states(self, history: History, positions: torch.LongTensor | None = None) -> torch.Tensor:
        return torch.stack([member.position_user_embeddings(history, positions) for member in self.members])

    @torch.no_grad()
    def position_user_embeddings(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        positions: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(K, B, N, d) every member's normalised user vector after each history prefix (0 on padding): what its
        reward and value heads read. Served from the state cache for rows seen before, when it is on.

        With `positions` (B, T), only the vectors at those positions, (K, B, T, d): without the cache, each
        member computes its last layer there only (a judge reading the last T steps of long trajectories)."""
        history = self._history(item_ids, attention_mask, timestamps, query_timestamps)
        mask = history.attention_mask.bool()  # (B, N)
        right_padded = bool((mask[:, 1:] <= mask[:, :-1]).all()) if mask.shape[1] > 1 else True
        if self._state_cache is None or not right_padded:
            if positions is not None:
                positions = positions.to(self.device)
                real = mask.gather(1, positions)  # (B, T)
                return self._member_states(history, positions).masked_fill(~real[None, :, :, None], 0.0)  # (K, B, T, d)
            return self._member_states(history).masked_fill(~mask[None, :, :, None], 0.0)
        states = self._state_cache.lookup(history, self._member_states)  # (K, B, N, d)
        if positions is None:
            return states
        index = positions.to(self.device)[None, :, :, None].expand(states.shape[0], -1, -1, states.shape[-1])
        return states.gather(2, index)  # (K, B, T, d)

    @torch.no_grad()
    def predict_candidates_at(
        self,
        history: History,
        rows: torch.LongTensor,
        positions: torch.LongTensor,
        candidate_item_ids: torch.LongTensor,
    ) -> RewardPrediction:
        """Rewards of candidate items at contexts of full histories: context c is row `rows[c]` up to position
        `positions[c]`. Each member runs its backbone once over the B rows (causal: a position reads only the
        events up to it, so this equals `predict_candidates` on the C prefixes), then its head on the C x S items.

        Args:
            history: (B, N) right-padded histories (e.g. `History.from_batch` of a training batch).
            rows, positions: (C,) each, the contexts.
            candidate_item_ids: (C, S) item indices.

        Returns:
            `RewardPrediction` with (C, S) `mean` and `std`, (K, C, S) `members`, clamped to the reward scale.
        """
        candidates = candidate_item_ids.to(self.device)
        self.members[0]._check_items(candidates, "candidate_item_ids")
        states = self.position_user_embeddings(history)[:, rows.to(self.device), positions.to(self.device)]  # (K, C, d)
        members = [member.rewards_from_user_embeddings(states[k], candidates) for k, member in enumerate(self.members)]
        return RewardPrediction.from_members(torch.stack(members))  # (K, C, S)

    # ---------------------------------------------------------------------------------- prediction
    # Each method takes the histories as a `History` (`predict_candidates(history, candidate_item_ids=...)`),
    # or as its four columns, positionally or by name. Members read them as `**history.model_inputs()`, so a
    # new feature column travels in a `History` without any change here.
    @torch.no_grad()
    def predict_candidates(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        candidate_item_ids: torch.LongTensor | None = None,
    ) -> RewardPrediction:
        """Rewards of C candidate items after each history; each member runs its backbone once per batch.

        Args:
            item_ids: (B, N) histories (see `HSTUModel`), or a `History` holding all their columns.
            attention_mask, timestamps, query_timestamps: (B, N) the other history columns (None with a `History`).
            candidate_item_ids: (B, C) item indices.

        Returns:
            `RewardPrediction` with (B, C) `mean` and `std`, (K, B, C) `members`, clamped to the reward scale.
        """
        inputs = self._history(item_ids, attention_mask, timestamps, query_timestamps).model_inputs()
        candidates = candidate_item_ids.to(self.device) if candidate_item_ids is not None else None
        members = [member.score_candidates(**inputs, candidate_item_ids=candidates) for member in self.members]
        return RewardPrediction.from_members(torch.stack(members))  # (K, B, C)

    @torch.no_grad()
    def predict_positions(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        positions: torch.LongTensor | None = None,
    ) -> RewardPrediction:
        """Reward of the labelled next item at every position: (B, N) fields, 0 where `labels` is 0.

        With `positions` (B, T), only at those positions: (B, T) fields (each member's last layer is computed
        there only, e.g. the judge's last T rollout steps), equal to the full prediction's entries there.
        """
        if labels is None:
            raise ValueError("predict_positions needs labels: the item chosen after each position, 0 = none.")
        labels = labels.to(self.device)
        self.members[0]._check_items(labels, "labels")
        states = self.position_user_embeddings(item_ids, attention_mask, timestamps, query_timestamps,
                                               positions=positions)  # (K, B, N | T, d)
        if positions is not None:
            labels = labels.gather(1, positions.to(self.device))  # (B, T)
        members = torch.stack([member.rewards_from_user_embeddings(states[k], labels[..., None])[..., 0]
                               for k, member in enumerate(self.members)])  # (K, B, N)
        return RewardPrediction.from_members(members.masked_fill(labels == 0, 0.0))

    @torch.no_grad()
    def value_positions(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B, N) ensemble-mean value estimate E[r | history up to each position] (0 on padding)."""
        history = self._history(item_ids, attention_mask, timestamps, query_timestamps)
        states = self.position_user_embeddings(history)  # (K, B, N, d)
        values = torch.stack([member.values_from_user_embeddings(states[k]) for k, member in enumerate(self.members)])
        return values.mean(dim=0).masked_fill(history.attention_mask == 0, 0.0)  # (B, N)

    @torch.no_grad()
    def value_last(
        self,
        item_ids: torch.LongTensor | History,
        attention_mask: torch.Tensor | None = None,
        timestamps: torch.LongTensor | None = None,
        query_timestamps: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        """(B,) ensemble-mean value estimate at each history's last real position."""
        inputs = self._history(item_ids, attention_mask, timestamps, query_timestamps).model_inputs()
        return torch.stack([member.value_last(**inputs) for member in self.members]).mean(dim=0)

    def forward(self, *args, **kwargs) -> RewardPrediction:
        """Same as `predict_candidates`."""
        return self.predict_candidates(*args, **kwargs)

    # -------------------------------------------------------------------------------- save / load
    def manifest(self) -> dict[str, Any]:
        """The content of `ensemble.json`."""
        from ..version import __version__

        return {
            "format_version": _FORMAT_VERSION,
            "library": f"hf_genrec {__version__}",
            "num_members": self.num_members,
            "members": [member_directory(k) for k in range(self.num_members)],
            "seeds": self.seeds,
            "bootstrap": self.bootstrap,
            "reward_min": self.reward_min,
            "reward_max": self.reward_max,
            "num_items": self.config.num_items,
            "trained_on": self.trained_on,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> str:
        """Write `member-k/` for each member, `ensemble.json` and the item vocabulary; return the directory."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        for k, member in enumerate(self.members):
            member.save_pretrained(save_directory / member_directory(k))
        if self.vocabulary is not None:
            self.vocabulary.save_pretrained(save_directory)
        # The manifest goes last: a directory with ensemble.json is a complete ensemble.
        tmp = save_directory / (ENSEMBLE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.manifest(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, save_directory / ENSEMBLE_FILE)
        return str(save_directory)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_path: str | os.PathLike,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        device: torch.device | str | None = None,
    ) -> RewardEnsemble:
        """Load an ensemble saved by `save_pretrained`, from a local directory or a Hub repo id."""
        directory = Path(pretrained_path)
        if not directory.is_dir():
            from huggingface_hub import snapshot_download

            directory = Path(
                snapshot_download(
                    str(pretrained_path), revision=revision, token=token, cache_dir=cache_dir,
                    local_files_only=local_files_only,
                )
            )
        manifest_file = directory / ENSEMBLE_FILE
        if not manifest_file.is_file():
            raise FileNotFoundError(
                f"{str(pretrained_path)!r} is not a reward ensemble (no {ENSEMBLE_FILE}). A single reward model "
                "loads with AutoModelForRewardModeling.from_pretrained; an ensemble is written by `hf-genrec reward`."
            )
        manifest = _read_manifest(manifest_file)
        _check_member_configs(directory, manifest)  # all of them, before any member's weights are read
        members = [HSTUForRewardModeling.from_pretrained(directory / name) for name in manifest["members"]]
        if device is not None:
            members = [member.to(device) for member in members]
        vocabulary = ItemVocabulary.from_pretrained(directory) if (directory / VOCABULARY_FILE).is_file() else None
        return cls(
            members,
            seeds=manifest.get("seeds"),
            bootstrap=manifest.get("bootstrap", False),
            trained_on=manifest.get("trained_on"),
            vocabulary=vocabulary,
        )


class _StateCache:
    """Per-row member states of a frozen ensemble (`RewardEnsemble.enable_state_cache`), keyed by row content."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.states: dict[bytes, torch.Tensor] = {}  # key -> (K, n, d) float32, n = the row's real events

    @staticmethod
    def _keys(history: History, lengths: list[int]) -> list[bytes]:
        columns = [(name, getattr(history, name)) for name in HISTORY_FIELDS if name != "attention_mask"]
        arrays = [(name, None if value is None else value.detach().cpu().numpy()) for name, value in columns]
        keys = []
        for row, length in enumerate(lengths):
            digest = hashlib.blake2b(digest_size=20)
            for name, array in arrays:
                digest.update(name.encode())
                digest.update(b"-" if array is None else array[row, :length].tobytes())
            keys.append(digest.digest())
        return keys

    def lookup(self, history: History, compute) -> torch.Tensor:
        """(K, B, N, d) states of right-padded `history`, computing (with `compute`) only the rows not cached."""
        if history.batch_size == 0:
            return compute(history)
        lengths = history.attention_mask.sum(dim=1).tolist()
        keys = self._keys(history, lengths)
        missing = [row for row, key in enumerate(keys) if key not in self.states]
        fresh = {}
        if missing:
            index = torch.tensor(missing, device=history.item_ids.device)
            width = max(1, max(lengths[row] for row in missing))
            computed = compute(history.select(index).crop(width))  # (K, M, width, d)
            for j, row in enumerate(missing):
                states = computed[:, j, : lengths[row]].float().clone()  # (K, n, d)
                fresh[keys[row]] = states
                size = states.numel() * states.element_size()
                if self.used_bytes + size <= self.max_bytes:
                    self.states[keys[row]] = states
                    self.used_bytes += size
        row_states = [fresh[key] if key in fresh else self.states[key] for key in keys]  # each (K, n, d)
        first = row_states[0]
        out = first.new_zeros(first.shape[0], len(keys), history.item_ids.shape[1], first.shape[-1])  # (K, B, N, d)
        for row, states in enumerate(row_states):
            out[:, row, : states.shape[1]] = states
        return out
