"""A viewer key binding owned by a dock widget is given back when the widget goes."""

from __future__ import annotations

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
