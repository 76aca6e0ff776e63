"""What the user does while training runs, sent to the running trainer.

Two things reach a running training without a restart: the training labels (painted strokes, and
slices a panel accepted or corrected) and the slice the viewer shows (streamed first). Both come as
bursts of events (a stroke is many), so both are throttled; a panel that changed the labels can send
them at once, for the very next step.
"""

from __future__ import annotations

from collections.abc import Callable

from napari.layers import Labels
from napari.utils.notifications import show_warning
from qtpy.QtCore import QTimer
from superqt.utils import qthrottled

from napari_action._napari.edit_watch import EditWatch
from napari_action._napari.layers import is_prediction_layer, layer_shape
from napari_action._napari.refine.accepted import TrainingLabels
from napari_action._napari.training_plan import TrainingPlan, negative_values_problem
from napari_action._napari.training_state import TrainingState
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
        self._images: list = []  # the images of the run, whose data is followed
        self._told: set[int] = set()  # ids of the layers added during the run whose paint was pointed out
        viewer.dims.events.current_step.connect(self._on_dims_step)
        viewer.layers.events.inserted.connect(self._on_layer_inserted)

    def follow_painting(self, plan: TrainingPlan) -> None:
        """Send the labels after each stroke, undo or redo in the painted layers (until :meth:`stop_following`)."""
        self._watches += [EditWatch(layer, self._on_labels_edited) for layer in plan.labels_layers()]
        self._images = list(plan.images)
        for image in self._images:
            image.events.data.connect(self._on_image_replaced)

    def stop_following(self, plan: TrainingPlan | None) -> None:
        """The run has ended: strokes stay with the layers."""
        for watch in self._watches:
            watch.close()
        self._watches = []
        self._told.clear()
        for image in self._images:
            image.events.data.disconnect(self._on_image_replaced)
        self._images = []

    def _on_image_replaced(self, event) -> None:
        # The trainer holds the data it read: it cannot follow new data (often of another shape, a crop or another
        # scan loaded into the layer), and its stream no longer fits the layer: the writes failed and the run never
        # ended. The run stops; its stream goes nowhere; Predict reads the new data.
        run, plan, image = self.training_state.run, self.training_state.plan, event.source
        index = None if plan is None else plan.index_of(image)
        if run is None or not run.is_running or index is None:
            return
        self.training_state.targets[index] = None
        show_warning(
            f"ACTION: image {image.name!r} was given new data while training ran, so training stops after its "
            "current step; the model learnt from the data the image had. Predict all opened volumes predicts the "
            "new data with it; Train learns from it."
        )
        run.stop()

    def _on_layer_inserted(self, event) -> None:
        # A run trains on the painted layers it started with: paint in a layer made since (the second scan's
        # labels) would otherwise be left out without a word, where strokes in the others join at once.
        layer = event.value
        if self._watches and isinstance(layer, Labels) and not is_prediction_layer(layer):
            self._watches.append(EditWatch(layer, self._on_new_layer_painted))

    def _on_new_layer_painted(self, layer) -> None:
        if id(layer) in self._told:
            return
        self._told.add(id(layer))
        show_warning(
            f"ACTION: {layer.name!r} was added after Train, and this training goes on with the painted layers it "
            "started with. Its paint is kept; to train on it too, press Stop, then Train (the form's Labels list "
            "shows which image it is paired with)."
        )

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
        # The trainer refuses labels that cannot train with a notice of its own (as at the start); another shape
        # (``layer.data = ...``) and negative values are told here, where the layer's name explains them.
        problems = (
            *map(_shape_problem, plan.labels, plan.images),
            *map(_negative_values_problem, plan.labels, training.labels),
        )
        problem = next(filter(None, problems), None)
        if problem is not None:
            show_warning(f"ACTION: {problem} Training keeps the labels it had until then.")
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


def _shape_problem(layer, image) -> str | None:
    """What is wrong with painted ``layer`` once its data no longer has the shape of its ``image``."""
    if layer is None or image is None or layer_shape(layer) == layer_shape(image):
        return None
    return (
        f"'{layer.name}' now holds labels of shape {layer_shape(layer)}, but its image '{image.name}' has "
        f"{layer_shape(image)}: put back labels of the image's shape (Ctrl-Z does not undo a replaced array)."
    )


def _negative_values_problem(layer, labels) -> str | None:
    """What to do about the negative values in ``labels``, the training labels of painted ``layer``."""
    return None if layer is None or labels is None else negative_values_problem(layer.name, labels)
