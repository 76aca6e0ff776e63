"""Screenshots of the "Refine" panel for docs/usage.md: next slices, accepting a correction, Update once.

Run under a virtual X server (a real window; offscreen Qt renders a black canvas):

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/make_screenshots_refine.py

It trains on subject 1 of the phantom sample with a short budget (a minute or two on 2 CPU cores),
predicts it, shows the uncertainty and the ranked slices, corrects the top-ranked slice with the
phantom's ground truth (as a user would by painting), accepts it, and runs "Update once".
PNGs are stored as 256-colour palettes to stay small.
"""

from __future__ import annotations

import logging
from pathlib import Path

import napari
import numpy as np
from _screenshots import keep_out_of_home, pump, wait_for  # noqa: E402 (docs/ is on sys.path when run as a script)
from PIL import Image
from qtpy.QtCore import Qt

from napari_action._napari.widget import ActionWidget
from napari_action.data.samples import make_phantom

OUT = Path(__file__).parent / "images"
BUDGET = {"steps_stage1": 30, "steps_stage2": 30, "steps_stage3": 200, "stream_every_steps": 10}
SUBJECT = "phantom-1"
logger = logging.getLogger("make_screenshots_refine")


def wait_until(condition, timeout: float = 900.0) -> None:
    if not wait_for(condition, timeout):
        raise TimeoutError("the viewer did not reach the expected state in time")


def idle(widget: ActionWidget) -> bool:
    return (widget.run is None or not widget.run.is_running) and widget.training_state.job is None


def shoot(viewer: napari.Viewer, name: str, widget: ActionWidget | None = None) -> None:
    if widget is not None:  # the panel scrolls: show its bottom, where the Refine lists are
        bar = widget.scroll_area.verticalScrollBar()
        pump(0.3)
        bar.setValue(bar.maximum())
    pump(0.8)
    pixels = viewer.screenshot(canvas_only=False, flash=False)[..., :3]
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    if canvas[..., :3].mean() <= 0:
        raise RuntimeError("black canvas: run under xvfb-run with a real (xcb) window")
    Image.fromarray(pixels).quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(OUT / name, optimize=True)
    logger.info("wrote %s (%d KB)", OUT / name, (OUT / name).stat().st_size // 1024)


def set_up() -> tuple[napari.Viewer, ActionWidget]:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 1000)
    viewer.open_sample("napari-action", "phantom")
    for name in ("phantom-2", "phantom-3"):  # one subject: a short run and an uncluttered view
        viewer.layers.remove(name)
    viewer.dims.order = (2, 0, 1)  # short-axis slices: the phantom's slicing axis is 2
    widget = ActionWidget(viewer)
    widget.config_overrides = dict(BUDGET)
    viewer.window.add_dock_widget(widget, name="ACTION: Train from sparse labels", area="right")
    # On a 1024-pixel screen the panel scrolls; the "Model, export & session" group, which these
    # pictures are not about, is hidden so that the options stay in view above the Refine lists.
    widget.files_panel.hide()
    return viewer, widget


def show_next_slices(viewer: napari.Viewer, widget: ActionWidget) -> int:
    """Predict with uncertainty layers on, jump to the top-ranked slice; return its index."""
    panel = widget.refine_panel
    panel.show_uncertainty.setChecked(True)
    widget.predict_all()
    wait_until(lambda: idle(widget) and panel.next_list.count() > 0)
    panel.tabs.setCurrentIndex(1)
    item = panel.next_list.item(0)
    panel.next_list.setCurrentItem(item)
    panel.next_list.itemClicked.emit(item)
    viewer.layers[f"{SUBJECT} ACTION"].visible = False
    viewer.layers.selection.active = viewer.layers[SUBJECT]
    return item.data(Qt.ItemDataRole.UserRole)[2]


def correct_and_accept(viewer: napari.Viewer, widget: ActionWidget, index: int) -> None:
    """Paint the truth of slice ``index`` into the prediction layer (a user's correction), accept it."""
    panel = widget.refine_panel
    panel.show_uncertainty.setChecked(False)
    layer = viewer.layers[f"{SUBJECT} ACTION"]
    layer.visible = True
    truth = make_phantom(3, seed=0)[0].labels[:, :, index]
    rows, cols = np.nonzero(layer.data[:, :, index] != truth)
    layer.data_setitem((rows, cols, np.full(rows.size, index)), truth[rows, cols])
    viewer.layers.selection.active = layer
    panel.tabs.setCurrentIndex(0)
    panel.accept_current_slice()
    panel.training_list.scrollToBottom()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    OUT.mkdir(exist_ok=True)
    keep_out_of_home()
    viewer, widget = set_up()
    widget.train_button.click()
    wait_until(lambda: widget.run is not None and idle(widget))
    index = show_next_slices(viewer, widget)
    shoot(viewer, "refine_next_slices.png", widget)
    correct_and_accept(viewer, widget, index)
    shoot(viewer, "refine_accept.png", widget)
    widget.refine_panel.update_button.click()
    wait_until(lambda: idle(widget))
    widget.refine_panel.tabs.setCurrentIndex(1)
    shoot(viewer, "refine_update_once.png", widget)
    viewer.close()


if __name__ == "__main__":
    main()
