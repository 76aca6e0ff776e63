"""A model read from a checkpoint, and the training volumes' geometry saved with it.

:class:`LoadedModel` stands in for the trainer once a checkpoint is loaded: it
is a :class:`~napari_action.inference.model_protocol.SegmentationModel`
(``axis``, ``class_values``, ``class_names``, ``config``, ``predict_volume``,
``checkpoint``, ``save_checkpoint``), so a front end predicts and saves with it
as with a trained :class:`~napari_action.training.trainer.Trainer`.

:func:`with_references` records the training volumes' geometry in a checkpoint
and :attr:`LoadedModel.references` reads it back, for the checks of
:func:`napari_action.io.geometry.geometry_warnings` before predicting.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_action.io.geometry import VoxelGeometry
from napari_action.progress import PredictionUpdate

if TYPE_CHECKING:
    import torch

    from napari_action.inference.model_protocol import SegmentationModel
    from napari_action.inference.predictor import Predictor
    from napari_action.io.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

#: ``Checkpoint.extra`` key holding the geometry of the training volumes.
REFERENCE_KEY = "reference_geometry"


class LoadedModel:
    """A checkpoint ready to predict (a :class:`~.model_protocol.SegmentationModel`).

    Parameters
    ----------
    checkpoint : napari_action.io.checkpoint.Checkpoint
        Weights, config, classes and slicing axis.
    predictor : napari_action.inference.predictor.Predictor
        Inference network built from ``checkpoint``.
    source : str, optional
        File the checkpoint came from (for messages).

    Attributes
    ----------
    references : list of VoxelGeometry
        Geometry of the training volumes, if the checkpoint recorded it (:func:`with_references`).
    pixel_mm : tuple of 2 float or None
        The in-plane voxel size the network was trained at, if the checkpoint recorded it.
    """

    def __init__(self, checkpoint: Checkpoint, predictor: Predictor, source: str | None = None):
        self._checkpoint = checkpoint
        self.predictor = predictor
        self.source = source
        # The thread count of the machine that trained it means nothing here: None = this machine's default.
        self.config = checkpoint.config.replace(num_threads=None)
        self.class_names = dict(checkpoint.class_names)
        self.class_values = np.asarray(checkpoint.class_values, dtype=np.int64)
        self.axis = int(checkpoint.axis)
        self.volumes: list[np.ndarray] = []  # a loaded model has no training volumes
        self.references = recorded_references(checkpoint)

    @property
    def pixel_mm(self) -> tuple[float, float] | None:
        return self.predictor.pixel_mm

    @functools.cached_property
    def fingerprint(self) -> str:
        """Which model this is, whatever its file's name (:func:`~napari_action.io.checkpoint.weights_fingerprint`)."""
        from napari_action.io.checkpoint import weights_fingerprint  # torch: see save_checkpoint

        return weights_fingerprint(self._checkpoint)

    def predict_volume(self, volume: int | np.ndarray, **kwargs) -> Iterator[PredictionUpdate]:
        """Predict a 3D array (training-volume indices do not exist for a loaded model).

        Raises
        ------
        TypeError
            For a volume index instead of an array.
        """
        if isinstance(volume, (int, np.integer)):
            raise TypeError("A loaded model has no training volumes; pass the image array.")
        return self.predictor.iter_predict(np.asarray(volume), **kwargs)

    def checkpoint(self) -> Checkpoint:
        """The checkpoint this model was built from."""
        return self._checkpoint

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the checkpoint to ``path`` (atomically)."""
        # torch-backed modules load when a model is built or written, not with this module:
        # front ends import this module while their panels are built, before any model exists.
        from napari_action.io.checkpoint import save_checkpoint

        return save_checkpoint(path, self._checkpoint)


def model_from_checkpoint(
    checkpoint: Checkpoint, source: str | None = None, device: str | torch.device = "auto"
) -> LoadedModel:
    """Build the inference network of ``checkpoint`` (the EMA teacher), as ``Predictor.from_checkpoint``.

    ``Predictor.from_checkpoint`` takes a path and discards the checkpoint; a
    front end needs the checkpoint itself too (class names, the config to
    continue training from it, bytes for sessions), so the predictor is built
    here from it.
    """
    from napari_action.inference.predictor import Predictor  # torch: see LoadedModel.save_checkpoint

    return LoadedModel(checkpoint, Predictor.for_checkpoint(checkpoint, device), source)


def load_model(path: str | Path, device: str | torch.device = "auto") -> LoadedModel:
    """Read a checkpoint file and build its model (slow: call it off the GUI thread).

    Raises
    ------
    napari_action.io.checkpoint.CheckpointError
        Not a napari-action checkpoint, damaged, or weights that do not fit.
    """
    from napari_action.io.checkpoint import load_checkpoint  # torch: see LoadedModel.save_checkpoint

    model = model_from_checkpoint(load_checkpoint(path), source=str(path), device=device)
    logger.info("loaded model %s: classes %s, axis %d", path, list(model.class_values), model.axis)
    return model


def save_model(
    model: SegmentationModel, path: str | Path, references: Sequence[VoxelGeometry] = (), *, overwrite: bool = True
) -> Path:
    """Write ``model``'s checkpoint to ``path`` with the training volumes' geometry (for later warnings).

    ``overwrite=False`` refuses an existing file (``FileExistsError``).
    """
    from napari_action.io.checkpoint import save_checkpoint  # torch: see LoadedModel.save_checkpoint

    return save_checkpoint(path, with_references(model.checkpoint(), references), overwrite=overwrite)


def recorded_references(checkpoint: Checkpoint) -> list[VoxelGeometry]:
    """The training volumes' geometry recorded in ``checkpoint`` (:func:`with_references`), in the voxel order
    the network saw them; empty for a checkpoint saved without it."""
    return [VoxelGeometry.from_dict(d) for d in checkpoint.extra.get(REFERENCE_KEY, [])]


def with_references(checkpoint: Checkpoint, references: Sequence[VoxelGeometry]) -> Checkpoint:
    """``checkpoint`` with the training volumes' geometry recorded in ``extra`` (unchanged if none)."""
    if not references:
        return checkpoint
    extra = {**checkpoint.extra, REFERENCE_KEY: [ref.to_dict() for ref in references]}
    return dataclasses.replace(checkpoint, extra=extra)
