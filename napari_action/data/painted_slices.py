"""The painted slices of a label file too large for memory, read a few slices at a time.

Training needs only the painted slices of a label volume, but finding them means looking at every
voxel. :func:`read_painted_slices` does that in two passes over a
:class:`~napari_action.io.volume_source.VolumeSource` (an uncompressed ``.nii`` or a zarr store):

1. blocks of slices along the first axis give, for each of the three axes, how many painted voxels
   each slice holds (what :func:`~napari_action.data.slicing_axis.infer_axis` decides the slicing axis
   from);
2. only the painted slices along the slicing axis are read and kept.

Memory stays at one block plus the painted slices, whatever the volume's size. The result,
:class:`PaintedSlices`, is accepted wherever a label array is (``Trainer``, ``SparseAnnotation``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.io.nifti import LABEL_NAN_ADVICE, NonFiniteVoxelsError
from napari_action.io.reoriented import Reorientation
from napari_action.io.volume_source import VolumeSource
from napari_action.label_values import as_integer_labels

__all__ = ["PaintProfile", "PaintedSlices", "read_painted_slices", "scan_paint"]

#: Slices read at once while scanning (one block is all the scan holds in memory).
SCAN_BLOCK_SLICES = 8


@dataclass(frozen=True)
class PaintProfile:
    """Which slices hold a painted voxel, along each of the three axes.

    Attributes
    ----------
    shape : tuple of int
        The label volume's shape.
    painted : tuple of numpy.ndarray
        ``painted[a][s]``: slice ``s`` along axis ``a`` holds a non-zero voxel.
    voxels : tuple of numpy.ndarray or None
        ``voxels[a][s]``: how many non-zero voxels slice ``s`` along axis ``a`` holds (None: not counted).
    """

    shape: tuple[int, int, int]
    painted: tuple[np.ndarray, np.ndarray, np.ndarray]
    voxels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def ndim(self) -> int:
        """Always 3 (a label volume)."""
        return 3

    def any(self) -> bool:
        """Whether any voxel is painted."""
        return bool(self.painted[0].any())

    def turned(self, turn: Reorientation) -> PaintProfile:
        """The profile of the volume read through ``turn`` (another voxel order: axes swapped or flipped)."""
        return PaintProfile(turn.shape(self.shape), *_turned_profiles(self, turn))


@dataclass(frozen=True)
class PaintedSlices(PaintProfile):
    """The painted slices along one axis, each a 2D array of label values; other slices are 0.

    Attributes
    ----------
    axis : int
        The axis the slices were read along.
    slices : mapping of int to numpy.ndarray
        Slice index → its label values (integers, non-negative).
    """

    axis: int = 0
    slices: Mapping[int, np.ndarray] | None = None

    def take(self, index: int, axis: int) -> np.ndarray:
        """Slice ``index`` along ``axis`` (zeros where nothing is painted).

        Raises
        ------
        ValueError
            For another axis than the one read: only that one is in memory.
        """
        if normalize_axis(axis, 3) != self.axis:
            raise ValueError(
                f"These labels were read along axis {self.axis}, not {axis}; read them again along axis {axis}."
            )
        found = (self.slices or {}).get(int(index))
        if found is not None:
            return found
        shape = tuple(n for a, n in enumerate(self.shape) if a != self.axis)
        return np.zeros(shape, np.uint8)

    def turned(self, turn: Reorientation) -> PaintedSlices:
        """These slices as the volume read through ``turn`` holds them: along the axis the read one became,
        numbered and laid out in its order (each slice a view)."""
        axis = turn.stored_axes.index(self.axis)
        size = self.shape[self.axis]
        # The stored slice's two axes, in order, against the turned slice's: each turned one takes its own.
        stored_plane = [a for a in range(3) if a != self.axis]
        plane = [a for a in range(3) if a != axis]
        order = [stored_plane.index(turn.stored_axes[a]) for a in plane]
        flips = tuple(slice(None, None, -1) if turn.reversed_axes[a] else slice(None) for a in plane)
        slices = {
            size - 1 - index if turn.reversed_axes[axis] else index: np.transpose(values, order)[flips]
            for index, values in (self.slices or {}).items()
        }
        return PaintedSlices(turn.shape(self.shape), *_turned_profiles(self, turn), axis=axis, slices=slices)


def _turned_profiles(profile: PaintProfile, turn: Reorientation) -> tuple[tuple, tuple | None]:
    """``profile``'s painted slices (and voxel counts) per axis of the volume read through ``turn``."""

    def along(per_axis: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        step = [slice(None, None, -1) if flip else slice(None) for flip in turn.reversed_axes]
        return tuple(per_axis[stored][step[axis]] for axis, stored in enumerate(turn.stored_axes))

    return along(profile.painted), None if profile.voxels is None else along(profile.voxels)


def _checked_block(block: np.ndarray, source: VolumeSource) -> np.ndarray:
    return as_integer_labels(block, f"{source.path}: labels", non_negative=True)


def _read(source: VolumeSource, axis: int, start: int, stop: int) -> np.ndarray:
    try:
        return _checked_block(source.read(axis, start, stop), source)
    except NonFiniteVoxelsError as error:
        # Guessing a label for NaN voxels is not ours to do: only the file's author can fix them.
        raise error.with_advice(LABEL_NAN_ADVICE) from None


def scan_paint(source: VolumeSource, block_slices: int = SCAN_BLOCK_SLICES) -> PaintProfile:
    """Which slices hold paint along each axis, reading ``block_slices`` slices at a time.

    Raises
    ------
    ValueError
        If voxels are negative, fractional or not numbers (the file is named).
    NonFiniteVoxelsError
        If voxels are NaN or infinite.
    """
    shape = tuple(int(n) for n in source.shape)
    voxels = [np.zeros(n, np.int64) for n in shape]
    for start in range(0, shape[0], block_slices):
        stop = min(start + block_slices, shape[0])
        block = _read(source, 0, start, stop) != 0  # (slices along axis 0, axis 1, axis 2)
        voxels[0][start:stop] = block.sum(axis=(1, 2))
        voxels[1] += block.sum(axis=(0, 2))
        voxels[2] += block.sum(axis=(0, 1))
    return PaintProfile(shape, tuple(counts > 0 for counts in voxels), tuple(voxels))


def read_painted_slices(
    source: VolumeSource, axis: int, profile: PaintProfile | None = None, extra: Sequence[int] = ()
) -> PaintedSlices:
    """The painted slices of ``source`` along ``axis`` (plus ``extra`` slices marked as labeled).

    Parameters
    ----------
    source : VolumeSource
        The label volume.
    axis : int
        Slicing axis of the training.
    profile : PaintProfile, optional
        From :func:`scan_paint`, when the caller already scanned (e.g. to infer the axis).
    extra : sequence of int
        Slices to keep even if unpainted (background-only slices marked as labeled).
    """
    profile = profile or scan_paint(source)
    axis = normalize_axis(axis, 3)
    wanted = sorted(set(np.flatnonzero(profile.painted[axis]).tolist()) | {int(s) for s in extra})
    slices = {s: _read(source, axis, s, s + 1)[0] for s in wanted if 0 <= s < profile.shape[axis]}
    return PaintedSlices(profile.shape, profile.painted, profile.voxels, axis=axis, slices=slices)
