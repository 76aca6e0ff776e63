"""What the user does while training runs, sent to the running trainer.

Two things reach a running training without a restart: the training labels (painted strokes, and
slices a panel accepted or corrected) and the slice the viewer shows (streamed first). Both come as
bursts of events (a stroke is many), so both are throttled; a panel that changed the labels can send
them at once, for the very next step.
"""

from __future__ import annotations

from collections.abc import Callable

from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer
from superqt.utils import qthrottled

from napari_action._napari.edit_watch import EditWatch
from napari_action._napari.refine.accepted import TrainingLabels
from napari_action._napari.training_state import TrainingPlan, TrainingState, negative_values_problem
from napari_action.data.painting_slips import filled_slice_advice
from napari_action.data.slicing_axis import painted_profile
from napari_action.progress import AnnotationUpdate, FocusRequest

#: Strokes and label changes reach the running training at most this often (a stroke is many events).
LABELS_THROTTLE_MS = 500


class LiveUpdates:
    """Sends the training labels and the slice in view to the training state's running run.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Whose slicing position is followed.
    training_state : TrainingState
        The run and the plan (which layers are painted).
    training_labels : callable
        ``training_labels(plan, axis)``: the labels to train on now (painted plus accepted slices).
    """

    def __init__(
        self,
        viewer,
        training_state: TrainingState,
        training_labels: Callable[[TrainingPlan, int | None], TrainingLabels],
    ):
        self.viewer = viewer
        self.training_state = training_state
        self._training_labels = training_labels
        self._send_labels_throttled = qthrottled(self.send_labels, timeout=LABELS_THROTTLE_MS)
        self._send_focus_throttled = qthrottled(self._send_focus, timeout=300)
        self._watches: list[EditWatch] = []
        viewer.dims.events.current_step.connect(self._on_dims_step)

    def follow_painting(self, plan: TrainingPlan) -> None:
        """Send the labels after each stroke, undo or redo in the painted layers (until :meth:`stop_following`)."""
        self._watches += [EditWatch(layer, self._on_labels_edited) for layer in plan.labels_layers()]

    def stop_following(self, plan: TrainingPlan | None) -> None:
        """The run has ended: strokes stay with the layers."""
        for watch in self._watches:
            watch.close()
        self._watches = []

    def labels_changed(self, *, immediately: bool = False) -> None:
        """Send the training labels to the running training, throttled, or now (``immediately``).

        A throttled send waits until the event being handled is over: napari's paint API
        (``data_setitem``, ``paint``, ``fill``) emits its paint event before writing the voxels, and the
        throttle's leading call would send the labels without them (a brush stroke emits it after).
        """
        if immediately:
            self.send_labels()
        else:
            QTimer.singleShot(0, self._send_labels_throttled)

    def _on_labels_edited(self, layer) -> None:
        self.labels_changed()

    def send_labels(self) -> None:
        """Send the training labels now, if a run is training on a plan."""
        run, plan = self.training_state.run, self.training_state.plan
        if run is None or not run.is_running or plan is None:
            return
        axis = run.trainer.axis if run.trainer is not None else None
        training = self._training_labels(plan, axis)
        if not training.any():
            show_warning("ACTION: every painted voxel was erased; training keeps the previous labels.")
            return
        # Labels the trainer would refuse end the run with its refusal: keep training on the labels it has.
        negative = next(filter(None, map(_negative_values_problem, plan.labels, training.labels)), None)
        refused = negative or _no_unpainted_slice(run.trainer, training)
        if refused is not None:
            show_warning(f"ACTION: {refused} Training keeps the labels it had until then.")
            return
        run.send_annotation(
            AnnotationUpdate(labels=tuple(training.labels), labeled_slices=training.labeled_slices or None)
        )

    def _on_dims_step(self, event=None) -> None:
        run = self.training_state.run
        if run is not None and run.is_running:
            self._send_focus_throttled()

    def _send_focus(self) -> None:
        run, plan = self.training_state.run, self.training_state.plan
        if run is None or not run.is_running or plan is None or run.trainer is None:
            return
        index = plan.volume_of(self.viewer.layers.selection.active)
        image = plan.images[index]
        position = image.world_to_data(self.viewer.dims.point)
        axis = run.trainer.turns.stored_axis(index, run.trainer.axis)  # a scan stored turned has its own
        run.send_focus(FocusRequest(index, int(round(float(position[axis])))))


def _negative_values_problem(layer, labels) -> str | None:
    """What to do about the negative values in ``labels``, the training labels of painted ``layer``."""
    return None if layer is None or labels is None else negative_values_problem(layer.name, labels)


def _no_unpainted_slice(trainer, training: TrainingLabels) -> str | None:
    """Why ``training`` cannot reach ``trainer``, when its labels leave no slice unpainted and its method
    learns from unpainted slices too (a flood fill run through the volume); None when they can."""
    if trainer is None or trainer.config.method == "supervised" or any(a is None for a in training.labels):
        return None
    # Each volume as the user sees it, along the stored axis its training slices lie on.
    axes = [trainer.turns.stored_axis(v, trainer.axis) for v in range(len(training.labels))]
    for v, (labels, axis) in enumerate(zip(training.labels, axes, strict=True)):
        labeled = painted_profile(labels, axis).copy()
        labeled[[s for s in training.labeled_slices.get(v, ()) if 0 <= s < labeled.size]] = True
        if not labeled.all():
            return None
    fills = (filled_slice_advice([labels], axis) for labels, axis in zip(training.labels, axes, strict=True))
    return (
        f"Every slice along the slicing axis is painted now, but the method {trainer.config.method} also learns "
        f"from slices nobody painted. {next(filter(None, fills), 'Erase the paint of a few slices (Ctrl+Z).')}"
    )
