"""The "Refine" panel: accept corrections, see the training set, pick the next slices, check the cohort.

Four things a user does between (or during) training runs:

* **Accept corrections.** Edit a slice of an "<image> ACTION" prediction
  layer, then "Accept slice" (key ``Shift-A`` on the viewer) or "Accept all
  edited slices": the slices become training data (:mod:`.accepted`), reach a
  running training at once and a stopped one at the next Train or Update.
* **Training set.** Per volume, the painted and accepted slices; a click
  shows that slice.
* **Next slices to annotate.** From each volume's current prediction layer (core
  :func:`~napari_action.inference.next_slices.next_slices`): a class on no annotated slice
  first ("Amygdala missing"), then the middle of the largest unannotated run inside the predicted
  structure ("largest gap"). The uncertainty of the latest predictions
  (:mod:`napari_action.inference.uncertainty`) is shown per slice and, optionally, as
  "<image> uncertainty" layers.
* **Cohort** (:mod:`.cohort`): every predicted volume with its quality score and flags, worst
  first; a click shows its worst slice.

plus **Update once** (:mod:`.update_once`): a short training round on demand.
Lists and layers are read from the widget's training state (what counts as the
training set: :mod:`.training_set`); this panel keeps only the uncertainty
maps and the labeled slices it last listed. The tabs' widgets are built in
:mod:`.tabs` (the Cohort tab, with its records, in :mod:`.cohort`), the lists' rows and the next slices'
picks in :mod:`.listed_slices`.
"""

from __future__ import annotations

import logging

from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QGridLayout, QGroupBox, QLabel, QListWidgetItem, QPushButton, QSpinBox, QTabWidget
from superqt.utils import qthrottled

from napari_action._napari.edit_watch import EditWatch
from napari_action._napari.keys import ViewerKeyBinding
from napari_action._napari.layers import (
    SOURCE_KEY,
    UNCERTAINTY_KEY,
    is_prediction_layer,
    layer_shape,
)
from napari_action._napari.made_layers import is_duplicate
from napari_action._napari.refine.accepted import (
    accept_slices,
    copy_slices,
    current_slice,
    show_listed_slice,
    tracker_for_layer,
)
from napari_action._napari.refine.cohort import CohortTab
from napari_action._napari.refine.listed_slices import (
    next_slice_picks,
    next_slice_rows,
    outdated_prediction_rows,
    training_set_rows,
)
from napari_action._napari.refine.tabs import NextSlicesTab, TrainingSetTab, slice_of
from napari_action._napari.refine.training_set import (
    LabeledSlices,
    fitting_accepted,
    image_name_of,
    labeled_along,
    next_training_axis,
    painted_arrays,
    slice_axes,
    training_volumes,
)
from napari_action._napari.refine.uncertainty import find_uncertainty_layer, remove_outdated_map, uncertainty_layer
from napari_action._napari.refine.update_once import start_update_once
from napari_action._napari.view_plane import viewer_slicing_axis
from napari_action.inference.next_slices import NextSlice
from napari_action.inference.uncertainty import UncertaintyMaps, streamed_uncertainty

logger = logging.getLogger(__name__)

#: Viewer key that accepts the current slice of the selected prediction layer.
ACCEPT_KEY = "Shift-A"


