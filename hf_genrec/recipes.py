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

Values are checked against the field types when a recipe is read (`HSTUConfig.__init__`'s annotations for
`model`, the config dataclass's field types for `training`), so `num_train_epochs: three` fails with the field
named instead of deep inside torch. Unambiguous spellings are coerced: YAML 1.1 reads `1e-4` (no dot) and
`"3"` as strings, so a numeric string becomes the `int`/`float` its field needs (`"1e3"` for an `int` field
only when it is a whole number), and the strings `true`/`false`/`yes`/`no` become booleans. Anything else that
does not fit (a word for a number, a boolean for a string, a fraction for an integer, NaN or infinity) is a
`RecipeError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import inspect
import math
import os
import types
import typing
from typing import Any

import yaml
from transformers import TrainingArguments

from .models.hstu.configuration_hstu import HSTUConfig

RECIPE_SECTIONS = ("description", "model", "training", "data", "method")
# The sections that map field names to values (`description` is free text); a loaded recipe has every one.
CONFIG_SECTIONS = ("model", "training", "data", "method")
DATA_FIELDS = ("split",)


class RecipeError(ValueError):
    """A recipe file or override that cannot be used; the message names the key and the fix."""


def suggest(name: str, valid: list[str]) -> str:
    """` Did you mean 'x'?` for the closest of `valid` to a misspelt `name`, or `""`."""
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_keys(section: str, values: dict, valid: list[str], source: str) -> None:
    for key in values:
        if key not in valid:
            raise RecipeError(
                f"{source}: unknown key {key!r} in section '{section}'.{suggest(key, valid)} "
                f"Valid keys: {', '.join(sorted(valid))}."
            )


class _WrongType(Exception):
    """A value that does not fit an annotation; `expected` says what would (e.g. "an integer")."""

    def __init__(self, expected: str):
        super().__init__(expected)
        self.expected = expected


_TRUE, _FALSE = ("true", "yes"), ("false", "no")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise _WrongType("true or false")


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            number = _parse_float(value)
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise _WrongType("an integer")


def _parse_float(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


def _to_float(value: Any) -> float | int:
    # An int stays an int (a float field takes one as is, and recipe.yaml then records what was written).
    number = _parse_float(value) if isinstance(value, str) else value
    if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number):
        return number
    raise _WrongType("a finite number")


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _WrongType("a string (YAML reads an unquoted yes/no/on/off/true/false as a boolean: quote it)")
    raise _WrongType("a string (quote it)")


_SCALARS = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _exact_match(annotation: Any, value: Any) -> bool:
    """`value` already has the plain type `annotation` (a bool is not taken for an int)."""
    if annotation in _SCALARS:
        return type(value) is annotation or (annotation is float and type(value) is int)
    return isinstance(annotation, type) and issubclass(annotation, enum.Enum) and isinstance(value, annotation)


def _coerce_union(members: tuple, value: Any) -> Any:
    if value is None and type(None) in members:
        return None
    types_ = [member for member in members if member is not type(None)]
    for member in types_:  # a value of one of the types is kept as is: `str | bool` keeps a bool
        if _exact_match(member, value):
            return value
    if str in types_:  # `IntervalStrategy | str`: the config checks the string against the enumeration itself
        types_ = [member for member in types_ if not (isinstance(member, type) and issubclass(member, enum.Enum))]
    expected = []
    for member in types_:
        try:
            return _coerce(member, value)
        except _WrongType as error:
            expected.append(error.expected)
    if len(types_) < len(members):
        expected.append("null")
    raise _WrongType(" or ".join(dict.fromkeys(expected)))


def _coerce(annotation: Any, value: Any) -> Any:
    """`value` as the type `annotation` asks for, converting only unambiguous spellings (see the module docstring).

    Types this does not know (`dict`, a config object, `Any`) accept any value: the config's own checks judge it.

    Raises:
        _WrongType: the value does not fit; its `expected` describes what would.
    """
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(typing.get_args(annotation), value)
    if origin is typing.Literal:
        if value in typing.get_args(annotation):
            return value
        raise _WrongType("one of " + ", ".join(repr(choice) for choice in typing.get_args(annotation)))
    if origin is list:
        (item_type,) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str) and item_type is str:
            return [value]  # one name for a list of names
        if not isinstance(value, (list, tuple)):
            raise _WrongType("a list")
        try:
            return [_coerce(item_type, item) for item in value]
        except _WrongType as error:
            raise _WrongType(f"a list whose items are each {error.expected}") from None
    if annotation in _SCALARS:
        return _SCALARS[annotation](value)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation) or value in [member.value for member in annotation]:
            return value
        raise _WrongType("one of " + ", ".join(repr(member.value) for member in annotation))
    return value


def coerce_fields(values: dict[str, Any], fields: dict[str, tuple[Any, Any]], section: str,
                  source: str) -> dict[str, Any]:
    """A copy of `values` with each value that `fields` (name -> (type, default)) knows converted to its type.

    Raises:
        RecipeError: a value does not fit its field's type; the message names the section, field, value and fix.
    """
    coerced = dict(values)
    for name, value in values.items():
        if name not in fields:
            continue
        annotation, default = fields[name]
        try:
            coerced[name] = _coerce(annotation, value)
        except _WrongType as error:
            example = f" (the default is {name}: {default!r})" if default not in (None, dataclasses.MISSING) else ""
            raise RecipeError(
                f"{source}: {section}.{name} must be {error.expected}, got {value!r} ({type(value).__name__}). "
                f"Fix: write a value of that type{example}."
            ) from None
    return coerced


@functools.cache
def training_field_types(config_class: type) -> dict[str, tuple[Any, Any]]:
    """name -> (type, default) of the init fields of a `TrainingArguments` dataclass."""
    try:
        hints = typing.get_type_hints(config_class)
    except (NameError, TypeError):  # an annotation that cannot be resolved: such fields go unchecked here
        hints = {}
    # A field whose default is None here or in TrainingArguments takes null (`save_total_limit: int = None`
    # there: null means no limit, even where a subclass sets another default), whatever its hint says.
    base_defaults = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    types_ = {}
    for f in dataclasses.fields(config_class):
        if not f.init:
            continue
        annotation = hints.get(f.name, Any)
        if None in (f.default, base_defaults.get(f.name, dataclasses.MISSING)):
            annotation = annotation | None if annotation is not Any else Any
        types_[f.name] = (annotation, f.default)
    return types_


@functools.cache
def model_field_types() -> dict[str, tuple[Any, Any]]:
    """name -> (type, default) of the `HSTUConfig` fields a recipe may set."""
    params = inspect.signature(HSTUConfig.__init__, eval_str=True).parameters
    return {name: (params[name].annotation, params[name].default) for name in model_config_fields()}


def read_yaml_file(path: str | os.PathLike, what: str) -> Any:
    """The YAML document in `path` (`{}` when empty). A folder, a missing file, a file that is not UTF-8 text or
    not YAML is a `RecipeError` naming `what` (e.g. "Recipe", "--config") and the path."""
    if os.path.isdir(path):
        raise RecipeError(f"{what} {str(path)!r} is a directory. Pass a YAML file, e.g. recipes/movielens-1m/hstu.yaml.")
    if not os.path.isfile(path):
        raise RecipeError(f"{what} file {str(path)!r} does not exist. Pass a YAML file, e.g. "
                          "recipes/movielens-1m/hstu.yaml.")
    with open(path, encoding="utf-8") as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as error:
            raise RecipeError(f"{path}: not valid YAML ({error}).") from error
        except UnicodeDecodeError as error:
            raise RecipeError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start}). "
                              "Pass a YAML file.") from None


def load_recipe(path: str | os.PathLike | None) -> dict[str, Any]:
    """Read and check a recipe; `None` gives the empty recipe (every default).

    Keys are checked against the config fields and values against their types (`model` and `data` here; the
    method-specific `training` fields in `build_training_config`, once the config class is known).
    """
    if path is None:
        return {section: {} for section in CONFIG_SECTIONS}
    recipe = read_yaml_file(path, "Recipe")
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with sections {RECIPE_SECTIONS}, got {type(recipe).__name__}.")
    _check_keys("top level", recipe, list(RECIPE_SECTIONS), str(path))
    for section in CONFIG_SECTIONS:
        recipe.setdefault(section, {})
        if not isinstance(recipe[section], dict):
            raise RecipeError(f"{path}: section '{section}' must be a mapping of field: value.")
    _check_keys("model", recipe["model"], model_config_fields(), str(path))
    _check_keys("data", recipe["data"], list(DATA_FIELDS), str(path))
    return _coerce_sections(recipe, str(path))


def _coerce_sections(recipe: dict[str, Any], source: str) -> dict[str, Any]:
    """`recipe` with its `model`, `data` and (standard `TrainingArguments`) `training` values typed."""
    for section in CONFIG_SECTIONS:
        if not isinstance(recipe[section], dict):
            raise RecipeError(f"{source}: section '{section}' must be a mapping of field: value, "
                              f"got {type(recipe[section]).__name__}.")
    recipe["model"] = coerce_fields(recipe["model"], model_field_types(), "model", source)
    recipe["data"] = coerce_fields(recipe["data"], {name: (str, None) for name in DATA_FIELDS}, "data", source)
    # The method-specific fields are typed by `build_training_config`; the shared ones already here, so that
    # recipe.yaml records `learning_rate: 0.0001`, not the string YAML read.
    recipe["training"] = coerce_fields(recipe["training"], training_field_types(TrainingArguments), "training",
                                       source)
    return recipe


def resolve_recipe(recipe: str | os.PathLike | dict | None) -> dict[str, Any]:
    """The recipe a run uses: a YAML file (read and checked by `load_recipe`), a recipe dict (copied, so the
    caller's stays as it was, and its values typed as `load_recipe` types a file's) or `None` (every default);
    every section of `CONFIG_SECTIONS` is present."""
    if not isinstance(recipe, dict):
        return load_recipe(recipe)
    recipe = dict(recipe)
    for section in CONFIG_SECTIONS:
        recipe.setdefault(section, {})
    return _coerce_sections(recipe, "recipe")


def model_config_fields() -> list[str]:
    """Fields a recipe may set on `HSTUConfig` (`num_items` comes from the data's vocabulary)."""
    params = inspect.signature(HSTUConfig.__init__).parameters
    return [name for name in params if name not in ("self", "kwargs", "num_items", "pad_token_id")]


def build_training_config(config_class, values: dict[str, Any], source: str = "recipe"):
    """Instantiate a `TrainingArguments` dataclass from a recipe's `training` section plus overrides.

    Unknown keys and values of the wrong type are a `RecipeError` naming the field (see `coerce_fields`).
    """
    fields = training_field_types(config_class)
    _check_keys("training", values, list(fields), source)
    return config_class(**coerce_fields(values, fields, "training", source))


__all__ = ["CONFIG_SECTIONS", "RecipeError", "build_training_config", "coerce_fields", "load_recipe", "model_config_fields",
           "read_yaml_file", "resolve_recipe", "suggest", "training_field_types"]
