"""The slicing axis of painted labels: which axis the user painted slices along.

A user painting "a few slices" leaves most slices of the slicing axis empty,
while the other two axes cross every painted slice. :func:`infer_axis` picks
that axis; :func:`axis_mismatch_advice` warns when training is told to slice
along another one. Both accept label arrays and the paint profiles of files
read lazily (:mod:`napari_action.data.painted_slices`).

This module only needs numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.data.painted_slices import PaintProfile

__all__ = ["axis_mismatch_advice", "has_paint", "infer_axis", "label_array", "painted_profile"]


def infer_axis(labels: Sequence[np.ndarray | None], fallback: int | None = None) -> int:
    """Return the axis along which only a few slices carry painted voxels.

    For every axis the fraction of slices (pooled over all volumes) holding at
    least one non-zero voxel is computed; the axis with the smallest fraction
    wins, because a user painting "a few slices" leaves most slices of the
    slicing axis empty while the other two axes cross every painted slice.

    Parameters
    ----------
    labels : sequence of np.ndarray or None
        Painted label arrays, one per volume; ``None`` for unlabeled volumes.
        All arrays must have the same number of dimensions.
    fallback : int, optional
        Axis to use when the fractions tie (e.g. a single painted voxel in a
        cube) or when nothing is painted, typically the plane shown in the
        viewer. Used on a tie only if it is one of the tied axes.

    Returns
    -------
    int
        The inferred axis, non-negative. On a tie without a usable
        ``fallback``, the last of the tied axes.

    Raises
    ------
    ValueError
        If no voxel is painted and no ``fallback`` is given, or if the arrays
        disagree in dimensionality.
    """
    arrays = [label_array(lab) for lab in labels if lab is not None]
    ndims = {a.ndim for a in arrays}
    if len(ndims) > 1:
        raise ValueError(f"All label arrays must have the same number of dimensions, got {sorted(ndims)}.")
    if fallback is not None:
        fallback = normalize_axis(fallback, arrays[0].ndim if arrays else 3)
    painted = [a for a in arrays if has_paint(a)]
    if not painted:
        if fallback is None:
            raise ValueError("There are no painted voxels, so the slicing axis cannot be inferred.")
        return int(fallback)
    fractions = _painted_fractions(painted)
    tied = np.flatnonzero(np.isclose(fractions, fractions.min(), rtol=0.0, atol=1e-12))
    if fallback is not None and fallback in tied:
        return int(fallback)
    return int(tied[-1])


def axis_mismatch_advice(labels: Sequence[np.ndarray | None], axis: int) -> str | None:
    """A warning when the paint lies along another axis than the chosen slicing ``axis``, else None.

    In slice mode every slice along ``axis`` that touches a painted voxel counts as
    fully labeled, its unpainted voxels as background. Slices painted along another
    axis cross many slices along ``axis``, so training would learn background where the
    structures are: a class then sits on no labeled slice of its own.
    """
    arrays = [label_array(lab) for lab in labels if lab is not None and has_paint(label_array(lab))]
    if not arrays or len({a.ndim for a in arrays}) > 1:
        return None
    axis = normalize_axis(axis, arrays[0].ndim)
    fractions = _painted_fractions(arrays)
    painted_axis = int(fractions.argmin())
    # Dense labels touch every slice along every axis: no axis is "the painted one" then.
    if painted_axis == axis or fractions.min() >= 0.5 or fractions[axis] < 2 * fractions.min():
        return None
    crossed = sum(int(np.count_nonzero(painted_profile(a, axis))) for a in arrays)
    return (
        f"The painted slices lie along axis {painted_axis}, but training slices along axis {axis}: each of "
        f"the {crossed} slices along axis {axis} that touch paint counts as fully labeled, its unpainted "
        f"voxels as background. Choose axis {painted_axis} (or 'auto') unless that is what you mean."
    )


def label_array(labels: np.ndarray | PaintProfile) -> np.ndarray | PaintProfile:
    """A label array, or the painted slices of a file read lazily (already scanned)."""
    return labels if isinstance(labels, PaintProfile) else np.asarray(labels)


def has_paint(array: np.ndarray | PaintProfile) -> bool:
    """Whether any voxel is painted (non-zero)."""
    return array.any() if isinstance(array, PaintProfile) else bool(np.any(array))


def painted_profile(array: np.ndarray | PaintProfile, axis: int) -> np.ndarray:
    """Boolean per slice along ``axis``: does the slice hold a non-zero voxel."""
    if isinstance(array, PaintProfile):
        return array.painted[axis]
    others = tuple(a for a in range(array.ndim) if a != axis)
    return np.any(array, axis=others)


def _painted_fractions(arrays: list[np.ndarray | PaintProfile]) -> np.ndarray:
    """Fraction of slices with a painted voxel along each axis, pooled over volumes."""
    ndim = arrays[0].ndim
    painted = np.zeros(ndim)
    total = np.zeros(ndim)
    for array in arrays:
        for axis in range(ndim):
            painted[axis] += np.count_nonzero(painted_profile(array, axis))
            total[axis] += array.shape[axis]
    return painted / total
