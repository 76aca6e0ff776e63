"""The benchmark and screenshot scripts import only names our package still has.

They run by hand, not in this suite, so a name moved between modules broke them unseen until someone
ran one (the docs screenshots imported AUTOSAVE_ENV from the files panel after it moved to
recovery.py). Only our own imports are checked: the scripts' other dependencies (SimpleITK, TPTBox,
...) are not installed for the tests.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("docs/*.py")])


def _our_imports(script: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every ``from napari_action... import name`` in ``script``."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("napari_action")
        for alias in node.names
    ]


def test_there_are_scripts_to_check():
    assert len(SCRIPTS) > 20 and any(script.parent.name == "docs" for script in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_a_script_imports_names_our_package_has(script):
    missing = []
    for module_name, name in _our_imports(script):
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            try:  # a submodule imported by name
                importlib.import_module(f"{module_name}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{name} from {module_name}")
    assert not missing, f"{script.relative_to(ROOT)} imports what is no longer there: {', '.join(missing)}"
