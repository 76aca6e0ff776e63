"""What a front end may rely on in a model, whether it was just trained or loaded from a file.

A front end keeps one "current model": a
:class:`~napari_action.training.trainer.Trainer` after training, or a
:class:`~napari_action.inference.loaded_model.LoadedModel` after reading a
checkpoint. Both satisfy :class:`SegmentationModel`, so predicting, saving
and reading the classes work the same on either. Only a trainer can train
further: it also satisfies :class:`TrainableModel`, a loaded model does not.

Both protocols are runtime-checkable, so ``isinstance(model, TrainableModel)``
tells the two apart without importing torch (which the trainer module does).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from napari_action.progress import PredictionUpdate, TrainProgress

if TYPE_CHECKING:
    from napari_action.config import TrainConfig
    from napari_action.io.checkpoint import Checkpoint
    from napari_action.io.geometry import VoxelGeometry

__all__ = ["SegmentationModel", "TrainableModel"]


@runtime_checkable
class SegmentationModel(Protocol):
    """A model that predicts label volumes and can be written to a checkpoint."""

    config: TrainConfig
    class_names: dict[int, str]
    volumes: list[np.ndarray]
    """The training volumes, normalised (empty for a model loaded from a file)."""
    references: list[VoxelGeometry]
    """The training volumes' geometry in the voxel order the network saw them, the first painted volume's first
    (empty for a model saved without it): other volumes are read in ``references[0]``'s order."""
    pixel_mm: tuple[float, float] | None
    """The in-plane voxel size (mm) the network was trained at, which prediction resizes other slices to
    (None: not known, for a model saved before it was kept; slices are then predicted as they are)."""

    @property
    def axis(self) -> int:
        """The slicing axis the model was trained along."""

    @property
    def class_values(self) -> np.ndarray:
        """The label values it predicts, in output-channel order."""

    def predict_volume(self, volume: int | np.ndarray, **kwargs) -> Iterator[PredictionUpdate]:
        """Predict a training volume (by index) or a 3D array, yielding progress."""

    def checkpoint(self) -> Checkpoint:
        """Weights, config, classes and axis, as a checkpoint."""

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write :meth:`checkpoint` to ``path``."""


@runtime_checkable
class TrainableModel(SegmentationModel, Protocol):
    """A model that trains further on new labels: a trainer."""

    rounds: int
    """Completed training schedules (0: the warm-up stages are still to come)."""

    @property
    def device_label(self) -> str:
        """The device it trains on, in words."""

    @property
    def advice(self) -> list[str]:
        """Warnings about the labels to show the user before trusting the result."""

    def round_steps(self, steps: int | None = None) -> int:
        """Steps the next ``iter_train(steps)`` will run."""

    def iter_train(self, steps: int | None = None) -> Generator[TrainProgress, object, None]:
        """Train, yielding progress after every step."""

    def update_annotation(
        self,
        labels: Sequence[np.ndarray | None],
        labeled_slices: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        """Replace the training labels without restarting."""

    def request_stop(self) -> None:
        """Ask a running :meth:`iter_train` to return after the current step."""
