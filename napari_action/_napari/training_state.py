"""The live training state of one ACTION widget, kept apart from its Qt widgets.

:class:`TrainingPlan` is the validated answer to "what do we train on":
image layers in volume order and, per volume, the Labels layer painted on it.
:class:`TrainingState` owns the trainer, the current run, the running
prediction/save job, the edit trackers of the prediction layers and the accepted
slices. It is a plain object (not a QObject), so the widget's ``destroyed`` signal
can still reach :meth:`TrainingState.abandon` while the widget's C++ side goes away.

Not to be confused with a *session* (:mod:`napari_action.io.session_store`): the
store on disk that a snapshot of this state and of the viewer's layers is saved to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from napari.qt.threading import WorkerBase

from napari_action._napari.image_checks import image_type_problem
from napari_action._napari.layers import (
    EditTracker,
    class_names_of,
    colours_of_every_label,
    image_layers,
    layer_array,
    layer_image_data,
    layer_shape,
    layer_shape_text,
    prediction_source,
    snapshot_labels,
)
from napari_action._napari.prediction_job import PredictionJob
from napari_action._napari.run_state import RunState
from napari_action._napari.unused_layers import unused_layers_note
from napari_action._napari.view_plane import layer_geometry, training_order
from napari_action._napari.workers import TrainingRun
from napari_action._napari.writer import layer_world_affine
from napari_action.data.slicing_axis import AxisDecision, decide_axis
from napari_action.inference.model_protocol import SegmentationModel, TrainableModel
from napari_action.io.geometry import grid_difference, same_voxel_grid
from napari_action.training.volume_turns import model_order, paint_in_painted_order

if TYPE_CHECKING:
    from napari_action.io.checkpoint import Checkpoint
    from napari_action.io.reoriented import Reorientation

logger = logging.getLogger(__name__)

#: Placeholder of a volume whose prediction layer is made at its first streamed write.
PENDING = "pending"


@dataclass
class TrainingPlan:
    """Image layers in trainer volume order and the painted labels of each.

    Labeled volumes come first (the trainer takes ``labels[k]`` for
    ``volumes[k]``), then the selected images without labels.
    """

    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    # What training reads from each image, taken once (:meth:`image_volumes`): the arrays the trainer holds.
    volumes: list = field(default_factory=list)

    @classmethod
    def from_picker(cls, picker) -> TrainingPlan:
        """Validate the picker's selection.

        Raises
        ------
        ValueError
            With a message telling the user what to change.
        """
        images = {layer.name: layer for layer in picker.selected_images()}
        pairs = picker.selected_labels()
        if not pairs:
            raise ValueError(
                "No painted Labels layer is selected: add a Labels layer over a 3D image, "
                "paint a few slices in it, then press Train." + unused_layers_note(picker.viewer)
            )
        plan = cls()
        for labels, image_name in pairs:
            image = _paired_image(labels, image_name, images, picker.viewer)
            if _index(plan.images, image) is not None:
                other = plan.labels[_index(plan.images, image)]
                raise ValueError(
                    f"Both {other.name!r} and {labels.name!r} are paired with image "
                    f"{image.name!r}; uncheck one of them or pair it with another image."
                )
            painted = layer_array(labels)
            if not painted.any():
                raise ValueError(f"Nothing is painted in {labels.name!r} yet: paint a few slices first, or uncheck it.")
            negative = negative_values_problem(labels.name, painted)
            if negative is not None:
                raise ValueError(negative)
            plan.images.append(image)
            plan.labels.append(labels)
        plan.images += [img for img in images.values() if _index(plan.images, img) is None]
        problem = next(filter(None, map(image_type_problem, plan.images)), None)
        if problem is not None:
            raise ValueError(problem)
        return plan

    def index_of(self, image) -> int | None:
        """The volume index of image layer ``image`` (the layer itself, not one of its name); None if not trained."""
        return _index(self.images, image)

    def image_volumes(self) -> list:
        """The data of each image as training reads it (zarr or dask stays lazy), taken at the first call."""
        if not self.volumes:
            self.volumes = [layer_image_data(image) for image in self.images]
        return self.volumes

    def replaced(self, index: int) -> bool:
        """True once the image of volume ``index`` holds other data than training read (``layer.data = ...``).

        The trainer keeps the data it read: predicted by its volume index, the old scan was written into a layer
        shaped like the new one (a crop or another scan loaded into the layer), and nothing worked again.
        """
        return bool(self.volumes) and layer_image_data(self.images[index]) is not self.volumes[index]

    def labels_layers(self) -> list:
        """The painted layers in use (never written to)."""
        return [layer for layer in self.labels if layer is not None]

    def label_snapshots(self) -> list[np.ndarray | None]:
        """Private copies of the painted labels, one per labeled volume."""
        return [snapshot_labels(layer) for layer in self.labels]

    def class_names(self) -> dict[int, str]:
        """Label value -> name from the painted layers' features (first wins)."""
        names: dict[int, str] = {}
        for layer in self.labels_layers():
            for value, name in (class_names_of(layer) or {}).items():
                names.setdefault(value, name)
        return names

    def colormap(self):
        """The first painted layer's colormap, so predictions keep the painted colours."""
        layers = self.labels_layers()
        return layers[0].colormap if layers else None

    def used_layers(self) -> list:
        """The plan's images, then its painted layers."""
        return [*self.images, *self.labels_layers()]

    def uses(self, layer) -> bool:
        """True if ``layer`` is one of the plan's images or painted layers."""
        return any(layer is used for used in self.used_layers())

    def volume_of(self, layer) -> int:
        """Volume index of an image, its painted layer or its prediction layer (default 0)."""
        source = prediction_source(layer)
        for index, image in enumerate(self.images):
            painted = self.labels[index] if index < len(self.labels) else None
            if layer is image or layer is painted or source == image.name:
                return index
        return 0


