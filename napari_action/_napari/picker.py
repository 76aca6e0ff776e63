"""Which layers the ACTION widget learns from.

:class:`LayerPicker` lists the 3D image layers (checked = used for training;
images without labels are unlabeled data) and the Labels layers holding
painted slices, each paired with the image it was painted on (guessed from
shape and name, changeable). It stays plain Qt: a check-list and a table with
an image picker per row, new layers checked by default, are more than napari's layer-typed
magicgui pickers (one layer, or a plain multi-selection) offer. How to train is chosen in
:mod:`.options`. Neither starts anything; the dock widget reads them when
Train is pressed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_action._napari.layers import image_layers, labels_layers, layer_shape_text, pair_labels_to_images

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

NO_IMAGE = "(no image)"


class LayerPicker(QWidget):
    """Images to learn from and painted Labels layers with their images.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The lists follow its layer list (insertions, removals, renames).
    """

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.images_list = QListWidget()
        self.images_list.setToolTip("3D images to learn from. Images without painted labels are unlabeled data.")
        self.labels_table = QTableWidget(0, 2)
        self.labels_table.setHorizontalHeaderLabels(["painted labels", "belongs to image"])
        self.labels_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.labels_table.verticalHeader().hide()
        # Tab leaves the table for the rest of the form: stepping through its cells, it came back to the
        # first cell after each row's image box and never let a keyboard user reach the options or Train.
        self.labels_table.setTabKeyNavigation(False)
        self._unchecked: set[str] = set()  # remembered across refreshes; new layers start checked
        self._chosen_image: dict[str, str] = {}  # pairings the user picked by hand
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Images"))
        layout.addWidget(self.images_list)
        layout.addWidget(QLabel("Painted labels"))
        layout.addWidget(self.labels_table)
        for lst in (self.images_list,):
            lst.setMaximumHeight(90)
        self.labels_table.setMaximumHeight(110)
        self.images_list.itemChanged.connect(self._on_item_changed)
        self.labels_table.itemChanged.connect(self._on_item_changed)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        self.refresh()

    # -- reading --------------------------------------------------------------
    def selected_images(self) -> list:
        """Checked image layers, in layer-list order."""
        return [layer for layer in image_layers(self.viewer) if layer.name not in self._unchecked]

    def selected_labels(self) -> list[tuple[Any, str | None]]:
        """Checked labels layers with the name of their image (None: no image fits)."""
        pairs = []
        for row in range(self.labels_table.rowCount()):
            item = self.labels_table.item(row, 0)
            if item is None or item.checkState() != Qt.CheckState.Checked:
                continue
            combo = self.labels_table.cellWidget(row, 1)
            image = combo.currentText() if combo is not None else NO_IMAGE
            layer = self._layer(item.data(Qt.ItemDataRole.UserRole))
            if layer is not None:
                pairs.append((layer, None if image == NO_IMAGE else image))
        return pairs

    def set_checked(self, name: str, checked: bool) -> None:
        """Use or skip the image or labels layer called ``name``."""
        (self._unchecked.discard if checked else self._unchecked.add)(name)
        self.refresh()

    def pair(self, labels_name: str, image_name: str) -> None:
        """Pair the labels layer called ``labels_name`` with the image called ``image_name``, as if chosen by hand."""
        self._chosen_image[labels_name] = image_name
        self.refresh()

    def image_renamed(self, old: str, new: str) -> None:
        """Keep what was chosen for the image called ``old`` (skipped, paired by hand) for its new name."""
        if old in self._unchecked:
            self._unchecked.discard(old)
            self._unchecked.add(new)
        self._chosen_image = {labels: new if image == old else image for labels, image in self._chosen_image.items()}
        self.refresh()

    def _layer(self, name: str):
        # napari's LayerList is a list keyed by name, without a dict-style get().
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401

    # -- filling -------------------------------------------------------------------
    def refresh(self, event=None) -> None:
        """Rebuild both lists from the viewer's layers (keeps the user's choices)."""
        images, labels = image_layers(self.viewer), labels_layers(self.viewer)
        self.images_list.blockSignals(True)
        self.images_list.clear()
        for layer in images:
            self.images_list.addItem(self._check_item(QListWidgetItem(), layer))
        self.images_list.blockSignals(False)
        guessed = pair_labels_to_images(labels, images)
        self.labels_table.blockSignals(True)
        self.labels_table.setRowCount(len(labels))
        for row, layer in enumerate(labels):
            self.labels_table.setItem(row, 0, self._check_item(QTableWidgetItem(), layer))
            self.labels_table.setCellWidget(row, 1, self._image_combo(layer, images, guessed.get(layer.name)))
        self.labels_table.blockSignals(False)
        # A new cell widget sits at the table's top-left corner until the next layout pass: seen on
        # top of the first layer's name when layers were added while nothing else moved the table.
        self.labels_table.doItemsLayout()

    def _check_item(self, item, layer):
        item.setText(f"{layer.name}  ({layer_shape_text(layer)})")
        item.setData(Qt.ItemDataRole.UserRole, layer.name)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
        state = Qt.CheckState.Unchecked if layer.name in self._unchecked else Qt.CheckState.Checked
        item.setCheckState(state)
        return item

    def _image_combo(self, labels, images, guess: str | None) -> QComboBox:
        combo = QComboBox()
        combo.addItems([NO_IMAGE, *(img.name for img in images)])
        chosen = self._chosen_image.get(labels.name, guess)
        combo.setCurrentText(chosen if chosen in [img.name for img in images] else NO_IMAGE)
        combo.setProperty("labels_name", labels.name)
        combo.currentTextChanged.connect(self._on_combo_changed)
        return combo

    def _on_combo_changed(self, text: str) -> None:
        combo = self.sender()
        if combo is not None:
            self._chosen_image[combo.property("labels_name")] = text

    def _on_item_changed(self, item) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._unchecked.discard(name)
        else:
            self._unchecked.add(name)
