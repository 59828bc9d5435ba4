"""TRL-style arguments of the training commands: `--config FILE.yaml` and every config field as a flag.

`hf-genrec pretrain | reward | posttrain` parse their command line in two stages:

1. the command's own flags (`--data`, `--model`, `--output`, `--recipe`, ...: argparse, in `cli.py`);
2. every other flag is a field of the trainer's config dataclass (`PretrainConfig`, `RewardConfig` or the
   post-training method's config) or of `HSTUConfig`, parsed by `trl.TrlParser` with the field's type, as TRL's
   own scripts parse theirs: `--learning_rate 1e-4`, `--gradient_accumulation_steps 2`, `--report_to
   tensorboard`, `--bf16 false`, `--num_hidden_layers 4` (dashes accepted: `--learning-rate`).

`--config FILE.yaml` is TRL's flat config file: its top-level keys are any of those names (`data`, `model`,
`output`, `method`, `learning_rate`, `num_hidden_layers`, `split`, ...), plus TRL's spellings `output_dir`,
`model_name_or_path`, `push_to_hub` + `hub_model_id`, `hub_private_repo`, and `env:` (environment variables set
before the run). A nested hf_genrec recipe (`model:`/`training:`/`data:`/`method:` sections) is accepted there too.
Later sources win: the `--recipe` file < the `--config` file < flags. A name that is both a trainer config field
and an `HSTUConfig` field (`loss_type` of DPO) means the trainer config's.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import os
from collections.abc import Sequence
from typing import Any, NoReturn

from ..recipes import (
    CONFIG_SECTIONS,
    DATA_FIELDS,
    RecipeError,
    load_recipe,
    model_field_types,
    read_yaml_file,
    suggest,
    training_field_types,
)

# TRL's names for the commands' own flags -> ours (`push_to_hub` + `hub_model_id` are handled together).
TRL_ALIASES = {"output_dir": "output", "model_name_or_path": "model", "hub_private_repo": "hub_private"}
# Trainer config fields that the run itself owns: the folder and the upload are the command's flags.
RUN_OWNED_FIELDS = ("output_dir", "push_to_hub", "hub_model_id", "hub_private_repo")


def find_config_file(argv: Sequence[str]) -> str | None:
    """The value of `--config PATH` (or `--config=PATH`) in `argv`, if any."""
    for index, token in enumerate(argv):
        if token == "--config" and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith("--config="):
            return token.split("=", 1)[1]
    return None


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping in a `--config` YAML file, after setting the variables of its `env:` mapping (as TRL does)."""
    values = read_yaml_file(path, "--config")
    if not isinstance(values, dict):
        raise RecipeError(f"--config {path}: a config file is a mapping of name: value, got {type(values).__name__}.")
    env = values.pop("env", {})
    if not isinstance(env, dict):
        raise RecipeError(f"--config {path}: `env` must be a mapping of variable: value, got {type(env).__name__}.")
    for name, value in env.items():
        os.environ[str(name)] = str(value)
    return values


def is_nested_recipe(values: dict[str, Any]) -> bool:
    """Whether a config file is an hf_genrec recipe (sections) rather than a flat TRL config."""
    return "training" in values or any(isinstance(values.get(section), dict) for section in CONFIG_SECTIONS)


def flat_script_values(values: dict[str, Any], script_dests: Sequence[str]) -> dict[str, Any]:
    """The entries of a flat config that set the command's own flags, under their flag names."""
    script = {TRL_ALIASES.get(name, name): value for name, value in values.items()
              if TRL_ALIASES.get(name, name) in script_dests and name != "push_to_hub"}
    if values.get("push_to_hub") is True or isinstance(values.get("push_to_hub"), str):
        script["push_to_hub"] = _hub_repo(values.get("push_to_hub"), values.get("hub_model_id"), "--config")
    return script


def _hub_repo(push_to_hub: Any, hub_model_id: Any, source: str) -> str:
    """The repo of TRL's `push_to_hub: true` + `hub_model_id: REPO` (or our `push_to_hub: REPO`)."""
    if isinstance(push_to_hub, str):
        return push_to_hub
    if not hub_model_id:
        raise RecipeError(f"{source}: push_to_hub needs the repo: set hub_model_id (e.g. --hub_model_id user/my-model).")
    return str(hub_model_id)


def model_fields(config_class: type) -> list[str]:
    """`HSTUConfig` fields settable by flag or flat config: those whose name the trainer config does not take."""
    taken = set(training_field_types(config_class))
    return [name for name in model_field_types() if name not in taken]


