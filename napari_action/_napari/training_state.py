"""The live training state of one ACTION widget, kept apart from its Qt widgets.

:class:`TrainingState` owns the trainer, its plan
(:class:`~napari_action._napari.training_plan.TrainingPlan`), the current run, the running
prediction/save job, the edit trackers of the prediction layers and the accepted
slices. It is a plain object (not a QObject), so the widget's ``destroyed`` signal
can still reach :meth:`TrainingState.abandon` while the widget's C++ side goes away.

Not to be confused with a *session* (:mod:`napari_action.io.session_store`): the
store on disk that a snapshot of this state and of the viewer's layers is saved to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from napari.qt.threading import WorkerBase

from napari_action._napari.layers import (
    EditTracker,
    colours_of_every_label,
    image_layers,
    layer_image_data,
    prediction_source,
)
from napari_action._napari.made_layers import is_duplicate
from napari_action._napari.prediction_job import PredictionJob
from napari_action._napari.run_state import RunState
from napari_action._napari.view_plane import layer_geometry, training_order
from napari_action._napari.workers import TrainingRun
from napari_action.data.slicing_axis import AxisDecision, decide_axis
from napari_action.inference.model_protocol import SegmentationModel, TrainableModel
from napari_action.training.volume_turns import model_order, paint_in_painted_order

if TYPE_CHECKING:
    from napari_action._napari.training_plan import TrainingPlan
    from napari_action.io.checkpoint import Checkpoint
    from napari_action.io.reoriented import Reorientation

logger = logging.getLogger(__name__)

#: Placeholder of a volume whose prediction layer is made at its first streamed write.
PENDING = "pending"


class _PreviousModel(NamedTuple):
    """The model a new Train replaces, kept until the new trainer has trained a step."""

    trainer: SegmentationModel
    plan: TrainingPlan | None
    targets: list
    axis_decision: AxisDecision | None


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
        # While a new trainer is built and previews: the model before it, and that its first step is to come.
        self._previous: _PreviousModel | None = None
        self._awaiting_first_step = False

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

    @property
    def model_ready(self) -> bool:
        """There is a model to predict with and to save: not a new trainer whose first step is still to come."""
        return self.trainer is not None and not self._awaiting_first_step

    def begin(self, plan: TrainingPlan, axis_decision: AxisDecision | None = None) -> None:
        """Start over with a new plan; the new model comes when ready (``axis_decision``: its slicing axis, and why).

        The previous model is kept aside until the new one has trained a step (:meth:`first_step_taken`): a new
        trainer that fails to build, or a run stopped before its first step, gives it back
        (:meth:`give_previous_back`) rather than leave the user without a model, or with an untrained one.
        """
        if self.trainer is not None:
            self._previous = _PreviousModel(self.trainer, self.plan, self.targets, self.axis_decision)
        self.trainer, self.plan, self.axis_decision = None, plan, axis_decision
        self.targets = [PENDING] * len(plan.images)
        self._awaiting_first_step = True

    @property
    def lasting_model(self) -> SegmentationModel | None:
        """The model a session or an autosave keeps: while a new trainer has not trained a step, the one before it
        (an untrained network saved over it would lose the user's model)."""
        if self._awaiting_first_step:
            return None if self._previous is None else self._previous.trainer
        return self.trainer

    def no_model_reason(self) -> str:
        """Why there is no model to predict with or save, and what to do (when not :attr:`model_ready`)."""
        if self._awaiting_first_step:
            back = " to have the previous model back" if self._previous is not None else ""
            return (
                "the new model has not trained a step yet: let training go on until the status line shows its first "
                f"step, or Stop it{back}."
            )
        return "train or load a model first."

    def first_step_taken(self) -> None:
        """The new trainer has trained: it is the model now, and the previous one goes (its memory with it)."""
        self._previous, self._awaiting_first_step = None, False

    def give_previous_back(self) -> bool:
        """A run that built a trainer ended before its first step: the previous model (if any) is the model again,
        with its plan and prediction layers; without one, no model. True if a previous model came back."""
        if not self._awaiting_first_step:
            return False
        previous, self._previous, self._awaiting_first_step = self._previous, None, False
        if previous is None:
            self.trainer = None  # built but never trained: nothing to predict with
            return False
        self.trainer, self.plan, self.targets, self.axis_decision = previous
        return True

    def use_model(self, model: SegmentationModel, checkpoint=None) -> None:
        """Predict with a loaded ``model``; continue training from ``checkpoint``.

        The plan is dropped: a loaded model knows no training volumes, so
        "Predict all" passes every image as an array.
        """
        self.trainer, self.plan, self.targets = model, None, []
        self._previous, self._awaiting_first_step = None, False
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
        whose prediction layer was removed, if a job is making it (a deleted layer is not made again).

        The user's copy of a layer napari-action made (Duplicate Layer) carries the original's image name: its removal
        touches neither the job, which writes into the original, nor the original's tracker.
        """
        if is_duplicate(layer):
            return
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
        """Run ``job`` now, or once training has paused (resumed after the job unless the user was pausing it)."""
        if self.run is not None and self.run.state in (RunState.RUNNING, RunState.PAUSING):
            self._pending_job = job
            self.resume_after_job = self.run.state is RunState.RUNNING
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
