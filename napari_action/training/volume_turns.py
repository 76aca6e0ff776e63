"""Every training volume in the painted volume's voxel order: axes swapped or flipped on reading, nothing resampled.

A 2D network learns the anatomy the way round its slices show it. A scan stored LPS beside a painted
RAS one shows it mirrored, and one whose axial slices lie along another array axis shows it another
plane: the MNI152 template stored LPS, opened unpainted beside Colin27 (RAS), scored mean Dice 0.13 as
stored and 0.65 reoriented (3 seeds). So the trainer takes each such volume through a
:class:`~napari_action.io.reoriented.Reorientation` onto the first painted volume's order (views of
the arrays, lazy readers for files) and gives everything it hands out for it (streamed slices, the
preview, whole-volume predictions) back in the volume's own order; what comes in (corrected labels, the
slice the user looks at) is turned the same way. Painted volumes are turned with their paint, so that
slices painted on the same anatomical plane of two scans stored differently become slices along one
axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_action.data.normalized_volume import ArrayLikeReader, is_array_like
from napari_action.data.painted_slices import PaintProfile
from napari_action.data.slicing_axis import has_paint
from napari_action.inference.loaded_model import recorded_references
from napari_action.io.geometry import VoxelGeometry
from napari_action.io.reoriented import Reorientation, TurnedReader
from napari_action.progress import FocusRequest, PredictionUpdate, SlicePrediction

if TYPE_CHECKING:
    from napari_action.io.checkpoint import Checkpoint  # imports torch, which the widget loads when it trains

__all__ = ["VolumeTurns", "model_order", "paint_in_painted_order", "painted_indices"]


class VolumeTurns:
    """Which training volumes are turned, and how; ``turns[k]`` is None for a volume taken as stored.

    Parameters
    ----------
    turns : sequence of Reorientation or None
        One per training volume.
    stored_shapes : sequence of (int, int, int)
        Each volume's shape as stored (as given to the trainer).
    """

    def __init__(
        self,
        turns: Sequence[Reorientation | None],
        stored_shapes: Sequence[Sequence[int]],
        reference: VoxelGeometry | None = None,
        of: str = "the painted volumes",
    ):
        self.turns = tuple(turns)
        self.stored_shapes = tuple(tuple(int(n) for n in shape) for shape in stored_shapes)
        self.reference, self.of = reference, of  # the training order, and whose it is (for the notes)

    @classmethod
    def decide(
        cls,
        world: Sequence[np.ndarray],
        labels: Sequence[Any],
        painted: Sequence[int],
        stored_shapes: Sequence[Sequence[int]],
        model: VoxelGeometry | None = None,
    ) -> VolumeTurns:
        """The turn of each volume onto the first painted volume's voxel order, or onto ``model``'s (the order a
        continued model saw its training volumes in: its weights learned the anatomy that way round, and its
        slicing axis lies in that order). ``world``: voxel → world affines; ``labels``: each volume's as given,
        None for none; ``painted``: the volumes with paint, in order. None when nothing is painted, where a
        volume's order is unknown (an oblique scan with two axes along one world axis), or where its labels are
        neither an array nor a file's painted slices (:class:`PaintProfile`) of its shape (a lazy array, which a
        view cannot turn; a wrong shape, which the annotation's own check names as the user gave it)."""
        if not painted:
            return cls([None] * len(stored_shapes), stored_shapes)
        of = "the model's training volumes"
        if model is None or model.signs is None:  # a model saved without axis signs: its order is unknown
            model, of = VoxelGeometry.from_matrix(np.asarray(world[painted[0]])), "the painted volumes"
        reference = model
        turns = []
        for index, affine in enumerate(world):
            turn = Reorientation.between(reference, VoxelGeometry.from_matrix(np.asarray(affine)))
            label = labels[index] if index < len(labels) else None
            turnable = isinstance(label, (np.ndarray, PaintProfile))  # an array is viewed, a file's paint re-laid
            viewable = label is None or (turnable and tuple(label.shape) == tuple(stored_shapes[index]))
            turns.append(turn if viewable else None)
        return cls(turns, stored_shapes, reference, of)

    @property
    def any(self) -> bool:
        return any(turn is not None for turn in self.turns)

    def turned(self, index: int) -> bool:
        return self.turns[index] is not None

    # -- what comes in -----------------------------------------------------------------
    def volume(self, index: int, stored: Any) -> Any:
        """A training volume in the training order: a view of an array, a turned reader of a lazy one."""
        turn = self.turns[index]
        if turn is None:
            return stored
        if not is_array_like(stored):
            return turn.from_stored(stored)
        reader = stored if callable(getattr(stored, "read", None)) else ArrayLikeReader(stored)
        return TurnedReader(reader, turn)

    def labels(self, labels: Sequence[Any]) -> list[Any]:
        """Label arrays (None: none) in the training order: views of the user's arrays, never copies."""
        return [self._label(index, label) for index, label in enumerate(labels)]

    def _label(self, index: int, label: Any) -> Any:
        turn = self.turns[index] if index < len(self.turns) else None
        if label is None or turn is None:
            return label
        if isinstance(label, PaintProfile):  # the painted slices of a file read slice by slice (or where they are)
            return label.turned(turn)
        return turn.from_stored(np.asarray(label))

    def spacing(self, index: int, spacing: Sequence[float]) -> tuple[float, ...]:
        turn = self.turns[index]
        return tuple(spacing) if turn is None else tuple(float(spacing[a]) for a in turn.stored_axes)

    def affine(self, index: int, affine: np.ndarray) -> np.ndarray:
        turn = self.turns[index]
        return affine if turn is None else turn.affine(affine, self.stored_shapes[index])

    def shape(self, index: int) -> tuple[int, int, int]:
        turn = self.turns[index]
        stored = self.stored_shapes[index]
        return stored if turn is None else turn.shape(stored)

    def stored_axis(self, index: int, axis: int) -> int:
        """The stored array axis of volume ``index`` that training ``axis`` lies along (its slices as the user
        sees them: a scan stored with its axial slices along axis 0 shows them along axis 0)."""
        turn = self.turns[index]
        return axis if turn is None else turn.stored_axes[axis]

    def slice_index(self, index: int, axis: int, stored_slice: int) -> int:
        """Slice ``stored_slice`` along :meth:`stored_axis` of volume ``index`` as a training slice along ``axis``."""
        turn = self.turns[index]
        if turn is None or not turn.reversed_axes[axis]:
            return stored_slice
        return self.stored_shapes[index][turn.stored_axes[axis]] - 1 - stored_slice

    def focus(self, request: FocusRequest, axis: int) -> FocusRequest:
        """The slice the user looks at (along :meth:`stored_axis`) as a training slice."""
        if not 0 <= request.volume_index < len(self.turns):
            return request  # the trainer's own check names the bad index
        return dataclasses.replace(
            request, slice_index=self.slice_index(request.volume_index, axis, request.slice_index)
        )

    def labeled_slices(self, labeled: Mapping[int, Iterable[int]] | None, axis: int) -> dict[int, list[int]] | None:
        """Slices marked as labeled, each along its volume's :meth:`stored_axis`, as training slices."""
        if labeled is None:
            return None
        inside = range(len(self.turns))
        return {
            volume: [self.slice_index(volume, axis, int(s)) if volume in inside else int(s) for s in slices]
            for volume, slices in labeled.items()
        }

    # -- what goes out ----------------------------------------------------------------
    def to_stored(self, index: int, volume: np.ndarray) -> np.ndarray:
        """A whole volume in the training order (labels, probabilities) back in the volume's stored order."""
        turn = self.turns[index]
        return volume if turn is None else np.ascontiguousarray(turn.to_stored(volume))

    def to_training(self, index: int, volume: np.ndarray) -> np.ndarray:
        """A whole volume in its stored order in the training order (a view)."""
        turn = self.turns[index]
        return volume if turn is None else turn.from_stored(volume)

    def slices_out(self, predictions: Iterable[SlicePrediction]) -> tuple[SlicePrediction, ...]:
        """Streamed runs of slices in each volume's stored order (along the stored axis they lie on)."""
        return tuple(self._slice_out(prediction) for prediction in predictions)

    def _slice_out(self, prediction: SlicePrediction) -> SlicePrediction:
        turn = self.turns[prediction.volume_index]
        if turn is None:
            return prediction
        axis = prediction.axis
        stored_axis = turn.stored_axes[axis]
        size = self.shape(prediction.volume_index)[axis]
        start = size - prediction.stop if turn.reversed_axes[axis] else prediction.start

        def back(run: np.ndarray) -> np.ndarray:
            # The run as a thin block of the training volume, turned back, its stored axis first.
            stored = turn.to_stored(np.moveaxis(run, 0, axis))
            return np.ascontiguousarray(np.moveaxis(stored, stored_axis, 0))

        return SlicePrediction(
            prediction.volume_index, stored_axis, start, back(prediction.labels), back(prediction.confidence)
        )

    def updates_out(self, updates: Iterable[PredictionUpdate]) -> Iterator[PredictionUpdate]:
        """Whole-volume predictions with their arrays in the volume's stored order."""
        for update in updates:
            index = update.volume_index
            if not 0 <= index < len(self.turns) or self.turns[index] is None or not update.done:
                yield update
                continue
            yield self.turns[index].prediction_to_stored(update)

    # -- what a saved model records ------------------------------------------------------
    @staticmethod
    def references(world: Sequence[np.ndarray], painted: Sequence[int]) -> list[VoxelGeometry]:
        """Each training volume's geometry in the training order (``world``: their affines in it), the painted
        volumes first: what a saved model records, and what prediction reads other volumes in the order of."""
        order = [*painted, *(index for index in range(len(world)) if index not in painted)]
        return [VoxelGeometry.from_matrix(np.asarray(world[index])) for index in order]

    # -- what the user is told ----------------------------------------------------------
    def notes(self, world: Sequence[np.ndarray], names: Sequence[str] | None) -> list[str]:
        """One line per turned volume: what was done, so that nobody reorients the file by hand as well."""
        if self.reference is None:
            return []
        reference = self.reference.voxel_order()
        notes = []
        for index, turn in enumerate(self.turns):
            if turn is None:
                continue
            called = names[index] if names and index < len(names) else f"volume {index + 1}"
            order = VoxelGeometry.from_matrix(np.asarray(world[index])).voxel_order()
            notes.append(
                f"{called!r} is stored {order}, {self.of} {reference}: ACTION reads it in {reference} "
                "order (axes flipped or swapped, nothing resampled) and gives its labels back in its own."
            )
        return notes


