"""The Refine panel's "Cohort" tab: the predicted volumes, worst first; a click shows the worst slice.

Each whole-volume prediction's labels and entropy make that volume's quality record (the core's
:mod:`napari_action.inference.quality`, the same record ``napari-action predict`` writes to
``quality.csv``), counted by the prediction worker, not on the GUI thread. The records of every
volume the current model predicted are rated together (with three or more, their median structure
volumes are the reference), so the list re-orders as more volumes are predicted. A click selects
the image layer and moves the viewer to the volume's worst slice along the model's slicing axis (a 3D
view goes to 2D for it, and the panel's status line says so). A volume whose image or prediction layer is
given new data (``layer.data = ...``) keeps a row without score or slice, out of date until predicted again.
A training volume's row says when the painted labels helped predict it
(:func:`~napari_action.training.volume_prediction.prediction_aid`): a saved model has only the
network, and ``napari-action predict`` rates such a scan's network-only mask, with another score.
"""

from __future__ import annotations

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QLabel, QListWidgetItem, QVBoxLayout, QWidget

from napari_action._napari.layers import find_prediction_layer, prediction_source
from napari_action._napari.refine.accepted import show_listed_slice
from napari_action._napari.refine.tabs import SliceList, header_item, slice_item, slice_of
from napari_action._napari.view_plane import layer_volume_meta
from napari_action.inference.quality import PredictionStats, VolumeQuality, rate_cohort
from napari_action.io.geometry import voxel_volume_ml

_EMPTY = "Predict the opened volumes (Predict all opened volumes, or Predict selected) to rate them here."
#: Ends the row of a volume whose prediction the painted labels helped make.
AIDED_TAG = "with your labels"
_AIDED_NOTE = (
    f' Rows "{AIDED_TAG}": the painted labels helped predict them; napari-action predict with the saved model '
    "has only the network, and rates its own mask of them."
)


