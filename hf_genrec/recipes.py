"""YAML recipes: plain files whose keys are exactly the config field names, so a typo fails loudly.

A recipe has up to three sections:

```yaml
model:     # HSTUConfig fields (num_items comes from the data)
  num_hidden_layers: 2
training:  # fields of the trainer's config dataclass (a TrainingArguments subclass)
  learning_rate: 1.0e-3
data:      # how the prepared dataset is split
  split: leave-one-out
```
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from typing import Any

import yaml

from .models.hstu.configuration_hstu import HSTUConfig

RECIPE_SECTIONS = ("description", "model", "training", "data", "method")
# The sections that map field names to values (`description` is free text); a loaded recipe has every one.
CONFIG_SECTIONS = ("model", "training", "data", "method")
DATA_FIELDS = ("split",)


class RecipeError(ValueError):
    """A recipe file or override that cannot be used; the message names the key and the fix."""


def _suggest(name: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_keys(section: str, values: dict, valid: list[str], source: str) -> None:
    for key in values:
        if key not in valid:
            raise RecipeError(
                f"{source}: unknown key {key!r} in section '{section}'.{_suggest(key, valid)} "
                f"Valid keys: {', '.join(sorted(valid))}."
            )


def load_recipe(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and check a recipe; `None` gives the empty recipe (every default)."""
    if path is None:
        return {section: {} for section in CONFIG_SECTIONS}
    if not os.path.isfile(path):
        raise RecipeError(f"Recipe file {str(path)!r} does not exist. Pass a YAML file, e.g. recipes/movielens-1m/hstu.yaml.")
    with open(path, encoding="utf-8") as f:
        try:
            recipe = yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise RecipeError(f"{path}: not valid YAML ({error}).") from error
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with sections {RECIPE_SECTIONS}, got {type(recipe).__name__}.")
    _check_keys("top level", recipe, list(RECIPE_SECTIONS), str(path))
    for section in CONFIG_SECTIONS:
        recipe.setdefault(section, {})
        if not isinstance(recipe[section], dict):
            raise RecipeError(f"{path}: section '{section}' must be a mapping of field: value.")
    _check_keys("model", recipe["model"], model_config_fields(), str(path))
    _check_keys("data", recipe["data"], list(DATA_FIELDS), str(path))
    return recipe


def resolve_recipe(recipe: str | os.PathLike | dict | None) -> dict[str, Any]:
    """The recipe a run uses: a YAML file (read and checked by `load_recipe`), a recipe dict (copied, so the
    caller's stays as it was) or `None` (every default); every section of `CONFIG_SECTIONS` is present."""
    recipe = dict(recipe) if isinstance(recipe, dict) else load_recipe(recipe)
    for section in CONFIG_SECTIONS:
        recipe.setdefault(section, {})
    return recipe


def model_config_fields() -> list[str]:
    """Fields a recipe may set on `HSTUConfig` (`num_items` comes from the data's vocabulary)."""
    params = inspect.signature(HSTUConfig.__init__).parameters
    return [name for name in params if name not in ("self", "kwargs", "num_items", "pad_token_id")]


def build_training_config(config_class, values: dict[str, Any], source: str = "recipe"):
    """Instantiate a `TrainingArguments` dataclass from a recipe's `training` section plus overrides."""
    valid = [f.name for f in dataclasses.fields(config_class) if f.init]
    _check_keys("training", values, valid, source)
    return config_class(**values)


__all__ = ["CONFIG_SECTIONS", "RecipeError", "build_training_config", "load_recipe", "model_config_fields",
           "resolve_recipe"]
