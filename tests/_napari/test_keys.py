"""A viewer key binding owned by a dock widget is given back when the widget goes."""

from __future__ import annotations

import numpy as np

from napari_action._napari.refine.panel import ACCEPT_KEY, RefinePanel
from napari_action._napari.widget import ActionWidget
from tests.helpers.gui import press


def test_key_binding_is_released_with_the_widget(viewer):
    pressed = []
    viewer.bind_key(ACCEPT_KEY, lambda v: pressed.append(v))
    widget = ActionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ACTION")
    assert isinstance(widget.refine_panel, RefinePanel)
    press(viewer, ACCEPT_KEY)  # ours now: warns that no prediction layer is selected
    assert pressed == []
    viewer.window.remove_dock_widget(widget)
    press(viewer, ACCEPT_KEY)  # the user's binding is back
    assert pressed == [viewer]


def test_napari_keys_work_on_the_canvas_with_the_widget_docked(viewer):
    """A key typed on the canvas reaches napari's own bindings (2: paint brush) and ours (Shift-A).

    napari names every bound function while it handles a key on the canvas; a binding without a
    name raised AttributeError there, and no key on the canvas worked while the widget was docked.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    labels = viewer.add_labels(np.zeros((4, 16, 16), np.uint8), name="painted")
    widget = ActionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ACTION")
    canvas = viewer.window._qt_viewer.canvas.native
    QTest.keyClick(canvas, Qt.Key.Key_2)
    assert labels.mode == "paint"
    accepted = []
    widget.refine_panel.key_binding._method = lambda: lambda: accepted.append(True)
    QTest.keyClick(canvas, Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier)
    assert accepted == [True]