class RefinePanel(QGroupBox):
    """Accept corrections, training-set list, next slices to annotate, the cohort's quality, Update once.

    Parameters
    ----------
    widget : ActionWidget
        The dock widget whose viewer, training state, picker and run callbacks are used.

    Attributes
    ----------
    uncertainty : UncertaintyMaps
        Uncertainty volumes of the latest predictions, by image name.
    labeled : dict
        Image name -> painted or accepted slices, as last listed.
    labeled_axis : int or None
        The model's slicing axis when they were listed.
    labeled_axes : dict
        Image name -> the array axis those slice indices run along (another for a scan stored turned).
    key_binding : ViewerKeyBinding
        ``Shift-A`` on the viewer; released when the widget leaves the viewer.
    """

    def __init__(self, widget):
        super().__init__("Refine")
        self.widget = widget
        self.viewer = widget.viewer
        self.uncertainty = UncertaintyMaps()
        self.labeled: dict[str, set[int]] = {}
        self.labeled_axis: int | None = None
        self.labeled_axes: dict[str, int] = {}
        self._build()
        self.refresh_later = qthrottled(self.refresh, timeout=300, parent=self)
        self.rank_later = qthrottled(self._update_uncertainty, timeout=300, parent=self)
        # Ranking a large volume costs tens of milliseconds of GUI time: rarely while streaming.
        self.rank_streamed = qthrottled(self._update_uncertainty, timeout=5000, parent=self)
        self.score_later = qthrottled(self._show_slice_score, timeout=200, parent=self)
        self.key_binding = ViewerKeyBinding(self.viewer, ACCEPT_KEY, self.accept_current_slice)
        # The binding is no QObject, so it still hears this when the panel's C++ side dies.
        self.destroyed.connect(self.key_binding.release)
        widget.installEventFilter(self)  # removed from the dock: give the key back
        widget.state_changed.connect(self._on_state_changed)
        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_layers_changed)
        layers.events.removed.connect(self._on_layer_removed)
        layers.selection.events.active.connect(self._on_active_changed)
        self.viewer.dims.events.current_step.connect(self._on_dims_step)
        self._watched: dict[int, EditWatch] = {}
        self._on_layers_changed()

    # -- layout ----------------------------------------------------------------------
    def _build(self) -> None:
        self.update_button = QPushButton("Update once")
        self.update_button.setToolTip(
            "Train a short round from the current weights on the current labels, "
            "then predict every training volume again."
        )
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100_000)
        self.steps_spin.setValue(50)
        self.steps_spin.setSuffix(" steps")
        self.status_label = QLabel("Edit a slice of an '… ACTION' layer, then accept it.")
        self.status_label.setWordWrap(True)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_training_tab(), "Training set")
        self.tabs.addTab(self._build_next_tab(), "Next slices to annotate")
        self.cohort_tab = CohortTab(self.viewer)
        self.cohort_tab.said.connect(self.status_label.setText)
        self.tabs.addTab(self.cohort_tab, "Cohort")
        grid = QGridLayout(self)
        grid.addWidget(self.update_button, 0, 0)
        grid.addWidget(self.steps_spin, 0, 1)
        grid.addWidget(self.tabs, 1, 0, 1, 2)
        grid.addWidget(self.status_label, 2, 0, 1, 2)
        self.update_button.clicked.connect(self.update_once)

    def _build_training_tab(self) -> TrainingSetTab:
        tab = TrainingSetTab(ACCEPT_KEY)
        self.accept_button, self.accept_all_button = tab.accept_button, tab.accept_all_button
        self.copy_checkbox, self.training_list = tab.copy_checkbox, tab.training_list
        self.accept_button.clicked.connect(self.accept_current_slice)
        self.accept_all_button.clicked.connect(self.accept_edited_slices)
        self.training_list.row_chosen.connect(self._on_item_clicked)
        return tab

    def _build_next_tab(self) -> NextSlicesTab:
        tab = NextSlicesTab()
        self.show_uncertainty, self.slice_score_label = tab.show_uncertainty, tab.slice_score_label
        self.next_list = tab.next_list
        self.show_uncertainty.toggled.connect(self._on_show_toggled)
        self.next_list.row_chosen.connect(self._on_item_clicked)
        return tab

    # -- state --------------------------------------------------------------------------
    @property
    def training_state(self):
        return self.widget.training_state

    def _prediction_layers(self) -> list:
        return [layer for layer in self.viewer.layers if is_prediction_layer(layer)]

    def _refresh_buttons(self) -> None:
        state = self.training_state
        self.update_button.setEnabled(state.can_continue and not state.busy)
        for button in (self.accept_button, self.accept_all_button):
            button.setEnabled(bool(self._prediction_layers()))

    def _on_state_changed(self) -> None:
        self._refresh_buttons()
        self.refresh_later()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        """Release ``Shift-A`` when the widget is taken out of the viewer, take it back if re-docked."""
        if obj is self.widget and event.type() == QEvent.Type.ParentChange:
            if obj.parent() is None:
                self.key_binding.release()
            else:
                self.key_binding.bind()
        return False

    def _on_layers_changed(self, event=None) -> None:
        """Follow strokes, undo and redo in every Labels layer (painted or prediction), new data in every image."""
        for layer in self.viewer.layers:
            if isinstance(layer, Labels) and id(layer) not in self._watched:
                self._watched[id(layer)] = EditWatch(layer, self._on_edit)
            elif isinstance(layer, Image) and UNCERTAINTY_KEY not in layer.metadata:
                layer.events.data.connect(self._on_image_data_replaced)  # napari ignores a second connection
        self._refresh_buttons()
        self.refresh_later()

    def _on_layer_removed(self, event) -> None:
        layer = event.value
        if (watch := self._watched.pop(id(layer), None)) is not None:
            watch.close()
        if is_prediction_layer(layer):
            self._drop_accepted_slices_of(layer)
        elif UNCERTAINTY_KEY not in layer.metadata:
            self.uncertainty.forget(layer.name)
        self._on_layers_changed()

    def _drop_accepted_slices_of(self, layer) -> None:
        """The deleted prediction layer held the accepted slices' content: they go with it, out of a running training
        too. Not with the user's copy of it (Duplicate Layer): the layer napari-action made still holds them."""
        if is_duplicate(layer):
            return
        name = layer.metadata[SOURCE_KEY]
        if self.training_state.accepted_slices.pop(name, None):
            self.status_label.setText(f"The accepted slices of {name!r} went with its prediction layer.")
            self.widget.labels_changed()

    def _on_image_data_replaced(self, event) -> None:
        """An image given new data (``layer.data = a crop``, another scan): its uncertainty map scored the old data's
        slices, its uncertainty layer showed it over the new data, and the lists named slices of the old data (a
        click went past the end of a crop)."""
        self.uncertainty.forget(event.source.name)
        if (said := remove_outdated_map(self.viewer, event.source.name)) is not None:
            self.status_label.setText(said)
        self.refresh_later()

    def image_renamed(self, old: str, new: str) -> None:
        """An image was renamed in the viewer: its uncertainty map, its cohort row and lists follow it."""
        self.uncertainty.rename(old, new)
        self.cohort_tab.image_renamed(old, new)
        self.refresh_later()

    def _on_edit(self, layer) -> None:
        name = layer.metadata.get(SOURCE_KEY)
        if name is not None and self.training_state.accepted_slices.get(name):
            # An accepted slice may have been corrected again (or a correction undone): the training labels changed.
            self.widget.labels_changed()
        self.refresh_later()

    def _on_dims_step(self, event=None) -> None:
        # A bound method (held weakly by napari), not the throttler itself, which dies with the panel.
        self.score_later()

    def _on_active_changed(self, event=None) -> None:
        name = self._image_name(self.viewer.layers.selection.active)
        painted = self._painted_layer(name) if name else None
        target = repr(painted.name) if painted is not None else "the painted layer"
        self.copy_checkbox.setText(f"Also copy accepted slices into {target}")
        self.score_later()

    # -- volumes, painted layers and the slicing axis ----------------------------------------
    def training_volumes(self) -> list[tuple]:
        """(image layer, painted Labels layer or None) of the volumes to list."""
        return training_volumes(self.viewer, self.training_state, self.widget.picker)

    def _painted_layer(self, image_name: str):
        return next((labels for image, labels in self.training_volumes() if image.name == image_name), None)

    def _image_name(self, layer) -> str | None:
        return image_name_of(layer, self.training_volumes())

    def slicing_axis(self, painted: list) -> int:
        """The model's axis; before there is one, the axis the next Train would decide (:func:`decide_axis`)."""
        return next_training_axis(self.training_state, self.viewer, self.widget.options, painted)

    # -- training-set list --------------------------------------------------------------
    def _labeled_along(self, volumes: list[tuple], axis: int) -> LabeledSlices:
        axes = slice_axes(self.training_state, volumes, axis)  # a scan stored turned has its slices along another
        accepted = fitting_accepted(self.training_state, volumes)  # those of a prediction layer that fits its image
        return labeled_along(volumes, painted_arrays(volumes), axes, accepted)

    def refresh(self) -> None:
        """Recompute the labeled slices of every volume and list them."""
        volumes = self.training_volumes()
        axis = self.slicing_axis(list(painted_arrays(volumes).values()))
        self.training_list.clear()
        labeled = self._labeled_along(volumes, axis)
        self.labeled = {name: painted | accepted for name, (painted, accepted) in labeled.items()}
        self.labeled_axis, self.labeled_axes = axis, slice_axes(self.training_state, volumes, axis)
        for row in training_set_rows(volumes, labeled, self.labeled_axes, self.training_state):
            self.training_list.addItem(row)
        self._refresh_buttons()
        self._update_suggestions()

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        said = show_listed_slice(self.viewer, slice_of(item))
        if said is not None:
            self.status_label.setText(said)

    # -- accepting ------------------------------------------------------------------------
    def prediction_layer(self):
        """The prediction layer to accept from: the selected one, else the selected image's."""
        selection = self.viewer.layers.selection
        for layer in (selection.active, *selection):
            if layer is not None and is_prediction_layer(layer):
                return layer
        predictions = self._prediction_layers()
        name = self._image_name(selection.active)
        matching = [layer for layer in predictions if layer.metadata[SOURCE_KEY] == name]
        if matching:
            return matching[0]
        return predictions[0] if len(predictions) == 1 else None

    def accept_current_slice(self) -> list[int]:
        """Accept the slice shown of the selected prediction layer (button and ``Shift-A``)."""
        layer = self.prediction_layer()
        if layer is None:
            show_warning("ACTION: select an '<image> ACTION' prediction layer to accept one of its slices.")
            return []
        shown = viewer_slicing_axis(self.viewer)
        tracker = tracker_for_layer(self.training_state, layer, shown)
        if self.viewer.dims.ndisplay != 2 or shown != tracker.axis:
            # The slice along the model's axis at the viewer's position is not the one the user sees.
            seen = "a 3D view" if self.viewer.dims.ndisplay != 2 else f"slices along axis {shown}"
            show_warning(
                f"ACTION: the viewer shows {seen}, but accepted slices run along the model's slicing axis "
                f"{tracker.axis}; show a slice along axis {tracker.axis} in 2D (a click in the Training set "
                "list does), check it and accept it then."
            )
            return []
        return self._accept(tracker, [current_slice(self.viewer, layer, tracker.axis)])

    def accept_edited_slices(self) -> int:
        """Accept every slice edited in any prediction layer; returns how many were new."""
        count = 0
        for layer in self._prediction_layers():
            tracker = self.training_state.trackers.get(id(layer))
            if tracker is not None and tracker.layer is layer and tracker.edited_slices:
                count += len(self._accept(tracker, sorted(tracker.edited_slices)))
        if not count:
            self.status_label.setText("No edited slice left to accept.")
        return count

    def _accept(self, tracker, slices: list[int]) -> list[int]:
        name = tracker.layer.metadata[SOURCE_KEY]
        new = accept_slices(self.training_state, tracker, slices)
        accepted = self.training_state.accepted_slices.get(name, set())
        copied = ""
        painted = self._painted_layer(name)
        if self.copy_checkbox.isChecked() and painted is not None:
            copy_slices(tracker.layer, painted, tracker.axis, [s for s in slices if s in accepted])
            copied = f", copied into {painted.name!r}"
        running = self.widget.run is not None and self.widget.run.is_running
        if new:
            self.widget.labels_changed(immediately=True)  # a running training gets them before its next step
        plan = self.training_state.plan
        if plan is not None and all(image.name != name for image in plan.images):
            # Update once and a running training learn from the plan's volumes only.
            where = f"used at the next Train ({name!r} is not one of the volumes the current model trains on)"
        elif running:
            where = "sent to the running training"
        else:
            where = "used at the next Train or Update once"
        self.status_label.setText(f"Accepted slice(s) {new or slices} of {name!r}{copied}; {where}.")
        self.refresh()
        return new

    # -- uncertainty and next slices --------------------------------------------------------
    def slices_streamed(self, batch) -> None:
        """Record the uncertainty of streamed slices (called by the widget as they arrive)."""
        state = self.training_state
        if state.plan is None or state.trainer is None:
            return
        n_classes = len(state.trainer.class_values)
        for prediction in batch:
            if prediction.volume_index < len(state.plan.images) and not state.plan.replaced(prediction.volume_index):
                image = state.plan.images[prediction.volume_index]
                values = prediction.uncertainty  # computed in the training worker (workers._drive)
                if values is None:
                    values = streamed_uncertainty(prediction.confidence, n_classes)
                shape, scores = layer_shape(image), prediction.slice_scores
                self.uncertainty.set_slices(image.name, shape, prediction.axis, prediction.start, values, scores)
        self.rank_streamed()

    def volume_predicted(self, image_name: str, update, record) -> None:
        """Record a whole-volume prediction's entropy and quality record (and show it, if uncertainty layers are on)."""
        trainer = self.training_state.trainer
        if update.entropy is None or trainer is None or image_name not in self.viewer.layers:
            return
        axis = trainer.axis if update.axis is None else update.axis  # a volume stored turned has its own
        found = self.uncertainty.set_volume(image_name, update.entropy, axis, update.slice_scores)
        if record is not None:
            self.cohort_tab.volume_predicted(image_name, record, trainer, aided_by=update.aided_by)
        if self.show_uncertainty.isChecked():
            uncertainty_layer(self.viewer, self.viewer.layers[image_name], found.volume)
        self.rank_later()

    def _sync_layers(self) -> None:
        """Opted in: show every uncertainty map as a layer (made if missing, else refreshed)."""
        if not self.show_uncertainty.isChecked():
            return
        for name, found in self.uncertainty.maps.items():
            if name in self.viewer.layers:
                uncertainty_layer(self.viewer, self.viewer.layers[name], found.volume)

    def _update_uncertainty(self) -> None:
        self._sync_layers()  # streamed slices were written into the layers' data in place
        self._update_suggestions()

    def _on_show_toggled(self, checked: bool) -> None:
        # Opt-in: the layers would otherwise crowd the layer list, sessions and exports of every user.
        self._sync_layers()
        for name in self.uncertainty.maps:
            layer = find_uncertainty_layer(self.viewer, name)
            if layer is not None:
                layer.visible = checked

    def _update_suggestions(self) -> None:
        self.next_list.clear()
        for row in next_slice_rows(self.next_slices()) + outdated_prediction_rows(self.viewer, self.training_volumes()):
            self.next_list.addItem(row)
        self._show_slice_score()

    def next_slices(self) -> list[tuple[str, int, NextSlice]]:
        """(image name, axis, pick) of the slices to annotate next, over every volume with a prediction
        (:func:`~.listed_slices.next_slice_picks`)."""
        names = self.training_state.plan.class_names() if self.training_state.plan is not None else {}
        axis = self.slicing_axis([])
        volumes = self.training_volumes()
        # The list is refreshed (throttled) after the model changes; a ranking can come first, e.g. the
        # first streamed slices of a new model sliced along another axis than the loaded one it replaced.
        labeled_by_name = self.labeled
        if axis != self.labeled_axis:
            along = self._labeled_along(volumes, axis)
            labeled_by_name = {name: painted | accepted for name, (painted, accepted) in along.items()}
        axes = slice_axes(self.training_state, volumes, axis)
        return next_slice_picks(self.viewer, volumes, labeled_by_name, axes, names)

    def _show_slice_score(self) -> None:
        name = self._image_name(self.viewer.layers.selection.active)
        if name is None and len(self.uncertainty.maps) == 1:
            name = next(iter(self.uncertainty.maps))
        found = self.uncertainty.get(name) if name else None
        if found is None or name not in self.viewer.layers:
            self.slice_score_label.setText("No prediction yet for the selected volume.")
            return
        index = current_slice(self.viewer, self.viewer.layers[name], found.axis)
        scores = found.scores()
        if not 0 <= index < scores.size or not found.covered[index]:
            self.slice_score_label.setText(f"Slice {index} of {name!r}: not predicted yet.")
            return
        rank = int((scores > scores[index]).sum()) + 1
        labeled = (
            ", labeled" if found.axis == self.labeled_axes.get(name) and index in self.labeled.get(name, ()) else ""
        )
        self.slice_score_label.setText(
            f"Slice {index} of {name!r}: uncertainty score {scores[index]:.3f} "
            f"(#{rank} of {scores.size} slices{labeled})."
        )

    # -- update once --------------------------------------------------------------------------
    def update_once(self) -> bool:
        """Train ``steps_spin`` steps from the current weights, then predict the training volumes.

        Returns
        -------
        bool
            False if nothing was started (an error notification says why, unless training or a job was running).
        """
        steps = self.steps_spin.value()
        try:
            started = start_update_once(self.widget, steps)
        except ValueError as exc:
            show_error(f"ACTION: {exc}")
            return False
        if started:
            self.status_label.setText(
                f"Update once: {steps} steps from the current weights, then every training volume is predicted again."
            )
        return started
