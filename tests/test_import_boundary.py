"""The pure core never imports GUI packages; the package and the I/O modules never import torch.

Each module is imported in a fresh interpreter, so that nothing another test imported can hide
a forbidden import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "napari_action"
ADAPTER = PACKAGE / "_napari"


def _dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


# Every module of the package outside the napari adapter package, at any depth.
CORE_MODULES = sorted(_dotted(p) for p in PACKAGE.rglob("*.py") if ADAPTER not in p.parents)
GUI_PACKAGES = ("napari", "qtpy", "magicgui", "superqt", "PyQt6", "PyQt5", "PySide6", "PySide2", "vispy")
# The command line too, so that `napari-action --help` answers without waiting for torch.
TORCH_FREE = ("napari_action", "napari_action.io.nifti", "napari_action.data.samples", "napari_action.cli.main")


def _imported_after(module: str) -> set[str]:
    code = f"import importlib, json, sys; importlib.import_module({module!r}); "
    code += "print(json.dumps(list(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"importing {module} failed:\n{result.stderr}"
    return {name.split(".")[0] for name in json.loads(result.stdout.splitlines()[-1])}


def test_core_modules_were_found():
    assert {"napari_action.io.nifti", "napari_action.training.trainer", "napari_action.config"} <= set(CORE_MODULES)
    assert not any(name.startswith("napari_action._napari") for name in CORE_MODULES)


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_does_not_import_gui(module):
    leaked = _imported_after(module) & set(GUI_PACKAGES)
    assert not leaked, f"{module} imports {sorted(leaked)}; GUI code belongs in napari_action._napari"


@pytest.mark.parametrize("module", TORCH_FREE)
def test_package_and_io_do_not_import_torch(module):
    imported = _imported_after(module)
    assert "torch" not in imported, f"{module} imports torch; import it lazily where training needs it"
    assert not imported & set(GUI_PACKAGES)


def test_widget_module_does_not_import_torch():
    """Importing the dock widget's module stays quick: torch loads when a widget is made or a model built."""
    imported = _imported_after("napari_action._napari.widget")
    assert "napari" in imported  # the adapter itself may import napari and Qt at the top
    assert "torch" not in imported, "the widget module imports torch; import torch-backed core modules lazily"


HEADLESS_SCRIPT = """
import json, sys, threading
import numpy as np
from napari_action import Predictor, Trainer, evaluate, load_labels, load_volume, save_labels
from tests.helpers.engine import disc_volume, sparse, tiny_config, write_nifti

folder = sys.argv[1]
image, truth = disc_volume(0)
write_nifti(f"{folder}/scan.nii.gz", image)
write_nifti(f"{folder}/painted.nii.gz", sparse(truth))
write_nifti(f"{folder}/other.nii.gz", disc_volume(1)[0])
write_nifti(f"{folder}/other_truth.nii.gz", truth)

image, meta = load_volume(f"{folder}/scan.nii.gz")
painted, _ = load_labels(f"{folder}/painted.nii.gz")
trainer = Trainer([image], [painted], tiny_config(num_threads=1), affines=[meta.affine])
for progress in trainer.iter_train():
    if progress.step == 5:
        break
trainer.save_checkpoint(f"{folder}/model.pt")
other, other_meta = load_volume(f"{folder}/other.nii.gz")
labels, _ = Predictor.from_checkpoint(f"{folder}/model.pt", device="cpu").predict(other, spacing=other_meta.zooms)
save_labels(f"{folder}/other_labels.nii.gz", labels, other_meta)
saved, saved_meta = load_labels(f"{folder}/other_labels.nii.gz")
truth, _ = load_labels(f"{folder}/other_truth.nii.gz")
score = evaluate(saved, truth, other_meta.zooms).mean_dice
print(json.dumps({
    "modules": sorted({name.split(".")[0] for name in sys.modules}),
    "threads": threading.active_count(),
    "same_grid": bool(np.allclose(saved_meta.affine, other_meta.affine)) and saved.shape == other.shape,
    "score": float(score),
}))
"""


def test_the_readme_python_workflow_runs_headless_from_the_package_names(tmp_path):
    # README's file workflow (load, train, stop early, save, predict, write with the source geometry, score) by
    # the names `napari_action` exports: load_labels, Predictor and evaluate were not among them.
    command = [sys.executable, "-c", HEADLESS_SCRIPT, str(tmp_path)]
    root = str(PACKAGE.parent)
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=root)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert not set(report["modules"]) & set(GUI_PACKAGES)
    assert report["threads"] == 1  # training and prediction leave no thread behind
    assert report["same_grid"] and 0.0 <= report["score"] <= 1.0
