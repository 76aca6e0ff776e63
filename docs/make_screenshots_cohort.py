"""Screenshot of the Refine panel's "Cohort" tab for docs/usage.md: the opened scans, worst first.

Run under a virtual X server (a real window; offscreen Qt renders a black canvas):

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/make_screenshots_cohort.py

It opens the phantom sample (subject 1 painted on 3 slices, subjects 2 and 3 unpainted), trains
with a short budget (a minute or two on 2 CPU cores), predicts every opened volume, and clicks the
worst row of the Cohort tab, which shows that scan at its worst slice. PNGs are stored as
256-colour palettes to stay small.
"""

from __future__ import annotations

import logging

import napari
from _screenshots import keep_out_of_home  # noqa: E402 (docs/ is on sys.path when run as a script)
from make_screenshots_refine import BUDGET, idle, shoot, wait_until  # docs/ is on sys.path when run as a script

from napari_action._napari.widget import ActionWidget

COHORT_TAB = 2
logger = logging.getLogger("make_screenshots_cohort")


def set_up() -> tuple[napari.Viewer, ActionWidget]:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 1000)
    viewer.open_sample("napari-action", "phantom")
    viewer.dims.order = (2, 0, 1)  # short-axis slices: the phantom's slicing axis is 2
    widget = ActionWidget(viewer)
    widget.config_overrides = dict(BUDGET)
    viewer.window.add_dock_widget(widget, name="ACTION: Train from sparse labels", area="right")
    widget.files_panel.hide()  # fewer rows to scroll past to the Refine panel
    return viewer, widget


def show_worst(viewer: napari.Viewer, widget: ActionWidget) -> None:
    """Predict every opened scan, open the Cohort tab and click its first (worst) row."""
    widget.predict_all()
    tab = widget.refine_panel.cohort_tab
    wait_until(lambda: idle(widget) and tab.cohort_list.count() == 3)
    widget.refine_panel.tabs.setCurrentIndex(COHORT_TAB)
    worst = tab.cohort_list.item(0)
    tab.cohort_list.setCurrentItem(worst)
    tab.cohort_list.itemClicked.emit(worst)
    shown = tab.qualities[0].name
    for layer in viewer.layers:  # only the worst scan and its prediction, as a user would look at it
        layer.visible = layer.name in (shown, f"{shown} ACTION")
    logger.info("worst: %s, slice %d", shown, tab.qualities[0].worst_slice)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    keep_out_of_home()
    viewer, widget = set_up()
    widget.train_button.click()
    wait_until(lambda: widget.run is not None and idle(widget))
    show_worst(viewer, widget)
    shoot(viewer, "refine_cohort.png", widget)
    viewer.close()


if __name__ == "__main__":
    main()
