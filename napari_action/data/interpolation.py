"""Interpolation between painted slices: the instant, training-free segmentation.

For every class and every pair of neighbouring labeled slices ``a < b`` the
signed distance maps ``D_a`` and ``D_b`` (positive inside the class, in
millimetres of the in-plane spacing) are blended linearly: a pixel of slice
``z`` belongs to the class where ``(1 - t) D_a + t D_b > 0``, ``t = (z - a) /
(b - a)``. A class painted on only one of the two slices shrinks linearly to
nothing at the other (it is eroded by ``t`` times its largest inner distance).
Where classes compete, the one deepest inside its own region wins, so touching
structures keep a shared border instead of the last class overwriting the
others. Slices before the first or after the last labeled slice are outside
the painted range: nothing is known there and they are left unlabeled.

This is what "fill between slices" tools do (signed-distance variant): the
baseline the network must beat, and the prior (:mod:`napari_action.data.priors`)
for users who choose shapes over the image; the default prior, the
propagation (:mod:`napari_action.data.propagation`), follows the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_action.data.annotations import SparseAnnotation

__all__ = [
    "SliceInterpolation",
    "SliceInterpolator",
    "annotation_interpolator",
    "check_slice_targets",
    "interpolate_class_slices",
    "interpolate_labels",
    "painted_class_targets",
]


@dataclass(frozen=True)
class SliceInterpolation:
    """Interpolated class ids of every slice, slicing axis first.

    Attributes
    ----------
    classes : np.ndarray
        ``(S, H, W)`` int64 class ids; 0 (background) outside the painted range.
    covered : np.ndarray
        ``(S,)`` bool: the slice lies within the painted range (between two
        labeled slices, or is one).
    distance : np.ndarray
        ``(S,)`` int64: slices to the nearest labeled slice (0 on labeled ones).
    gap : np.ndarray
        ``(S,)`` int64: length of the interval between the two labeled slices
        around the slice (0 on labeled slices and outside the painted range).
    """

    classes: np.ndarray
    covered: np.ndarray
    distance: np.ndarray
    gap: np.ndarray


def interpolate_class_slices(
    targets: dict[int, np.ndarray],
    num_slices: int,
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0),
) -> SliceInterpolation:
    """Interpolate class-id maps given on a few slices to every slice in their range.

    Parameters
    ----------
    targets : dict of int to np.ndarray
        Slice index -> ``(H, W)`` class ids of a labeled slice (values < 0,
        the ignore index, count as "not this class").
    num_slices : int
        Number of slices along the slicing axis.
    num_classes : int
        Class ids run from 0 (background) to ``num_classes - 1``.
    spacing : pair of float
        In-plane voxel size, so that distances are isotropic in millimetres.

    Returns
    -------
    SliceInterpolation

    Raises
    ------
    ValueError
        If no slice is given, a slice index is out of range, or the maps differ in shape.
    """
    slices = SliceInterpolator(targets, num_slices, num_classes, spacing, cached_slices=0)
    classes = np.zeros((num_slices, *slices.slice_shape), np.int64)
    for z in np.flatnonzero(slices.covered):
        classes[z] = slices.classes_at(int(z))
    return SliceInterpolation(classes, slices.covered, slices.distance, slices.gap)


class SliceInterpolator:
    """The interpolation between labeled slices, one slice at a time: no ``(S, H, W)`` array.

    Holds the signed distance maps of the labeled slices and computes the class ids of a
    slice when asked (the same as :func:`interpolate_class_slices`), keeping the last few.

    Parameters
    ----------
    targets, num_slices, num_classes, spacing
        As :func:`interpolate_class_slices`.
    cached_slices : int
        Interpolated slices kept for the next calls (training crops often hit the same slice).

    Attributes
    ----------
    covered, distance, gap : np.ndarray
        ``(S,)`` per slice, as in :class:`SliceInterpolation`.
    slice_shape : tuple of int
        ``(H, W)``.
    """

    def __init__(
        self,
        targets: dict[int, np.ndarray],
        num_slices: int,
        num_classes: int,
        spacing: Sequence[float] = (1.0, 1.0),
        cached_slices: int = 8,
    ) -> None:
        order, self.slice_shape = check_slice_targets(targets, num_slices)
        self._order = order
        self._targets = {s: np.asarray(targets[s]) for s in order}
        self._fields = {s: signed_distances(self._targets[s], num_classes, spacing) for s in order}
        index = np.arange(num_slices)
        self.distance = np.abs(index[:, None] - np.asarray(order)[None, :]).min(axis=1)
        self.covered = (index >= order[0]) & (index <= order[-1])
        self.gap = _gaps(order, num_slices)
        self._cached_slices = int(cached_slices)
        self._cache: dict[int, np.ndarray] = {}

    def classes_at(self, z: int) -> np.ndarray:
        """``(H, W)`` int64 class ids of slice ``z``: 0 outside the painted range (read-only, may be shared)."""
        if z in self._cache:
            return self._cache[z]
        classes = self._compute(z)
        classes.flags.writeable = False
        if self._cached_slices > 0:
            if len(self._cache) >= self._cached_slices:
                self._cache.pop(next(iter(self._cache)))  # the oldest
            self._cache[z] = classes
        return classes

    def confidence_at(self, z: int) -> np.ndarray:
        """Interpolated shapes carry no confidence of their own: 1 within the painted range, else 0."""
        return np.full(self.slice_shape, float(self.covered[z]), np.float32)

    def _compute(self, z: int) -> np.ndarray:
        if z in self._targets:
            return np.where(self._targets[z] < 0, 0, self._targets[z]).astype(np.int64)
        if not self.covered[z]:
            return np.zeros(self.slice_shape, np.int64)
        after = int(np.searchsorted(self._order, z))
        a, b = self._order[after - 1], self._order[after]
        return _blend(self._fields[a], self._fields[b], (z - a) / (b - a), self.slice_shape)


def check_slice_targets(targets: dict[int, np.ndarray], num_slices: int) -> tuple[list[int], tuple[int, int]]:
    """The labeled slices in order and their shape; ``ValueError`` if none, out of range or of several shapes."""
    if not targets:
        raise ValueError("At least one labeled slice is needed.")
    order = sorted(int(s) for s in targets)
    if order[0] < 0 or order[-1] >= num_slices:
        raise ValueError(f"Labeled slices {order} fall outside 0..{num_slices - 1}.")
    shapes = {np.shape(targets[s]) for s in order}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"Labeled slices must be 2D maps of one shape, got {sorted(shapes)}.")
    shape = next(iter(shapes))
    return order, (int(shape[0]), int(shape[1]))


def signed_distances(target: np.ndarray, num_classes: int, spacing: Sequence[float]) -> list[np.ndarray | None]:
    """Per foreground class: distance to its border, positive inside; None if absent."""
    fields: list[np.ndarray | None] = [None]
    for cls in range(1, num_classes):
        inside = target == cls
        if not inside.any():
            fields.append(None)
            continue
        outside_distance = ndimage.distance_transform_edt(~inside, sampling=spacing)
        inside_distance = ndimage.distance_transform_edt(inside, sampling=spacing)
        fields.append((inside_distance - outside_distance).astype(np.float32))
    return fields


def _blend(first: list, second: list, t: float, shape: tuple[int, int]) -> np.ndarray:
    """Class ids of an in-between slice at fraction ``t`` from ``first`` to ``second``."""
    best = np.zeros(shape, np.float32)  # a class needs a positive blended distance
    winner = np.zeros(shape, np.int64)
    for cls, (a, b) in enumerate(zip(first, second, strict=True)):
        if a is None and b is None:
            continue
        score = blended_field(a, b, t)
        better = score > best
        best[better] = score[better]
        winner[better] = cls
    return winner


def blended_field(a: np.ndarray | None, b: np.ndarray | None, t: float) -> np.ndarray:
    if a is not None and b is not None:
        return (1.0 - t) * a + t * b
    # Painted on one side only: erode it linearly so that it vanishes at the other slice.
    present, fraction = (a, t) if a is not None else (b, 1.0 - t)
    depth = float(present.max()) + 1e-3
    return present - fraction * depth


def _gaps(order: list[int], num_slices: int) -> np.ndarray:
    gap = np.zeros(num_slices, np.int64)
    for a, b in zip(order[:-1], order[1:], strict=True):
        gap[a + 1 : b] = b - a
    return gap


def annotation_interpolator(annotation: SparseAnnotation, volume_index: int) -> SliceInterpolator | None:
    """The interpolation between the labeled slices of one volume, computed slice by slice on demand.

    None in scribble mode (unpainted pixels are unknown there, not background)
    and for volumes without labeled slices.
    """
    slices = annotation.labeled_slices(volume_index)
    if annotation.mode != "slice" or not slices:
        return None
    targets = {s: annotation.target(volume_index, s) for s in slices}
    return SliceInterpolator(targets, annotation.num_slices(volume_index), annotation.num_classes)


def painted_class_targets(
    moved: np.ndarray, labeled_slices: Sequence[int], verb: str
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The label values in use (0 first) and the class ids of every painted slice of an axis-first volume.

    A slice counts as painted when it holds a non-zero voxel or is listed in
    ``labeled_slices``; ``ValueError`` (saying what could not ``verb``) when none is.
    """
    painted = set(np.flatnonzero(moved.reshape(moved.shape[0], -1).any(axis=1)).tolist())
    painted |= {int(s) for s in labeled_slices}
    if not painted:
        raise ValueError(f"Nothing is painted: paint at least one slice to {verb} from.")
    values = np.union1d([0], np.unique(moved[sorted(painted)]))
    return values, {s: np.searchsorted(values, moved[s]) for s in painted}


