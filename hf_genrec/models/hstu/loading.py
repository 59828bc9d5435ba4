"""Checks of an HSTU checkpoint before its model is built: the config against the safetensors header.

`from_pretrained` would otherwise build the model from `config.json` and only then read the weights, so a
config that disagrees with its weights (another catalogue size, more layers than the file holds) either fails
deep inside transformers or, worse, loads with silently re-initialised layers. Here the config is validated
(`HSTUConfig.validate_hstu`: types and upper bounds) and compared with the tensor shapes recorded in the
safetensors header first. The header is read with `safetensors.safe_open`, which parses its JSON and maps the
file without reading the tensors or unpickling anything; the expected shapes come from the model class itself,
built on the meta device (no memory), so there is one definition of the architecture.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import re
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers import PretrainedConfig, PreTrainedModel
from transformers import initialization as init
from transformers.utils import cached_file

from .configuration_hstu import HSTUConfig

__all__ = ["check_checkpoint_shapes", "load_checked_config", "read_safetensors_shapes", "resolve_safetensors_files"]

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
# The `from_pretrained` keywords that say where the files are (transformers passes the same to `cached_file`).
_DOWNLOAD_KWARGS = ("cache_dir", "force_download", "proxies", "local_files_only", "token", "revision", "subfolder")
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")
_MISMATCH_FIX = (
    "The config.json and the weights come from different models: use the config.json saved with these weights "
    "(or download the checkpoint again)."
)


def _download_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {name: kwargs[name] for name in _DOWNLOAD_KWARGS if kwargs.get(name) is not None}


def load_checked_config(
    config_class: type[HSTUConfig], path: str, kwargs: dict[str, Any]
) -> PretrainedConfig | None:
    """The config `from_pretrained(path, **kwargs)` will build the model from, validated.

    Like transformers: `config=` (an object, or a path to read it from) wins over `path`, and keyword arguments
    named like config fields override the file's values (only when the config is read here). Returns None when
    `config=` is an object of another class (transformers then reports the mismatch itself).
    """
    config = kwargs.get("config")
    if isinstance(config, PretrainedConfig):
        if not isinstance(config, config_class):
            return None
        config = copy.deepcopy(config)
    else:
        source = os.fspath(config) if config is not None else path
        config = config_class.from_pretrained(source, **_download_kwargs(kwargs))
        fields = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
        for name in fields & set(kwargs):
            setattr(config, name, kwargs[name])
    config.validate_hstu()  # again: overrides were set after the config was built
    return config


def resolve_safetensors_files(path: str, kwargs: dict[str, Any], weights_name: str | None = None) -> list[str]:
    """Local paths of the safetensors file(s) `from_pretrained` will read (downloaded if `path` is a repo id).

    `weights_name` is the file a config names itself (`transformers_weights`); by default `model.safetensors`,
    then the shards listed in `model.safetensors.index.json`. Returns [] when there is none.
    """
    download = _download_kwargs(kwargs)
    variant = kwargs.get("variant")
    names = [weights_name] if weights_name else [SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME]
    if variant and not weights_name:  # transformers' naming: model.<variant>.safetensors
        names = [name.replace(".safetensors", f".{variant}.safetensors", 1) for name in names]
    for name in names:
        resolved = cached_file(path, name, _raise_exceptions_for_missing_entries=False, **download)
        if resolved is None:
            continue
        if not name.endswith(".index.json"):
            return [resolved]
        with open(resolved, encoding="utf-8") as handle:
            index = json.load(handle)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"{resolved} has no valid weight_map (tensor name -> shard file); save the checkpoint again.")
        return [cached_file(path, shard, **download) for shard in sorted(set(weight_map.values()))]
    return []


def read_safetensors_shapes(files: list[str]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, from the headers of safetensors `files` (no tensor is read)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            with safe_open(file, framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = tuple(handle.get_slice(name).get_shape())
        except (SafetensorError, OSError) as error:
            raise ValueError(
                f"{file} is not a readable safetensors file ({error}); download or save the checkpoint again."
            ) from None
    return shapes


def _expected_shapes(model_class: type[PreTrainedModel], config: PretrainedConfig) -> tuple[dict, dict, str]:
    """(backbone shapes, head shapes, item-table name) of `model_class(config)`, built on the meta device."""
    with torch.device("meta"), init.no_init_weights():
        model = model_class(config)
    backbone = model.base_model
    table = next(name for name, p in backbone.named_parameters() if p is backbone.get_input_embeddings().weight)
    backbone_shapes = {name: tuple(p.shape) for name, p in backbone.state_dict().items()}
    head_shapes = {}
    if backbone is not model:
        prefix = f"{model.base_model_prefix}."
        head_shapes = {name: tuple(p.shape) for name, p in model.state_dict().items() if not name.startswith(prefix)}
    return backbone_shapes, head_shapes, table


def check_checkpoint_shapes(
    model_class: type[PreTrainedModel], config: HSTUConfig, shapes: dict[str, tuple[int, ...]], source: str
) -> None:
    """Raise `ValueError` when the weights' shapes (`shapes`, from the header) do not fit `config`.

    The number of layers and the item table are compared first (their messages name the config fields);
    then every backbone tensor must be present with the config's shape. Head tensors may be missing (new
    heads, e.g. a reward model from a next-item checkpoint) but not of another shape; other tensors are ignored.
    """
    prefix = f"{model_class.base_model_prefix}."
    # A backbone saved alone has no prefix; under a head it has one (transformers adds or strips it on load).
    found = {name.removeprefix(prefix): shape for name, shape in shapes.items()}
    # Counted before the model is built on the meta device, which takes a while for hundreds of layers.
    layers = {int(match.group(1)) for name in found if (match := _LAYER_KEY.match(name))}
    if layers != set(range(config.num_hidden_layers)):
        raise ValueError(
            f"{source}: the config has num_hidden_layers={config.num_hidden_layers} but the weights hold "
            f"{len(layers)} layers (indices {sorted(layers)[:8]}{'...' if len(layers) > 8 else ''}). {_MISMATCH_FIX}"
        )
    backbone, heads, table = _expected_shapes(model_class, config)
    if table not in found:
        raise ValueError(f"{source}: the weights have no item table ({table!r}); this is not an HSTU checkpoint.")
    rows_columns = found[table]
    if rows_columns != backbone[table]:
        implied = f"num_items={rows_columns[0] - 1}, hidden_size={rows_columns[1]}" if len(rows_columns) == 2 else ""
        raise ValueError(
            f"{source}: the config has num_items={config.num_items} and hidden_size={config.hidden_size} (an item "
            f"table of {backbone[table]}) but the weights' item table is {rows_columns} ({implied}). {_MISMATCH_FIX}"
        )
    missing = sorted(set(backbone) - set(found))
    wrong = [
        f"{name} is {found[name]} (the config implies {shape})"
        for name, shape in {**backbone, **heads}.items()
        if name in found and found[name] != shape
    ]
    if missing or wrong:
        problems = [f"{name} is missing" for name in missing[:3]] + wrong[:3]
        raise ValueError(f"{source}: the weights do not fit the config: {'; '.join(problems)}. {_MISMATCH_FIX}")
