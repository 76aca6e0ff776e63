"""Screenshots of the training widget before, during and after training (docs/usage.md).

Run under a virtual X server (a real window; offscreen Qt renders a black canvas):

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/make_screenshots_train.py
"""

from __future__ import annotations

import time
from pathlib import Path

import napari
from _screenshots import keep_out_of_home, pump  # noqa: E402 (docs/ is on sys.path when run as a script)
from skimage.io import imsave

from napari_action._napari.view_plane import PAINTED
from napari_action._napari.widget import ActionWidget

OUT = Path(__file__).parent / "images"
# A shortened cpu budget so the screenshots take about a minute to make.
BUDGET = {"steps_supervised_start": 60, "steps_stage3": 200, "stream_every_steps": 10}


def show_first_subject_only(viewer: napari.Viewer) -> None:
    # The three phantom subjects share one grid: showing them all would stack
    # three predictions on top of each other.
    for layer in viewer.layers:
        if layer.name.startswith(("phantom-2", "phantom-3")) and layer.visible:
            layer.visible = False


def shoot(viewer: napari.Viewer, name: str) -> None:
    pump(0.5)
    image = viewer.screenshot(canvas_only=False, flash=False)
    imsave(OUT / name, image[..., :3], check_contrast=False)
    print("wrote", OUT / name)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    keep_out_of_home()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 860)
    viewer.open_sample("napari-action", "phantom")
    show_first_subject_only(viewer)
    widget = ActionWidget(viewer)
    widget.config_overrides = dict(BUDGET)
    viewer.window.add_dock_widget(widget, name="ACTION: Train from sparse labels", area="right")
    # "view slices": the painted short-axis slices (the phantom's axis 2), as a user would choose.
    widget.options.view.value = PAINTED
    widget.show_slices(PAINTED)
    viewer.dims.set_current_step(2, 9)  # a slice nobody painted (painted: 3, 7, 11)
    shoot(viewer, "train_before.png")

    widget.train_button.click()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and (widget.run is None or len(widget.plot.loss) < 120):
        pump(0.5, lambda: show_first_subject_only(viewer))
    shoot(viewer, "train_during.png")
    # Training, then the prediction of the trained images with the final network that its end starts.
    while time.monotonic() < deadline and (
        (widget.run is not None and widget.run.is_running) or widget.training_state.job is not None
    ):
        pump(0.5, lambda: show_first_subject_only(viewer))
    pump(2.0, lambda: show_first_subject_only(viewer))
    shoot(viewer, "train_after.png")
    viewer.close()


if __name__ == "__main__":
    main()
