"""The two tabs of the Refine panel, as widgets only: the panel connects them.

* :class:`TrainingSetTab`: accept buttons, the copy option, the list of labeled slices.
* :class:`NextSlicesTab`: the uncertainty option, the shown slice's score, the next slices to annotate.

Both lists hold :func:`slice_item` rows (a click, or Enter, shows that slice) under
:func:`header_item` rows naming each volume.
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

_ROLE = Qt.ItemDataRole.UserRole
# The panel scrolls, so a list can keep room for a few rows on small screens.
_LIST_HEIGHT = (90, 130)


class TrainingSetTab(QWidget):
    """Accept corrections; the painted and accepted slices of every volume.

    Parameters
    ----------
    accept_key : str
        The viewer key that accepts the shown slice, named on the button.
    """

    def __init__(self, accept_key: str):
        super().__init__()
        self.accept_button = QPushButton(f"Accept slice ({accept_key})")
        self.accept_button.setToolTip(
            "Use the slice shown of the selected '… ACTION' layer, with your corrections, as labeled training data."
        )
        self.accept_all_button = QPushButton("Accept all edited slices")
        self.copy_checkbox = QCheckBox("Also copy accepted slices into the painted layer")
        self.copy_checkbox.setToolTip(
            "Off: only the training labels get them. On: your painted Labels "
            "layer gets them too (undoable with Ctrl+Z there)."
        )
        self.training_list = _slice_list("Labeled slices per volume; click one (or press Enter on it) to show it.")
        grid = QGridLayout(self)
        grid.addWidget(self.accept_button, 0, 0)
        grid.addWidget(self.accept_all_button, 0, 1)
        grid.addWidget(self.copy_checkbox, 1, 0, 1, 2)
        grid.addWidget(self.training_list, 2, 0, 1, 2)


class NextSlicesTab(QWidget):
    """Uncertainty layers on demand, the score of the shown slice, the slices to annotate next."""

    def __init__(self):
        super().__init__()
        self.show_uncertainty = QCheckBox("Show uncertainty layers")
        self.show_uncertainty.setToolTip(
            "Normalised entropy of the last whole-volume prediction "
            "(streamed slices: rescaled 1 - max probability); bright = unsure."
        )
        self.slice_score_label = QLabel("No prediction yet.")
        self.slice_score_label.setWordWrap(True)
        self.next_list = _slice_list(
            "A class on no annotated slice first, then the middle of the largest unannotated run "
            "inside the predicted structure; click one (or press Enter on it) to show it."
        )
        layout = QVBoxLayout(self)
        layout.addWidget(self.show_uncertainty)
        layout.addWidget(self.slice_score_label)
        layout.addWidget(self.next_list)


def slice_item(text: str, image_name: str, axis: int, index: int) -> QListWidgetItem:
    """A list row that shows slice ``index`` along ``axis`` of ``image_name`` when clicked."""
    item = QListWidgetItem(text)
    item.setData(_ROLE, (image_name, axis, index))
    return item


def header_item(text: str) -> QListWidgetItem:
    """A list row naming a volume: enabled (readable) but not selectable."""
    item = QListWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled)
    return item


def slice_of(item: QListWidgetItem) -> tuple[str, int, int] | None:
    """(image name, axis, slice index) of a :func:`slice_item`; None for a header."""
    return item.data(_ROLE)


class SliceList(QListWidget):
    """A list of :func:`slice_item` rows; :attr:`row_chosen` gives the row clicked, or chosen with Enter."""

    #: A row clicked, or activated from the keyboard (Enter), which ``itemClicked`` alone misses.
    row_chosen = Signal(QListWidgetItem)

    def __init__(self, tooltip: str):
        super().__init__()
        self.setToolTip(tooltip)
        self.itemClicked.connect(self.row_chosen)
        # Where a single click also activates a row (a platform setting), a row is chosen twice: harmless.
        self.itemActivated.connect(self.row_chosen)


def _slice_list(tooltip: str) -> SliceList:
    slices = SliceList(tooltip)
    slices.setMinimumHeight(_LIST_HEIGHT[0])
    slices.setMaximumHeight(_LIST_HEIGHT[1])
    return slices
