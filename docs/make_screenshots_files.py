"""Screenshots of "Predict all", export, and sessions for docs/usage.md.

Run under a virtual X server (a real window; offscreen Qt renders a black canvas):

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/make_screenshots_files.py

It trains on the phantom sample with a short budget (two or three minutes on 2 CPU cores), opens a
fourth phantom subject written as NIfTI twice (with a rotated affine; at a coarser spacing),
predicts all volumes, exports the masks, saves the session, closes the viewer and reopens the
session in a new one. Everything except the PNGs goes to a temporary folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import napari
import nibabel as nib
import numpy as np
from _screenshots import keep_out_of_home, pump, wait_for  # noqa: E402 (docs/ is on sys.path when run as a script)
from PIL import Image

from napari_action._napari.files.recovery import AUTOSAVE_ENV
from napari_action._napari.widget import ActionWidget
from napari_action.data.samples import make_phantom

OUT = Path(__file__).parent / "images"
BUDGET = {"steps_stage1": 30, "steps_stage2": 30, "steps_stage3": 240, "stream_every_steps": 10}
logger = logging.getLogger("make_screenshots_files")


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Save with a 256-colour palette: a third of the size of full RGB, below docs' 250 KB budget."""
    image = Image.fromarray(np.ascontiguousarray(rgb[..., :3]))
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)


def shoot(viewer: napari.Viewer, name: str, widget: ActionWidget, settle: float = 0.5) -> None:
    pump(0.3)
    widget.scroll_area.ensureWidgetVisible(widget.files_panel)  # the panel scrolls: these shots are about it
    pump(settle)
    save_png(viewer.screenshot(canvas_only=False, flash=False), OUT / name)
    logger.info("wrote %s (%d KB)", OUT / name, (OUT / name).stat().st_size // 1024)


def write_other_volumes(folder: Path) -> list[Path]:
    """Subject 4 of the phantom study (subjects 1-3 are the sample's), never seen in training.

    Once with a 12° rotated affine (another orientation in the scanner), once at 80 x 80 voxels
    of 2.4 mm instead of 128 x 128 of 1.5 mm (same field of view, other size and spacing).
    """
    subject = make_phantom(n_subjects=4, seed=0)[3]
    angle = np.deg2rad(12.0)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    rotated = folder / "subject-4-rotated.nii.gz"
    nib.save(nib.Nifti1Image(subject.image, rotation @ np.asarray(subject.meta.affine)), rotated)
    coarse_subject = make_phantom(n_subjects=4, seed=0, shape=(80, 80, 16))[3]
    coarse = folder / "subject-4-2.4mm.nii.gz"
    nib.save(nib.Nifti1Image(coarse_subject.image, np.asarray(coarse_subject.meta.affine)), coarse)
    return [rotated, coarse]


def show_only(viewer: napari.Viewer, names: set[str]) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names


def new_viewer() -> tuple[napari.Viewer, ActionWidget]:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 1000)
    widget = ActionWidget(viewer)
    widget.config_overrides = dict(BUDGET)
    viewer.window.add_dock_widget(widget, name="ACTION: Train from sparse labels", area="right")
    return viewer, widget


def train_and_predict(viewer: napari.Viewer, widget: ActionWidget, folder: Path) -> None:
    viewer.open_sample("napari-action", "phantom")
    viewer.dims.order = (2, 0, 1)  # short-axis slices: the phantom's slicing axis is 2
    widget.train_button.click()
    wait_for(lambda: widget.run is not None and not widget.run.is_running)
    for path in write_other_volumes(folder):  # opened after training: never seen by the model
        viewer.open(str(path), plugin="napari-action")
    viewer.dims.set_current_step(2, 8)
    widget.predict_all()
    wait_for(lambda: widget.training_state.job is None)
    show_only(viewer, {"subject-4-rotated", "subject-4-rotated ACTION"})
    viewer.reset_view()
    shoot(viewer, "files_predict_all.png", widget)
    show_only(viewer, {"subject-4-2.4mm", "subject-4-2.4mm ACTION"})
    # 1.6 times the training pixel size: resized for the network, no warning (that starts at two-fold).
    assert widget.files_panel.warn_geometry(["subject-4-2.4mm"]) == []
    shoot(viewer, "files_other_spacing.png", widget, settle=1.0)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    OUT.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="napari-action-shots-"))
    os.environ[AUTOSAVE_ENV] = str(folder / "autosave")
    keep_out_of_home()
    viewer, widget = new_viewer()
    train_and_predict(viewer, widget, folder)
    (folder / "export").mkdir()
    widget.files_panel.export_masks(folder / "export", overwrite=True)
    wait_for(lambda: not widget.files_panel.is_busy)
    widget.files_panel.save_session(folder / "work.action.zarr")
    wait_for(lambda: not widget.files_panel.is_busy)
    viewer.close()

    viewer, widget = new_viewer()
    widget.files_panel.open_session(folder / "work.action.zarr")
    wait_for(lambda: not widget.files_panel.is_busy)
    viewer.dims.order = (2, 0, 1)
    show_only(viewer, {"phantom-2", "phantom-2 ACTION"})
    widget.files_panel.autosave_interval_s = 1.0
    wait_for(lambda: widget.files_panel.last_autosave is not None, timeout=60)
    viewer.reset_view()
    shoot(viewer, "files_session_reopened.png", widget, settle=1.0)
    widget.files_panel.autosave_interval_s = 600
    wait_for(lambda: not widget.files_panel.is_busy)
    viewer.close()


if __name__ == "__main__":
    main()