def negative_values_problem(name: str, labels: np.ndarray) -> str | None:
    """What to do about the negative values in the labels of the layer called ``name``; None without any.

    Two ways lead there: a scan of few integer values opened as labels, and a label painted below 0
    (napari's label box goes below 0 on a layer of signed integers, one "decrease label" key too many).
    """
    if labels.dtype.kind != "i" or labels.min() >= 0:
        return None
    count = int(np.count_nonzero(labels < 0))
    return (
        f"{name!r} holds negative values (down to {labels.min()}, on {count} voxel{'s' if count > 1 else ''}): 0 "
        "means unpainted and each class is a positive number. If you painted them (the label box of a layer of "
        "signed integers goes below 0), erase them or paint them over with a positive label; if the layer is a "
        "scan (a file of few integer values opens as labels), right-click it in the layer list > Convert to Image; "
        "else uncheck it."
    )


def removed_layer_warning(name: str) -> str:
    """What training does when a layer it uses is removed, and what the user can do next."""
    return (
        f"ACTION: layer {name!r} was removed, so training stops after its current step. The model trained so far "
        "stays: Predict all opened volumes or Save model… use it; Train starts again on the layers left."
    )


def _index(layers: list, layer) -> int | None:
    """Position of ``layer`` in ``layers`` by identity (layers do not compare by value)."""
    return next((i for i, item in enumerate(layers) if item is layer), None)


def _paired_image(labels, image_name: str | None, images: dict, viewer):
    if image_name is None:
        fits = [f"{img.name!r} ({layer_shape_text(img)})" for img in images.values()]
        raise ValueError(
            f"Labels layer {labels.name!r} has shape {layer_shape_text(labels)}, but no selected image has that shape"
            + (f" (selected: {', '.join(fits)})" if fits else " (no 3D image is selected)")
            + ". Labels must lie on the voxel grid of their image; uncheck the layer or fix its shape."
            + unused_layers_note(viewer)
        )
    image = images.get(image_name)
    if image is None:
        raise ValueError(f"Image {image_name!r}, paired with {labels.name!r}, is not selected or is not 3D.")
    if layer_shape(image) != layer_shape(labels):
        raise ValueError(
            f"Labels layer {labels.name!r} has shape {layer_shape_text(labels)} but its image {image.name!r} has shape "
            f"{layer_shape_text(image)}. Labels must lie on the voxel grid of their image."
        )
    # Compared as napari draws them: what was painted lies over the image only if both transforms agree.
    if not same_voxel_grid(layer_world_affine(labels), layer_world_affine(image)):
        raise ValueError(
            f"Labels layer {labels.name!r} has the shape of {image.name!r} but is placed elsewhere in the viewer "
            f"({grid_difference(layer_world_affine(labels), layer_world_affine(image))}), so what you painted "
            "does not lie over those voxels. Paint on a Labels layer made while the image was selected "
            "(napari copies its placement), or open the labels file saved with the image's header."
        )
    return image


