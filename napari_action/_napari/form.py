"""The input half of the ACTION widget: which layers to learn from, and how.

:class:`LayerPicker` lists the 3D image layers (checked = used for training;
images without labels are unlabeled data) and the Labels layers holding
painted slices, each paired with the image it was painted on (guessed from
shape and name, changeable). :class:`OptionsForm` maps the remaining choices
onto :class:`~napari_action.config.TrainConfig` fields. Neither widget starts
anything; the dock widget reads them when Train is pressed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_action._napari.layers import image_layers, labels_layers, layer_shape_text, pair_labels_to_images
from napari_action._napari.threads import available_cores, training_threads
from napari_action._napari.view_plane import CHOICES as VIEW_CHOICES
from napari_action.config import BUDGETS, METHODS, PRIOR_SOURCES, TrainConfig

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

NO_IMAGE = "(no image)"
AXIS_AUTO = "auto (inferred)"


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


class OptionsForm(QWidget):
    """Axis, budget, method, stage-iii steps, device and CPU threads, mapped onto TrainConfig."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.view_combo = QComboBox()
        self.view_combo.addItems(list(VIEW_CHOICES))
        self.view_combo.setToolTip(
            "Which slices the viewer shows: an anatomical plane (from the image's NIfTI header), "
            "or the plane of the slices painted so far. napari opens NIfTI files on array axis 0."
        )
        self.axis_combo = QComboBox()
        self.axis_combo.addItems([AXIS_AUTO, "viewer slicing axis", "axis 0", "axis 1", "axis 2"])
        self.axis_combo.setToolTip(
            "Slicing axis: inferred from the painted labels (the axis along which few slices are "
            "painted; ties go to the axis the viewer slices), the viewer's, or a fixed one."
        )
        self.budget_combo = QComboBox()
        self.budget_combo.addItems(list(BUDGETS))
        self.budget_combo.setToolTip("cpu: small model, minutes on a laptop. paper: the method's GPU sizes.")
        self.method_combo = QComboBox()
        self.method_combo.addItems(list(METHODS))
        self.prior_combo = QComboBox()
        self.prior_combo.addItems(list(PRIOR_SOURCES))
        self.prior_combo.setToolTip(
            "What your painted slices say about the others, shown at once and used in training. "
            "propagation: your labels carried along the image from slice to slice, also beyond the "
            "painted range. interpolation: the shapes morphed between painted slices, ignoring the "
            "image (for masks whose structures have no contrast in the image)."
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 1_000_000)
        self.steps_spin.setToolTip("Steps of the semi-supervised stage iii (after the warm-up).")
        # torch-backed: imported when a form is made, not with this module (see the widget module's docstring).
        from napari_action.runtime import available_devices

        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_label = QLabel()
        self.device_label.setWordWrap(True)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(1, available_cores())
        self.threads_spin.setValue(training_threads())
        self.threads_spin.setToolTip(
            "torch's CPU threads for training and prediction. Default: every core (training runs at "
            "lower priority, so the viewer stays responsive). Two trainings on the same cores slow "
            "each other down several-fold."
        )
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("view slices", self.view_combo)
        layout.addRow("slicing axis", self.axis_combo)
        layout.addRow("budget", self.budget_combo)
        layout.addRow("method", self.method_combo)
        layout.addRow("labels between slices", self.prior_combo)
        layout.addRow("stage iii steps", self.steps_spin)
        layout.addRow("device", self.device_combo)
        layout.addRow("", self.device_label)
        layout.addRow("CPU threads", self.threads_spin)
        self.budget_combo.currentTextChanged.connect(self._on_budget_changed)
        self.device_combo.currentTextChanged.connect(self._describe_device)
        self.budget_combo.setCurrentText("paper" if "cuda" in available_devices() else "cpu")
        self._on_budget_changed(self.budget_combo.currentText())
        self._describe_device()

    def _on_budget_changed(self, budget: str) -> None:
        self.steps_spin.setValue(TrainConfig.preset(budget).steps_stage3)

    def _describe_device(self, *_) -> None:
        self.device_label.setText(f"will use: {describe_device(self.device_combo.currentText())}")

    def axis_choice(self, viewer_axis: int) -> int | None:
        """The chosen axis; None = infer from the labels."""
        text = self.axis_combo.currentText()
        if text == AXIS_AUTO:
            return None
        if text.startswith("viewer"):
            return viewer_axis
        return int(text.split()[-1])

    def config(self, axis: int | None, num_threads: int | None, **overrides: Any) -> TrainConfig:
        """The TrainConfig of these choices; ``overrides`` win (tests pass tiny budgets)."""
        fields = {
            "method": self.method_combo.currentText(),
            "prior_source": self.prior_combo.currentText(),
            "steps_stage3": self.steps_spin.value(),
            "device": self.device_combo.currentText(),
            "axis": axis,
            "num_threads": num_threads,
        }
        fields.update(overrides)
        return TrainConfig.preset(self.budget_combo.currentText(), **fields)


def describe_device(choice: str) -> str:
    """What ``choice`` resolves to, e.g. "CUDA: NVIDIA H100" or "CPU"; why not, if it cannot be used."""
    from napari_action.runtime import device_label, resolve_device  # torch-backed: see OptionsForm.__init__

    try:
        label = device_label(resolve_device(choice))
    except ValueError as exc:
        return str(exc)
    return label.split(",")[0] if label.startswith("CPU") else label
