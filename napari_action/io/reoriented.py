"""A volume seen in the training volumes' voxel order: its axes swapped or flipped on reading, nothing resampled.

A 2D network sees slices as stored. A scan stored in another voxel order than the training volumes
(LPS beside RAS, or its axial slices along another array axis) shows it the anatomy turned or in another
plane. :class:`Reorientation` maps the training order onto a volume's stored order from the two
voxel → world matrices; :class:`ReorientedSource` reads a volume through it, so that prediction sees it
as the training volumes were seen, and :meth:`Reorientation.to_stored` puts the labels back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from napari_action.io.geometry import VoxelGeometry
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import VolumeSource
from napari_action.progress import PredictionUpdate

__all__ = ["Reorientation", "ReorientedSource", "TurnedReader"]


@dataclasses.dataclass(frozen=True)
class Reorientation:
    """Axis ``i`` of the reoriented volume is stored axis ``stored_axes[i]``, reversed where ``reversed_axes[i]``."""

    stored_axes: tuple[int, int, int]
    reversed_axes: tuple[bool, bool, bool]

    @classmethod
    def between(cls, reference: VoxelGeometry, stored: VoxelGeometry) -> Reorientation | None:
        """The reorientation that gives ``stored`` the voxel order of ``reference``; None when it has it already,
        or when either order is unknown (a model saved without axis signs, an axis shared by two directions)."""
        if reference.signs is None or stored.signs is None or len(set(stored.directions)) != 3:
            return None
        axes = tuple(stored.directions.index(direction) for direction in reference.directions)
        flips = tuple(stored.signs[axis] != sign for axis, sign in zip(axes, reference.signs, strict=True))
        turn = cls(axes, flips)
        return None if turn.is_identity else turn

    @property
    def is_identity(self) -> bool:
        return self.stored_axes == (0, 1, 2) and not any(self.reversed_axes)

    def shape(self, stored_shape: Sequence[int]) -> tuple[int, int, int]:
        return tuple(int(stored_shape[axis]) for axis in self.stored_axes)

    def from_stored(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` (stored order) in the reoriented order: a view."""
        moved = np.transpose(volume, self.stored_axes)
        return moved[tuple(slice(None, None, -1) if flip else slice(None) for flip in self.reversed_axes)]

    def to_stored(self, volume: np.ndarray) -> np.ndarray:
        """``volume`` (reoriented order) back in the stored order: a view."""
        unflipped = volume[tuple(slice(None, None, -1) if flip else slice(None) for flip in self.reversed_axes)]
        return np.transpose(unflipped, np.argsort(self.stored_axes))

    def prediction_to_stored(self, update: PredictionUpdate) -> PredictionUpdate:
        """A finished whole-volume prediction made in the reoriented order, its arrays (contiguous) and its
        slicing axis in the stored order."""
        arrays = {
            name: None if getattr(update, name) is None else np.ascontiguousarray(self.to_stored(getattr(update, name)))
            for name in ("labels", "confidence", "entropy")
        }
        axis = None if update.axis is None else self.stored_axes[update.axis]
        return dataclasses.replace(update, **arrays, axis=axis)

    def stored_index(self, axis: int, index: int, size: int) -> tuple[int, int]:
        """Slice ``index`` along reoriented ``axis`` (``size`` slices) as (stored axis, stored index)."""
        return self.stored_axes[axis], size - 1 - index if self.reversed_axes[axis] else index

    def affine(self, stored_affine: np.ndarray, stored_shape: Sequence[int]) -> np.ndarray:
        """The voxel → world matrix of the reoriented volume: every voxel keeps its place in the world."""
        voxel = np.zeros((4, 4))
        voxel[3, 3] = 1.0
        for axis, (stored, flip) in enumerate(zip(self.stored_axes, self.reversed_axes, strict=True)):
            voxel[stored, axis] = -1.0 if flip else 1.0
            voxel[stored, 3] = stored_shape[stored] - 1 if flip else 0.0
        return np.asarray(stored_affine, dtype=np.float64) @ voxel


class SliceRuns(Protocol):
    """Anything read in runs of slices: a shape, and ``read(axis, start, stop)`` with that axis first."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def read(self, axis: int, start: int, stop: int) -> np.ndarray: ...


class TurnedReader:
    """Runs of slices of any slice reader (``shape`` and ``read(axis, start, stop)``) read through a
    :class:`Reorientation`: a lazy volume turned without reading it whole."""

    def __init__(self, reader: SliceRuns, turn: Reorientation):
        self.reader, self.turn = reader, turn

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.turn.shape(self.reader.shape)

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along reoriented ``axis``, that axis first, read from the stored axis it is."""
        stored_axis, size = self.turn.stored_axes[axis], self.shape[axis]
        flipped = self.turn.reversed_axes[axis]
        low, high = (size - stop, size - start) if flipped else (start, stop)
        block = self.reader.read(stored_axis, low, high)
        if flipped:
            block = block[::-1]
        # The block's other axes are the stored ones in order; each reoriented in-plane axis takes its own.
        rest_stored = [a for a in range(3) if a != stored_axis]
        rest = [a for a in range(3) if a != axis]
        block = np.transpose(block, [0, *(1 + rest_stored.index(self.turn.stored_axes[a]) for a in rest)])
        flips = [slice(None)] + [slice(None, None, -1) if self.turn.reversed_axes[a] else slice(None) for a in rest]
        return block[tuple(flips)]


class ReorientedSource(TurnedReader):
    """A :class:`~napari_action.io.volume_source.VolumeSource` read through a :class:`Reorientation`."""

    def __init__(self, source: VolumeSource, turn: Reorientation):
        super().__init__(source, turn)
        self.source = source
        self.path: Path = source.path
        stored = source.meta
        affine = turn.affine(stored.affine, stored.shape)
        zooms = tuple(float(stored.zooms[axis]) for axis in turn.stored_axes)
        self.meta: VolumeMeta = dataclasses.replace(stored, affine=affine, zooms=zooms, shape=turn.shape(stored.shape))
