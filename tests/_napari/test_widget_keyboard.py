"""The dock widget used with the keyboard only: Tab through the form, Enter on a list row.

The widget is shown as a window of its own: only a widget in the active window takes keyboard
focus, and the viewer's window cannot be shown here (its canvas needs the screen's OpenGL).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication

from napari_action._napari.widget import ActionWidget
from tests.helpers.gui import GRID, SHAPE, TIMEOUT, disc_volume, paint


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