class CohortTab(QWidget):
    """The volumes predicted by the current model, lowest quality score first.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose image layers are predicted.

    Attributes
    ----------
    records : dict of str to PredictionStats
        The quality record of each predicted image, by layer name.
    qualities : list of VolumeQuality
        The rated volumes as listed, worst first.
    outdated : dict of str to str
        Image name -> why its rating went (its image or prediction layer given new data), listed after the others.
    """

    #: A line for the panel's status line (a click that left the 3D view to show a slice).
    said = Signal(str)

    def __init__(self, viewer):
        super().__init__()
        self.viewer = viewer
        self.records: dict[str, PredictionStats] = {}
        self.qualities: list[VolumeQuality] = []
        self.aided_by: dict[str, str] = {}  # image name -> what besides the network made its prediction
        self.outdated: dict[str, str] = {}
        self._model_id: int | None = None
        self._class_names: dict[int, str] = {}
        self.summary_label = QLabel(_EMPTY)
        self.summary_label.setWordWrap(True)
        self.cohort_list = SliceList(
            "Quality score (1 = a sure prediction of the usual size), flags and the worst slice of each "
            "predicted volume, worst first; click one (or press Enter on it) to show that slice."
        )
        self.cohort_list.setMinimumHeight(90)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary_label)
        layout.addWidget(self.cohort_list)
        self.cohort_list.row_chosen.connect(self._on_item_clicked)
        viewer.layers.events.removed.connect(self._on_layer_removed)

    def volume_predicted(self, image_name: str, record: PredictionStats, model, aided_by: str | None = None) -> None:
        """Add the quality record of ``model``'s prediction of an image and list the cohort again.

        The record is counted off the GUI thread (the prediction worker's), at 1 mL per voxel;
        here it gets the voxel size of the image layer. ``aided_by``: what besides the network made the
        prediction (:attr:`~napari_action.progress.PredictionUpdate.aided_by`), shown on its row.
        """
        if image_name not in self.viewer.layers:
            return
        if id(model) != self._model_id:
            # Another model's scores are not comparable with this one's: the list starts over.
            self.records.clear()
            self.aided_by.clear()
            self.outdated.clear()
            self._model_id = id(model)
        self._class_names = dict(model.class_names)
        image = self.viewer.layers[image_name]
        meta = layer_volume_meta(image)
        self.records[image_name] = record.with_voxel_ml(voxel_volume_ml(meta.affine))
        self.outdated.pop(image_name, None)
        self.aided_by.pop(image_name, None)
        if aided_by:
            self.aided_by[image_name] = aided_by
        self._watch_data(image)
        self.refresh()

    def _watch_data(self, image) -> None:
        """Follow ``layer.data = ...`` on the rated image and its prediction layer (napari ignores a second connection
        of one callback)."""
        for layer in (image, find_prediction_layer(self.viewer, image)):
            if layer is not None:
                layer.events.data.connect(self._on_data_replaced)

    def _on_data_replaced(self, event) -> None:
        """An image or prediction layer given new data: its volume's score and worst slice rated what is gone.

        The row stayed as it was: its score described labels no longer there, and a click went to the old scan's
        worst slice, past the end of a crop. It stays, without them, saying why, until the volume is predicted again.
        """
        layer = event.source
        source = prediction_source(layer)
        name = layer.name if source is None else source
        if self.records.pop(name, None) is None:
            return
        self.aided_by.pop(name, None)
        changed = "the image" if source is None else repr(layer.name)
        self.outdated[name] = f"{changed} was given new data after it was predicted"
        self.refresh()

    def refresh(self) -> None:
        """Rate every recorded volume together and list them worst first."""
        self.qualities = rate_cohort(list(self.records.items()), self._class_names)
        self.cohort_list.clear()
        for quality in self.qualities:
            self.cohort_list.addItem(_row(quality, self.aided_by.get(quality.name)))
        for name, why in self.outdated.items():
            self.cohort_list.addItem(header_item(f"out of date · {name} · {why}: Predict rates it again"))
        if not self.qualities:
            self.summary_label.setText(_outdated_summary(len(self.outdated)) if self.outdated else _EMPTY)
            return
        compared = "sizes checked against their median" if len(self.qualities) >= 3 else "sizes not compared (under 3)"
        aided = _AIDED_NOTE if any(quality.name in self.aided_by for quality in self.qualities) else ""
        outdated = f" {_outdated_summary(len(self.outdated))}" if self.outdated else ""
        self.summary_label.setText(
            f"{len(self.qualities)} predicted volume(s), worst first; {compared}.{aided}{outdated}"
        )

    def _on_item_clicked(self, item: QListWidgetItem) -> None:
        said = show_listed_slice(self.viewer, slice_of(item), select=True)
        if said is not None:
            self.said.emit(said)

    def _on_layer_removed(self, event) -> None:
        name = self._volume_gone_with(event.value)
        if name is None:
            return
        rated, outdated = self.records.pop(name, None), self.outdated.pop(name, None)
        if rated is not None or outdated is not None:
            self.refresh()

    def _volume_gone_with(self, layer) -> str | None:
        """The volume whose row goes with ``layer``: a closed image's own, or the image of a deleted prediction layer.

        The score rates a prediction: with its layer deleted, the row rated labels no longer there, and a click
        showed the worst slice of a prediction the user could no longer see. A copy of the prediction layer still
        open (napari's Duplicate Layer copies its metadata) keeps the row.
        """
        source = prediction_source(layer)
        if source is None:
            return layer.name
        if any(prediction_source(other) == source for other in self.viewer.layers):
            return None
        return source

    def image_renamed(self, old: str, new: str) -> None:
        """An image was renamed in the viewer: its row follows it (kept under the old name, a click found no layer
        and the next prediction listed the volume twice)."""
        if old in self.records or old in self.outdated:
            for kept in (self.records, self.aided_by, self.outdated):
                if old in kept:
                    kept[new] = kept.pop(old)
            self.refresh()


def _outdated_summary(count: int) -> str:
    return f"{count} volume(s) out of date: their data changed after they were rated."


def _row(quality: VolumeQuality, aided_by: str | None = None) -> QListWidgetItem:
    """``0.42 · scan-3 · amygdala missing · slice 57``: a click shows that slice, the tooltip every flag.

    A prediction the painted labels helped make (``aided_by``) ends ``· with your labels``, and its tooltip says
    how: the same scan predicted by ``napari-action predict`` with the saved model is rated 0.558 where this row
    said 0.497, and nothing on the row told the two apart.
    """
    text = f"{quality.score:.2f} · {quality.name} · {quality.brief_flags()} · slice {quality.worst_slice}"
    notes = list(quality.flags)
    if aided_by:
        text += f" · {AIDED_TAG}"
        notes.append(
            f"Predicted {AIDED_TAG}: {aided_by}. napari-action predict with the saved model has only the "
            "network: it gives this scan the network's mask, and rates that mask."
        )
    item = slice_item(text, quality.name, quality.axis, quality.worst_slice)
    if notes:
        item.setToolTip("\n".join(notes))
    return item
