"""A small live plot of training curves, painted with QPainter.

Two curves share the step axis: the total loss (left scale, autoscaled) and
the agreement between successive streamed predictions of the same slices
(fraction of voxels unchanged, fixed 0-1 scale). A flat agreement near 1
means further training barely changes the result, a cue to stop (users ask
"when is the model good enough?"). QPainter keeps the plugin free of a
plotting dependency, and repainting a few hundred points costs well under a
millisecond on the GUI thread.
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

#: The curves and their readouts (loss orange, agreement blue) on a dark background (napari's dark theme)...
ON_DARK = (QColor(255, 170, 60), QColor(90, 200, 255))
#: ...and darker shades of them on a light one (napari's light theme), where those hardly showed.
ON_LIGHT = (QColor(160, 80, 0), QColor(0, 100, 180))
MAX_POINTS = 600


def _decimate(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Halve a long series (keeps memory and paint time bounded on long runs)."""
    return points[::2] if len(points) > MAX_POINTS else points


class LossPlot(QWidget):
    """Total loss and prediction agreement against training step."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.loss: list[tuple[float, float]] = []
        self.agreement: list[tuple[float, float]] = []
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Orange: total training loss. Blue: share of voxels unchanged between two "
            "successive predictions of the same slices (1.0 = stable)."
        )

    def curve_colors(self) -> tuple[QColor, QColor]:
        """(loss, agreement) colours that stand out from the background of the theme shown."""
        return ON_LIGHT if self.palette().window().color().lightness() > 127 else ON_DARK

    def clear(self) -> None:
        """Forget both curves."""
        self.loss, self.agreement = [], []
        self.update()

    def add_loss(self, step: int, value: float, repaint: bool = True) -> None:
        """Append a loss value (non-finite values are skipped); ``repaint=False`` leaves the redraw to the caller."""
        if math.isfinite(value):
            self.loss = _decimate([*self.loss, (float(step), float(value))])
            if repaint:
                self.update()

    def add_agreement(self, step: int, fraction: float) -> None:
        """Append an agreement fraction in [0, 1]."""
        self.agreement = _decimate([*self.agreement, (float(step), min(max(float(fraction), 0.0), 1.0))])
        self.update()

    def _step_range(self) -> tuple[float, float]:
        steps = [s for s, _ in self.loss] + [s for s, _ in self.agreement]
        low, high = (min(steps), max(steps)) if steps else (0.0, 1.0)
        return low, max(high, low + 1.0)

    @staticmethod
    def _polygon(points, box: QRectF, x_range, y_range) -> QPolygonF:
        (x0, x1), (y0, y1) = x_range, y_range
        span_y = (y1 - y0) or 1.0
        return QPolygonF(
            [
                QPointF(
                    box.left() + (x - x0) / (x1 - x0) * box.width(), box.bottom() - (y - y0) / span_y * box.height()
                )
                for x, y in points
            ]
        )

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = QRectF(self.rect()).adjusted(4, 14, -4, -4)
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(box)
        x_range = self._step_range()
        loss_color, agreement_color = self.curve_colors()
        if self.loss:
            values = [v for _, v in self.loss]
            y_range = (min(values), max(values))
            painter.setPen(QPen(loss_color, 1.5))
            painter.drawPolyline(self._polygon(self.loss, box, x_range, y_range))
            painter.drawText(QPointF(box.left(), box.top() - 3), f"loss {values[-1]:.3f}")
        if self.agreement:
            painter.setPen(QPen(agreement_color, 1.5))
            painter.drawPolyline(self._polygon(self.agreement, box, x_range, (0.0, 1.0)))
            text = f"agreement {self.agreement[-1][1]:.1%}"
            corner = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop
            painter.drawText(box.adjusted(0, -14, 0, 0), corner, text)
        painter.end()