class TrainingInit(NamedTuple):
    """Where the next training starts, along which axis it slices, and why not from the loaded model."""

    axis_decision: AxisDecision  # the slicing axis, decided once; handed down in TrainConfig.axis
    checkpoint: Checkpoint | None = None  # to continue from; None: new weights
    reason: str | None = None  # why the loaded model's checkpoint is not continued


def build_trainer(
    volumes, labels, config, class_names, init=None, labeled_slices=None, spacings=None, affines=None, names=None
):
    """Build the trainer (runs in the worker thread: normalising big volumes takes seconds).

    ``config.axis`` is the slicing axis the widget decided (:meth:`TrainingState.training_init`).
    With an ``init`` checkpoint (a loaded model) training continues from its
    weights, so its network sizes replace the form's (its axis is the decided one).
    ``labeled_slices`` (volume index -> slices) count as labeled even where
    they hold only background: the accepted slices. ``affines`` (each image's voxel → world)
    let the trainer carry the painted images' labels onto the images nobody painted.
    """
    from napari_action.training.trainer import Trainer  # imports torch: see the widget module's docstring

    if init is not None:
        config = config.replace(model=init.config.model)
    return Trainer(
        volumes,
        labels,
        config,
        class_names=class_names,
        init=init,
        labeled_slices=labeled_slices,
        spacings=spacings,
        affines=affines,
        names=names,
    )


