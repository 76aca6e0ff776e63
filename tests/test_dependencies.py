"""pyproject.toml against the code: the Python and package versions that have what the code calls."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
SOURCES = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "napari_action").rglob("*.py"))

#: (distribution, releases that lack what the code calls, the first that has it, the call in the code).
FLOORS = [
    # create_array takes data= from 3.0.2 (the session store) and makes the groups of a
    # nested name from 3.0.3; zarr 2 has no create_array at all (convert, predict --output-format zarr).
    ("zarr", ["2.18.7", "3.0.2"], "3.0.3", "create_array("),
    # Every Trainer builds a GradScaler (2.2 has none under torch.amp); a failed step asks whether it
    # ran out of memory, and before 2.5 that question raised AttributeError in place of the error.
    ("torch", ["2.2.2"], "2.5.0", "torch.amp.GradScaler("),
    ("torch", ["2.4.1"], "2.5.0", "torch.OutOfMemoryError"),
    # The demo titles its overlay in a font of a given size; 10.0 raised TypeError after training.
    ("pillow", ["9.5.0", "10.0.1"], "10.1.0", "load_default(size="),
]
#: Import names that differ from the name of the distribution that installs them.
DISTRIBUTIONS = {"PIL": "pillow", "skimage": "scikit-image"}


def _declared(extra: str | None = None) -> dict[str, SpecifierSet]:
    lines = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    requirements = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r.specifier for r in requirements}


@pytest.mark.parametrize(
    ("distribution", "too_old", "first_good", "call"), FLOORS, ids=[f"{f[0]}-{f[3]}" for f in FLOORS]
)
def test_each_floor_keeps_out_the_releases_that_lack_what_the_code_calls(distribution, too_old, first_good, call):
    assert call in SOURCES, f"the code no longer calls {call}: the floor of {distribution} may come down"
    specifier = _declared()[distribution]
    assert first_good in specifier
    assert [version for version in too_old if version in specifier] == []


def test_the_python_floor_is_that_of_the_zarr_it_needs():
    # zarr 3 supports Python 3.11 and later; on 3.10 pip would install zarr 2.
    python = SpecifierSet(PROJECT["requires-python"])
    assert "3.11.0" in python
    assert "3.10.14" not in python


def _imported_distributions(files: list[Path]) -> dict[str, Path]:
    """Each package outside the standard library that ``files`` import, with one file importing it."""
    found: dict[str, Path] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.partition(".")[0] for name in names}:
                if top not in sys.stdlib_module_names and top != "napari_action":
                    found.setdefault(canonicalize_name(DISTRIBUTIONS.get(top, top)), path)
    return found


def test_every_package_the_code_imports_is_declared():
    """A package that only happens to come with another one goes when that one stops bringing it."""
    package = ROOT / "napari_action"
    adapter = package / "_napari"
    core_files = [p for p in package.rglob("*.py") if adapter not in p.parents]
    allowed = {"core": _declared(), "plugin": _declared() | _declared("napari")}
    imported = {
        "core": _imported_distributions(core_files),
        "plugin": _imported_distributions(list(adapter.rglob("*.py"))),
    }
    undeclared = {
        name: str(path.relative_to(ROOT))
        for part, found in imported.items()
        for name, path in found.items()
        if name not in allowed[part]
    }
    assert undeclared == {}
