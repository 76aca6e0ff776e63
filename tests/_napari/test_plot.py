"""The loss plot in napari's themes: its curves and readouts stand out from the panel's background."""

from __future__ import annotations

import pytest
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QApplication

from napari_action._napari.widget import ActionWidget


def _luminance(color: QColor) -> float:
    """Relative luminance (WCAG 2)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(color.red()) + 0.7152 * linear(color.green()) + 0.0722 * linear(color.blue())


def _contrast(a: QColor, b: QColor) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_curves_and_readouts_are_readable_in_each_theme(viewer, theme):
    """In the light theme the light orange 'loss 0.155' and light blue agreement readouts hardly showed."""
    widget = ActionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ACTION")
    viewer.theme = theme
    QApplication.processEvents()
    background = widget.plot.palette().window().color()
    for color in widget.plot.curve_colors():
        assert _contrast(color, background) >= 4.5  # WCAG AA for text
