"""What ships: the package list of pyproject.toml, the recipes inside the package, and MODEL_CARD.md."""

import tomllib
from pathlib import Path

import hf_genrec
from hf_genrec.trainers.model_card import TEMPLATE_PATH

ROOT = Path(__file__).resolve().parents[1]


def _setuptools():
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_model_card_file_is_the_trainers_template():
    # MODEL_CARD.md shows the card every trainer writes; it must not drift from the template it renders.
    assert (ROOT / "MODEL_CARD.md").read_text(encoding="utf-8") == TEMPLATE_PATH.read_text(encoding="utf-8"), (
        "MODEL_CARD.md differs from hf_genrec/templates/model_card.md: copy the template over it."
    )


def test_every_package_is_listed_and_the_recipes_are_mapped_into_the_package():
    package_root = Path(hf_genrec.__file__).parent
    found = {".".join(("hf_genrec", *path.parent.relative_to(package_root).parts))
             for path in package_root.rglob("__init__.py")}
    setuptools = _setuptools()
    assert set(setuptools["packages"]) == found | {"hf_genrec._recipes"}
    assert setuptools["package-dir"] == {"hf_genrec._recipes": "recipes"}
    assert (ROOT / "recipes" / "__init__.py").is_file()  # a regular package, found by the editable install too
    assert "**/*.yaml" in setuptools["package-data"]["hf_genrec._recipes"]
    assert "templates/*.md" in setuptools["package-data"]["hf_genrec"]