class TrainingState:
    """Trainer, run, jobs, edit trackers and accepted slices of one widget (no Qt widgets inside)."""

    def __init__(self):
        # The current model: a trainer, or a model loaded from a checkpoint or a session.
        self.trainer: SegmentationModel | None = None
        self.plan: TrainingPlan | None = None
        self.run: TrainingRun | None = None
        # A prediction job, or the worker saving the model.
        self.job: PredictionJob | WorkerBase | None = None
        # Per training volume: its tracker, PENDING (no layer yet) or None (layer deleted).
        self.targets: list = []
        self.trackers: dict[int, EditTracker] = {}
        self.resume_after_job = False
        self._pending_job: Callable[[], None] | None = None
        # Image name -> slices the user accepted as correct (the refinement panel records them).
        self.accepted_slices: dict[str, set[int]] = {}
        # A loaded model's checkpoint: the next training run starts from its weights.
        self.init_checkpoint = None
        # The slicing axis of the model being built, and why (the status line shows it when ready).
        self.axis_decision: AxisDecision | None = None

    @property
    def colormap(self):
        """The painted colours as they are now, for the prediction layers (None without a plan).

        Read at each write, so colours shuffled or set after Train reach the predictions; a copy drawing
        every class, so that "show selected label" on the painted layer hides none in the predictions.
        """
        colormap = self.plan.colormap() if self.plan is not None else None
        return None if colormap is None else colours_of_every_label(colormap)

    @property
    def job_running(self) -> bool:
        return self.job is not None or self._pending_job is not None

    @property
    def predicting(self) -> bool:
        """A prediction job is running (Stop cancels it)."""
        return isinstance(self.job, PredictionJob) and self.job.is_running

    def cancel_prediction(self) -> bool:
        """Stop a running prediction job after its current slices (on a 512 x 512 x 400 CT one took minutes, and
        nothing stopped it); False if none runs."""
        if not self.predicting:
            return False
        self.job.cancel()
        return True

    @property
    def busy(self) -> bool:
        """A run or a job is active."""
        return (self.run is not None and self.run.is_running) or self.job_running

    @property
    def can_continue(self) -> bool:
        """True when the model is a trainer of the current plan, which can train further ("Update once")."""
        return self.plan is not None and isinstance(self.trainer, TrainableModel)

    def begin(self, plan: TrainingPlan, axis_decision: AxisDecision | None = None) -> None:
        """Start over with a new plan; the previous model is dropped (the new one comes when ready).

        ``axis_decision`` is the slicing axis the new model is built along, and why.
        """
        self.trainer, self.plan, self.axis_decision = None, plan, axis_decision
        self.targets = [PENDING] * len(plan.images)

    def use_model(self, model: SegmentationModel, checkpoint=None) -> None:
        """Predict with a loaded ``model``; continue training from ``checkpoint``.

        The plan is dropped: a loaded model knows no training volumes, so
        "Predict all" passes every image as an array.
        """
        self.trainer, self.plan, self.targets = model, None, []
        self.init_checkpoint = checkpoint

    def name_classes(self) -> None:
        """Give the model the class names the painted layers carry now (before its names are used).

        A class painted and named after Train started, or renamed afterwards, would otherwise keep
        its number in the prediction layers, the saved model and the session. The painted layers'
        names win; the model keeps its own for the values they do not name. The dict is replaced,
        not changed in place: a worker may be copying it into a checkpoint.
        """
        if self.trainer is None or self.plan is None:
            return
        names = self.plan.class_names()
        if any(self.trainer.class_names.get(value) != name for value, name in names.items()):
            self.trainer.class_names = {**self.trainer.class_names, **names}

    def training_init(
        self, labels, *, chosen: int | None, accepted: int | None, viewer_axis: int, geometry=None
    ) -> TrainingInit:
        """Decide the slicing axis of the next training, and whether it continues the loaded model.

        ``chosen`` is the form's axis (None: "auto"), ``accepted`` the axis of the accepted
        slices, ``viewer_axis`` the axis the viewer slices along (see
        :func:`~napari_action.data.slicing_axis.decide_axis`). Continuing needs training
        along the model's slicing axis; otherwise a new model is trained, and the result
        says why for the widget to tell the user. With the images' ``geometry`` (voxel → world affines,
        shapes), ``labels`` are as stored and the axis is decided on the paint as training will see it: in the
        voxel order the loaded model saw its training volumes in when it is continued, else in the first painted
        image's (:func:`~napari_action.training.volume_turns.paint_in_painted_order`).
        """
        checkpoint = self.init_checkpoint
        model_axis = None if checkpoint is None else int(checkpoint.axis)
        seen = _paint_as_trained(labels, geometry)
        if checkpoint is not None:
            as_model = _paint_as_trained(labels, geometry, checkpoint)
            decision = decide_axis(
                as_model, model_axis=model_axis, chosen=chosen, accepted=accepted, viewer_axis=viewer_axis
            )
            if decision.axis == model_axis:
                return TrainingInit(decision, checkpoint)
        decision = decide_axis(seen, model_axis=model_axis, chosen=chosen, accepted=accepted, viewer_axis=viewer_axis)
        if checkpoint is None:
            return TrainingInit(decision, checkpoint)
        return TrainingInit(
            decision,
            reason=f"the loaded model slices along axis {model_axis}, the training along axis {decision.axis} "
            f"({decision.reason}): training a new model instead of continuing from it.",
        )

    # -- prediction layers -------------------------------------------------------
    def tracker_for(self, layer, axis: int) -> EditTracker:
        """The edit tracker of a prediction layer (kept across runs: edits stay locked)."""
        tracker = self.trackers.get(id(layer))
        if tracker is None or tracker.layer is not layer:
            tracker = self.trackers[id(layer)] = EditTracker(layer, axis)
        tracker.set_axis(axis)
        return tracker

    def target(self, volume_index: int) -> EditTracker | None:
        """Tracker of the prediction layer of a training volume (None: not made yet, or deleted)."""
        found = self.targets[volume_index] if 0 <= volume_index < len(self.targets) else None
        return None if found is PENDING else found

    def needs_layer(self, volume_index: int) -> bool:
        """True until the volume's prediction layer is made (unless it was deleted)."""
        return 0 <= volume_index < len(self.targets) and self.targets[volume_index] is PENDING

    def forget_layer(self, layer) -> None:
        """Drop the tracker of a removed prediction layer; a removed image's prediction, or the prediction of the image
        whose prediction layer was removed, if a job is making it (a deleted layer is not made again)."""
        if isinstance(self.job, PredictionJob):
            self.job.forget(layer.name)
            if prediction_source(layer) is not None:
                self.job.leave(prediction_source(layer))
        tracker = self.trackers.pop(id(layer), None)
        if tracker is not None and tracker.layer is layer:
            tracker.disconnect()
            self.targets = [None if t is tracker else t for t in self.targets]

    def prediction_items(self, viewer, names=None) -> list[tuple[str, Any, tuple | None, Reorientation | None]]:
        """(image name, volume index or array, voxel size or None, turn or None) for every opened 3D image (or
        those in ``names``).

        A training volume is given by its index (the trainer knows its voxel size, its labeled slices
        and its voxel order); any other image as an array with its voxel size (a zarr or dask array as
        it is: the prediction worker reads it, not the GUI thread) and the turn that reads it in the
        model's voxel order (:func:`~napari_action._napari.view_plane.training_order`).
        """
        items = []
        for image in image_layers(viewer):
            if names is not None and image.name not in names:
                continue
            index = None if self.plan is None else self.plan.index_of(image)
            if index is not None and not self.plan.replaced(index):
                items.append((image.name, index, None, None))
            else:
                turn = training_order(self.trainer, image)
                items.append((image.name, layer_image_data(image), layer_geometry(image).spacing, turn))
        return items

    # -- jobs that need the trainer to themselves --------------------------------------
    def when_idle(self, job: Callable[[], None]) -> None:
        """Run ``job`` now, or once training has paused (it is resumed after the job)."""
        if self.run is not None and self.run.state in (RunState.RUNNING, RunState.PAUSING):
            self._pending_job = job
            self.resume_after_job = True
            self.run.pause()
        elif self.run is not None and self.run.state is RunState.STOPPING:
            self._pending_job = job  # the last step is still running: start when it ends
        else:
            job()

    def run_pending_job(self) -> None:
        """Start the job that waited for training to pause or end."""
        job, self._pending_job = self._pending_job, None
        if job is not None:
            job()

    def image_renamed(self, old: str, new: str) -> None:
        """The accepted slices of the image called ``old`` are those of ``new`` now (a rename in the viewer), and so is
        its prediction if a job is predicting it."""
        if old in self.accepted_slices:
            self.accepted_slices[new] = self.accepted_slices.pop(old)
        if isinstance(self.job, PredictionJob):
            self.job.rename(old, new)

    def image_closed(self, name: str, detached: str) -> None:
        """The image called ``name`` was closed and its prediction layers kept as those of ``detached``: its
        accepted slices go with them, and a job predicting it leaves it (its result would go nowhere)."""
        if name in self.accepted_slices:
            self.accepted_slices[detached] = self.accepted_slices.pop(name)
        if isinstance(self.job, PredictionJob):
            self.job.forget(name)

    def abandon(self, *_) -> None:
        """The widget is going away: stop everything without calling back into it."""
        self._pending_job = None
        if self.run is not None:
            self.run.abandon()
        if isinstance(self.job, PredictionJob):
            self.job.abandon()
        elif self.job is not None:
            self.job.quit()  # a save: it ends on its own, without calling back into the widget
        for tracker in self.trackers.values():
            tracker.disconnect()
        self.trackers = {}


def _paint_as_trained(labels, geometry, checkpoint=None) -> list:
    """``labels`` as training reads them (each image in one voxel order; ``checkpoint``: a continued model's),
    or as they are where no ``geometry`` (affines, shapes) is given."""
    if geometry is None:
        return list(labels)
    affines, shapes = geometry
    return paint_in_painted_order(labels, affines, shapes, model_order(checkpoint))
