"""The dock widget used with the keyboard only: Tab through the form, Enter on a list row.

The widget is shown as a window of its own: only a widget in the active window takes keyboard
focus, and the viewer's window cannot be shown here (its canvas needs the screen's OpenGL).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_action._napari.refine.tabs import slice_of
from napari_action._napari.widget import ActionWidget
from tests.helpers.gui import GRID, PAINTED, SHAPE, TIMEOUT, disc_volume, paint


def _focused():
    return QApplication.focusWidget()


def _active_widget(viewer, qtbot) -> ActionWidget:
    """A painted image in ``viewer`` and the widget shown in an active window of its own."""
    image, truth = disc_volume()
    viewer.add_image(image, name="vol", **GRID)
    paint(viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels", **GRID), truth)
    widget = ActionWidget(viewer)
    qtbot.addWidget(widget)
    widget.resize(420, 700)
    widget.show()
    widget.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is widget, timeout=TIMEOUT)
    return widget


def test_tab_leaves_the_painted_labels_table_and_reaches_train(viewer, qtbot):
    """Tab from the layer lists walks on through the form to Train (it cycled inside the table's cells)."""
    widget = _active_widget(viewer, qtbot)
    widget.picker.images_list.setFocus()
    qtbot.waitUntil(lambda: _focused() is widget.picker.images_list, timeout=TIMEOUT)
    visited = []
    for _ in range(30):
        QTest.keyClick(_focused(), Qt.Key.Key_Tab)
        visited.append(_focused())
        if _focused() is widget.train_button:
            break
    assert widget.picker.labels_table in visited
    assert widget.options.budget.native in visited  # through the options on the way
    assert widget.train_button in visited


def _row_of_slice(slices, index: int) -> int:
    """The row of ``slices`` (a list of the Refine panel) that shows slice ``index``."""
    for row in range(slices.count()):
        target = slice_of(slices.item(row))
        if target is not None and target[2] == index:
            return row
    raise AssertionError(f"no row shows slice {index}")


def test_enter_on_a_training_set_row_shows_that_slice(viewer, qtbot):
    """Arrow keys and Enter in the Training set list move the viewer, as a click does (they did nothing)."""
    widget = _active_widget(viewer, qtbot)
    slices = widget.refine_panel.training_list
    widget.refine_panel.refresh()
    slices.setFocus()
    qtbot.waitUntil(lambda: _focused() is slices, timeout=TIMEOUT)
    slices.setCurrentRow(_row_of_slice(slices, PAINTED[1]))
    QTest.keyClick(slices, Qt.Key.Key_Return)
    assert viewer.dims.point[0] == GRID["translate"][0] + GRID["scale"][0] * PAINTED[1]
