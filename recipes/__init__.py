"""The YAML recipes, installed as the package data of `hf_genrec._recipes` (see `pyproject.toml`).

This file only makes the folder a package, so that `importlib.resources.files("hf_genrec._recipes")` finds the
recipes from an installed wheel and from an editable install alike; the recipes themselves are the YAML files.
"""