def interpolate_labels(
    labels: np.ndarray,
    axis: int,
    labeled_slices: Sequence[int] = (),
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """Fill the slices between painted slices of a label volume.

    Parameters
    ----------
    labels : np.ndarray
        3D integer label volume, painted on a few slices along ``axis``
        (0 = not painted). Not modified.
    axis : int
        Slicing axis.
    labeled_slices : sequence of int
        Extra slices that count as painted although they hold only background.
    spacing : sequence of 3 float, optional
        Voxel size of the volume (only the two in-plane entries are used).

    Returns
    -------
    np.ndarray
        New array of the same shape and dtype: painted slices unchanged,
        slices between them interpolated, slices outside the painted range 0.

    Raises
    ------
    ValueError
        If ``labels`` is not 3D or nothing is painted.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"Interpolation needs a 3D label volume, got shape {labels.shape}.")
    axis = int(axis) % 3
    moved = np.moveaxis(labels, axis, 0)
    values, ids = painted_class_targets(moved, labeled_slices, "interpolate")
    in_plane = [1.0, 1.0] if spacing is None else [float(spacing[a]) for a in range(3) if a != axis]
    result = interpolate_class_slices(ids, moved.shape[0], values.size, in_plane)
    return np.moveaxis(values[result.classes].astype(labels.dtype), 0, axis)