def recipe_from_config(recipe_path: str | None, values: dict[str, Any] | None, *, config_class: type,
                       script_dests: Sequence[str], source: str) -> dict[str, Any] | str | None:
    """The recipe a run uses: the `--recipe` file with a flat config's entries laid over its sections.

    Without a flat config, `recipe_path` itself (so the run records the file as before). Unknown keys of the
    flat config are a `RecipeError` with the closest valid name.
    """
    if not values:
        return recipe_path
    recipe = load_recipe(recipe_path)
    training, models = training_field_types(config_class), model_fields(config_class)
    known = {*script_dests, *TRL_ALIASES, "push_to_hub", "hub_model_id"}  # set by `flat_script_values`
    for name, value in values.items():
        if name in known:
            continue
        if name == "method":
            recipe["method"] = {"name": value}
        elif name in DATA_FIELDS:
            recipe["data"][name] = value
        elif name in training:
            recipe["training"][name] = value
        elif name in models:
            recipe["model"][name] = value
        elif name != "description":
            valid = sorted({*training, *models, *DATA_FIELDS, *script_dests, "method"})
            raise RecipeError(f"{source}: unknown key {name!r}.{suggest(name, valid)} A flat config takes the command's flags, the "
                              f"fields of {config_class.__name__} and of HSTUConfig, 'split' and 'method'.")
    return recipe


@functools.cache
def _model_arguments(config_class: type) -> type:
    """A dataclass of the `HSTUConfig` fields in `model_fields(config_class)`, for `TrlParser`."""
    types = model_field_types()
    specs = [(name, types[name][0], dataclasses.field(default=types[name][1])) for name in model_fields(config_class)]
    return dataclasses.make_dataclass("HSTUArguments", specs)


def config_parser(config_class: type):
    """`trl.TrlParser` over `config_class` and the `HSTUConfig` fields, every default `SUPPRESS`ed so that parsing
    returns only the flags given."""
    from trl import TrlParser

    parser = TrlParser([config_class, _model_arguments(config_class)], add_help=False, allow_abbrev=False)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    parser.error = _flag_error  # one line through the CLI's error boundary, not argparse's usage dump
    return parser


def _flag_error(message: str) -> NoReturn:
    raise RecipeError(f"{message}. Fix: give the flag a value of its type (see the field in `--help` or the "
                      "transformers.TrainingArguments docs).")


def parse_config_flags(config_class: type, tokens: Sequence[str], script_flags: Sequence[str]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trainer config fields, `HSTUConfig` fields) given as flags in `tokens` (what the command's own flags left).

    Raises:
        RecipeError: a flag that is neither; the message names the closest valid flag.
    """
    parser = config_parser(config_class)
    parsed, unknown = parser.parse_known_args(list(tokens))
    flags = [token for token in unknown if token.startswith("-")]
    if flags or unknown:
        valid = [option for action in parser._actions for option in action.option_strings] + list(script_flags)
        first = (flags or unknown)[0].split("=", 1)[0]
        close = difflib.get_close_matches(first, valid, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise RecipeError(f"unrecognized argument(s): {' '.join(unknown)}.{hint} Flags are the command's own (see "
                          f"--help) and the fields of {config_class.__name__} and HSTUConfig (e.g. --learning_rate).")
    values = vars(parsed)
    models = set(model_fields(config_class))
    return ({name: value for name, value in values.items() if name not in models},
            {name: value for name, value in values.items() if name in models})


def apply_run_owned_fields(training: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Move TRL's `--push_to_hub --hub_model_id REPO` and `--hub_private_repo` onto the command's own flags (the
    run uploads its folder itself, once it is complete); returns the other trainer config fields."""
    if training.get("push_to_hub"):
        args.push_to_hub = _hub_repo(None, training.get("hub_model_id"), "--push_to_hub")
    if training.get("hub_private_repo"):
        args.hub_private = True
    return {name: value for name, value in training.items() if name not in RUN_OWNED_FIELDS}


def set_config_defaults(parser: argparse.ArgumentParser, values: dict[str, Any]) -> None:
    """Make a flat config's entries the defaults of the command's own flags (flags given still win), and those
    flags no longer required, as `TrlParser.set_defaults_with_config` does for its dataclass fields."""
    script = flat_script_values(values, [action.dest for action in parser._actions])
    for action in parser._actions:
        if action.dest in script:
            action.default = script[action.dest]
            action.required = False
    for group in parser._mutually_exclusive_groups:
        if any(action.dest in script for action in group._group_actions):
            group.required = False


__all__ = ["apply_run_owned_fields", "config_parser", "find_config_file", "flat_script_values",
           "is_nested_recipe", "parse_config_flags", "read_config_file", "recipe_from_config", "set_config_defaults"]
