"""Predictions written into the "<image> ACTION" Labels layers, around the voxels the user edited.

Streamed slices arrive in batches from a training run; whole volumes come
from a prediction job. Each image gets one prediction layer, made at its first
write, and an :class:`~napari_action._napari.layers.EditTracker` that keeps the
user's corrections. Each layer's metadata says which model made its last prediction
(:data:`MODEL_KEY`), for the provenance Export writes beside its mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_action._napari.layers import find_prediction_layer, is_mid_stroke, prediction_layer_for
from napari_action._napari.made_layers import is_duplicate
from napari_action._napari.placement import take_geometry
from napari_action.label_values import smallest_label_dtype
from napari_action.progress import PredictionUpdate, SlicePrediction

#: How often a whole-volume write waiting for the user's brush stroke to end looks again.
STROKE_WAIT_MS = 100
#: Metadata key of a prediction layer: the record of the model that made its last prediction
#: (:func:`~napari_action.inference.made_by.model_record`), None when no one model did.
MODEL_KEY = "napari_action_model"


def made_by(layer) -> dict[str, Any] | None:
    """The record of the model that made the last prediction written into ``layer`` (None: unknown).

    None for the user's copy of a prediction layer (napari's Duplicate Layer): it carries the original's record, but
    what it holds is the user's, and no prediction is written into it.
    """
    if is_duplicate(layer):
        return None
    return getattr(layer, "metadata", {}).get(MODEL_KEY)


@dataclass
class BatchWritten:
    """What became of a batch of streamed slices.

    Attributes
    ----------
    deferred : list of SlicePrediction
        Slices to hand over again later: the user is mid-stroke on their layer, or
        their layer is not made yet (one new layer per batch keeps each GUI stall short).
    changed, compared : int
        Unlocked voxels whose value changed, and unlocked voxels compared, over
        slices their layer had received before (the agreement with the last stream).
    """

    deferred: list[SlicePrediction] = field(default_factory=list)
    changed: int = 0
    compared: int = 0


class PredictionWriter:
    """Writes predictions of the current model into the viewer's prediction layers.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Where the layers are.
    training_state : TrainingState
        The model, training plan and edit trackers.
    """

    def __init__(self, viewer, training_state):
        self.viewer = viewer
        self.training_state = training_state

    def write_batch(self, batch: list[SlicePrediction]) -> BatchWritten:
        """Write streamed slices into their volumes' layers; layers are refreshed once each."""
        written, touched = BatchWritten(), {}
        created = False
        for prediction in batch:
            if self.training_state.needs_layer(prediction.volume_index):
                if created:
                    written.deferred.append(prediction)
                    continue
                created = self.target_for(prediction.volume_index) is not None
            tracker = self.training_state.target(prediction.volume_index)
            if tracker is None:  # its layer was deleted: the user does not want it
                continue
            if is_mid_stroke(tracker.layer):
                written.deferred.append(prediction)
                continue
            changed, compared = tracker.write(prediction, refresh=False)
            written.changed += changed
            written.compared += compared
            touched[id(tracker.layer)] = tracker.layer
        for layer in touched.values():
            # Streamed slices come from a network that changes at every step (or from the preview's
            # propagation): no one model made this layer until a whole-volume prediction writes it.
            layer.metadata[MODEL_KEY] = None
            layer.refresh()  # once per layer and batch: refreshes are the costly part
        return written

    def target_for(self, volume_index: int, classes: tuple | None = None):
        """Create (or reuse) the prediction layer of a training volume and its tracker.

        Done at the volume's first streamed write rather than on Train: adding
        a layer costs napari a few hundred milliseconds of GUI time (vispy
        visuals), so they are spread over several hand-overs.
        """
        state, trainer = self.training_state, self.training_state.trainer
        state.name_classes()
        # Before the trainer exists (the interpolation preview) the caller says which classes and axis.
        class_names, class_values, axis = classes or (trainer.class_names, trainer.class_values, trainer.axis)
        image = state.plan.images[volume_index]
        if image not in self.viewer.layers:
            state.targets[volume_index] = None
            return None
        layer = prediction_layer_for(
            self.viewer,
            image,
            class_names,
            class_values=class_values,
            colormap=state.colormap,
            dtype=smallest_label_dtype(class_values),
        )
        take_geometry(layer, image)  # a layer made for an earlier run, over an image the user moved or rescaled since
        tracker = state.targets[volume_index] = state.tracker_for(layer, axis)
        return tracker

    def write_volume(self, image_name: str, update: PredictionUpdate, model: dict[str, Any] | None = None) -> None:
        """Write a finished whole-volume prediction of ``image_name`` into its layer (made if missing).

        While the user drags a brush in that layer, the write waits for the stroke to end: its voxels
        are locked only once it is committed, and the prediction would overwrite them. ``model``: the
        record of the model that made it, kept in the layer's metadata (:data:`MODEL_KEY`).
        """
        trainer = self.training_state.trainer
        if image_name not in self.viewer.layers or trainer is None:
            return  # gone while the write waited for a stroke
        image = self.viewer.layers[image_name]
        shown = find_prediction_layer(self.viewer, image)
        if shown is not None and is_mid_stroke(shown):
            QTimer.singleShot(STROKE_WAIT_MS, partial(self.write_volume, image_name, update, model))
            return
        self.training_state.name_classes()
        layer = prediction_layer_for(
            self.viewer,
            image,
            trainer.class_names,
            class_values=trainer.class_values,
            colormap=self.training_state.colormap,
        )
        take_geometry(layer, image)  # made by an earlier Predict, over an image the user moved or rescaled since
        axis = trainer.axis if update.axis is None else update.axis  # a volume stored turned: along its own
        tracker = self.training_state.tracker_for(layer, axis)
        # A SlicePrediction holds its slices along the first axis: the slicing axis moves to the front.
        # A layer takes labels only (the job does not make the confidence: PredictionJob).
        labels = np.moveaxis(update.labels, axis, 0)
        layer.metadata[MODEL_KEY] = model
        tracker.write(SlicePrediction(update.volume_index, axis, 0, labels, None), refresh=True)
