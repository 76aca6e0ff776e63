"""A model read from a checkpoint, and the geometry checks made before predicting with it.

:class:`LoadedModel` stands in for the trainer once a checkpoint is loaded: it
is a :class:`~napari_action.inference.model_protocol.SegmentationModel`
(``axis``, ``class_values``, ``class_names``, ``config``, ``predict_volume``,
``checkpoint``, ``save_checkpoint``), so a front end predicts and saves with it
as with a trained :class:`~napari_action.training.trainer.Trainer`.

Prediction slices every volume along the training axis at the volume's own
in-plane size and never resamples: the network sees voxels, not millimetres.
:func:`geometry_warnings` says when a volume's in-plane spacing (or the world
direction of its slicing axis) differs from the volumes the model was trained
on, since predictions then degrade. :func:`with_references` records the
training volumes' geometry in a checkpoint, for those checks.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_action.progress import PredictionUpdate

if TYPE_CHECKING:
    import torch

    from napari_action.inference.model_protocol import SegmentationModel
    from napari_action.inference.predictor import Predictor
    from napari_action.io.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

#: Relative in-plane spacing difference above which prediction gets a warning.
SPACING_TOLERANCE = 0.2
#: ``Checkpoint.extra`` key holding the geometry of the training volumes.
REFERENCE_KEY = "reference_geometry"
_WORLD_AXES = ("x (sagittal slices)", "y (coronal slices)", "z (axial slices)")


#: World axis (RAS: 0 = left-right, 1 = posterior-anterior, 2 = inferior-superior) along which
#: each plane's slices are stacked.
PLANE_WORLD_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


@dataclasses.dataclass(frozen=True)
class VoxelGeometry:
    """Voxel spacing along each array axis and the world axis each array axis points along."""

    spacing: tuple[float, float, float]
    directions: tuple[int, int, int]

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> VoxelGeometry:
        """From a 4x4 (or 3x3) voxel-to-world matrix: column norms and dominant rows."""
        linear = np.asarray(matrix, dtype=np.float64)[:3, :3]
        spacing = tuple(float(s) for s in np.linalg.norm(linear, axis=0))
        directions = tuple(int(d) for d in np.abs(linear).argmax(axis=0))
        return cls(spacing, directions)

    def to_dict(self) -> dict:
        """Plain lists, for a checkpoint's ``extra``."""
        return {"spacing": list(self.spacing), "directions": list(self.directions)}

    @classmethod
    def from_dict(cls, data: dict) -> VoxelGeometry:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(float(s) for s in data["spacing"]), tuple(int(d) for d in data["directions"]))

    def axis_for_plane(self, plane: str) -> int:
        """Array axis to slice along to see ``plane`` ("axial", "coronal" or "sagittal").

        Axial slices are stacked along the world's inferior-superior axis,
        coronal ones along posterior-anterior, sagittal ones along left-right.

        Raises
        ------
        ValueError
            For another plane name, or when no array axis points along that world axis
            (two axes of an oblique volume point along the same one).
        """
        if plane not in PLANE_WORLD_AXES:
            raise ValueError(f"plane must be one of {sorted(PLANE_WORLD_AXES)}, got {plane!r}.")
        world = PLANE_WORLD_AXES[plane]
        if world not in self.directions:
            raise ValueError(f"No array axis of this volume points along the {plane} slicing direction.")
        return self.directions.index(world)

    def in_plane(self, axis: int) -> tuple[float, float]:
        """Spacing of the two axes of a slice taken along ``axis``."""
        return tuple(s for i, s in enumerate(self.spacing) if i != axis)


def geometry_warnings(
    references: Sequence[VoxelGeometry],
    targets: Iterable[tuple[str, VoxelGeometry]],
    axis: int,
    tolerance: float = SPACING_TOLERANCE,
) -> list[str]:
    """Messages for volumes sliced differently from every training volume.

    A volume gets a message when its in-plane spacing differs by more than
    ``tolerance`` (relative) from that of every reference, or when its slicing
    axis points along another world axis than in every reference.

    Parameters
    ----------
    references : sequence of VoxelGeometry
        The training volumes' geometry; none: no message at all.
    targets : iterable of (str, VoxelGeometry)
        Name (used in the message) and geometry of each volume to predict.
    axis : int
        The model's slicing axis.
    tolerance : float
        Relative in-plane spacing difference accepted without a message.
    """
    if not references:
        return []
    messages = []
    for name, target in targets:
        spacing = np.asarray(target.in_plane(axis))
        gaps = [np.max(np.abs(spacing / np.asarray(ref.in_plane(axis)) - 1.0)) for ref in references]
        if min(gaps) > tolerance:
            known = ", ".join(dict.fromkeys(_mm(ref.in_plane(axis)) for ref in references))  # unique, in order
            messages.append(
                f"{name!r} has in-plane spacing {_mm(target.in_plane(axis))}, the training volumes {known}: "
                "prediction does not resample (the network sees voxels), so expect worse results."
            )
        if all(target.directions[axis] != ref.directions[axis] for ref in references):
            ref_dir = _WORLD_AXES[references[0].directions[axis]]
            messages.append(
                f"{name!r} is sliced along world axis {_WORLD_AXES[target.directions[axis]]}, the training "
                f"volumes along {ref_dir}: the network sees another view of the anatomy."
            )
    return messages


def _mm(values: Iterable[float]) -> str:
    return "×".join(f"{v:.3g}" for v in values) + " mm"


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
        self.references = [VoxelGeometry.from_dict(d) for d in checkpoint.extra.get(REFERENCE_KEY, [])]

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
        # front ends import it for its geometry checks while their menus open.
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


def with_references(checkpoint: Checkpoint, references: Sequence[VoxelGeometry]) -> Checkpoint:
    """``checkpoint`` with the training volumes' geometry recorded in ``extra`` (unchanged if none)."""
    if not references:
        return checkpoint
    extra = {**checkpoint.extra, REFERENCE_KEY: [ref.to_dict() for ref in references]}
    return dataclasses.replace(checkpoint, extra=extra)
