"""What the Refine panel lists as the training set, read from the viewer and the widget's training state.

Which image layers take part (with their painted Labels layer, if any), which
of their slices are labeled along an axis (painted, accepted from a
prediction layer, or both), and which label values those slices hold.
"""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import SOURCE_KEY, UNCERTAINTY_KEY, layer_array, layer_shape
from napari_action._napari.refine.accepted import painted_slices, tracker_of
from napari_action._napari.view_plane import training_order, viewer_slicing_axis
from napari_action.data.slicing_axis import decide_axis

#: Image name -> (painted slices, accepted slices) along one axis.
LabeledSlices = dict[str, tuple[set[int], set[int]]]


def training_volumes(viewer, training_state, picker) -> list[tuple]:
    """(image layer, painted Labels layer or None) of the volumes to list.

    The running (or last) training's volumes, else those selected in the form; plus
    every image with accepted slices, which are training data even without paint.
    """
    plan = training_state.plan
    if plan is not None:
        pairs = [(image, plan.labels[i] if i < len(plan.labels) else None) for i, image in enumerate(plan.images)]
    else:
        painted = {name: labels for labels, name in picker.selected_labels() if name}
        pairs = [(image, painted.get(image.name)) for image in picker.selected_images()]
    known = {image.name for image, _ in pairs}
    pairs += [
        (viewer.layers[name], None)
        for name in training_state.accepted_slices
        if name not in known and name in viewer.layers
    ]
    return [(image, labels) for image, labels in pairs if image in viewer.layers]


def image_name_of(layer, volumes: list[tuple]) -> str | None:
    """The image a layer belongs to: its own, its prediction's or uncertainty's source, or its painted image."""
    if layer is None:
        return None
    for key in (SOURCE_KEY, UNCERTAINTY_KEY):
        if key in layer.metadata:
            return layer.metadata[key]
    for image, labels in volumes:
        if layer is image or layer is labels:
            return image.name
    return None


def painted_arrays(volumes: list[tuple]) -> dict:
    """Image name -> its painted labels, for the volumes whose painted layer fits the image."""
    return {
        image.name: layer_array(labels)
        for image, labels in volumes
        if labels is not None and layer_shape(labels) == layer_shape(image)
    }


def fitting_accepted(training_state, volumes: list[tuple]) -> dict[str, set[int]]:
    """Image name -> its accepted slices, but for images whose prediction layer no longer fits them (given data of
    another shape since): training leaves those out (:func:`~.accepted.merge_accepted`), and they name slices of
    the old data."""
    accepted = {}
    for image, _ in volumes:
        tracker = tracker_of(training_state, image.name)
        if tracker is None or layer_shape(tracker.layer) == layer_shape(image):
            accepted[image.name] = set(training_state.accepted_slices.get(image.name, ()))
    return accepted


def labeled_along(volumes: list[tuple], arrays: dict, axes: dict[str, int], accepted: dict) -> LabeledSlices:
    """Image name -> (painted slices, accepted slices) along its axis in ``axes`` (:func:`slice_axes`);
    ``accepted``: image name -> slices."""
    return {
        image.name: (
            set(painted_slices(arrays[image.name], axes[image.name])) if image.name in arrays else set(),
            set(accepted.get(image.name, ())),
        )
        for image, _ in volumes
    }


def slice_axes(training_state, volumes: list[tuple], axis: int) -> dict[str, int]:
    """Image name -> the array axis its slices along the model's ``axis`` lie on as stored: ``axis`` itself, or,
    for a scan the model reads turned (another voxel order than its training scans'), the axis it is there."""
    model, plan = training_state.trainer, training_state.plan
    turns = getattr(model, "turns", None)  # a trainer's own, for its training volumes
    trained = [] if plan is None or turns is None else plan.images
    axes = {}
    for image, _ in volumes:
        index = next((i for i, item in enumerate(trained) if item is image), None)
        if index is not None:
            axes[image.name] = turns.stored_axis(index, axis)
        else:  # read in the model's voxel order when predicted
            turn = training_order(model, image)
            axes[image.name] = axis if turn is None else turn.stored_axes[axis]
    return axes


def next_training_axis(training_state, viewer, options, painted: list) -> int:
    """The model's axis; before there is one, the axis the next Train would decide (:func:`decide_axis`)."""
    if training_state.trainer is not None:
        return int(training_state.trainer.axis)
    accepted = [
        t.axis
        for t in training_state.trackers.values()
        if training_state.accepted_slices.get(t.layer.metadata.get(SOURCE_KEY))
    ]
    viewer_axis = viewer_slicing_axis(viewer)
    choice = options.axis_choice(viewer_axis)
    accepted_axis = accepted[0] if accepted else None
    return decide_axis(painted, chosen=choice, accepted=accepted_axis, viewer_axis=viewer_axis).axis


def annotated_values(painted, predicted: np.ndarray, labeled: list[int], axis: int) -> list[int]:
    """Label values on the annotated slices: painted ones, and the (corrected) prediction on accepted ones."""
    values = {0}
    for index in labeled:
        if painted is not None and layer_shape(painted) == predicted.shape:
            values |= set(np.unique(np.take(layer_array(painted), index, axis=axis)).tolist())
        values |= set(np.unique(np.take(predicted, index, axis=axis)).tolist())
    return sorted(int(v) for v in values)