def painted_indices(labels: Sequence[Any], labeled_slices: Mapping[int, Sequence[int]] | None = None) -> list[int]:
    """The volumes with a painted voxel or a slice marked as labeled, in order (before any check of the labels)."""
    marked = {volume for volume, slices in (labeled_slices or {}).items() if len(slices)}
    return [k for k, label in enumerate(labels) if k in marked or (label is not None and has_paint(label))]


def paint_in_painted_order(
    labels: Sequence[Any],
    world: Sequence[np.ndarray],
    stored_shapes: Sequence[Sequence[int]],
    model: VoxelGeometry | None = None,
) -> list[Any]:
    """Each volume's labels in the first painted volume's voxel order (or a continued ``model``'s: see
    :meth:`VolumeTurns.decide`), as the trainer will read them (views): what a front end decides the slicing
    axis from, so that axial slices painted on two scans stored with them along different array axes count as
    slices along one."""
    return VolumeTurns.decide(world, labels, painted_indices(labels), stored_shapes, model).labels(labels)


def model_order(checkpoint: Checkpoint | None) -> VoxelGeometry | None:
    """The voxel order ``checkpoint``'s network saw its training volumes in (None: no checkpoint, or saved
    without it): training that continues it reads every volume in that order."""
    recorded = [] if checkpoint is None else recorded_references(checkpoint)
    return recorded[0] if recorded else None
