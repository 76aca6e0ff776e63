"""The slicing axis of painted labels: which axis the user painted slices along.

A user painting "a few slices" leaves most slices of the slicing axis empty,
while the other two axes cross every painted slice. :func:`decide_axis` decides
the axis training slices along from everything that bears on it (a continued
model, the user's choice, accepted slices, the paint, the viewer) and says why;
:func:`infer_axis` is its answer from the paint alone; :func:`axis_mismatch_advice`
warns when training is told to slice along another axis than the paint's, and
:func:`crossing_slice_advice` when a slice painted along another axis crosses the
slices training takes as painted (a slip of the brush in another view). All
accept label arrays and the paint profiles of files read lazily
(:mod:`napari_action.data.painted_slices`).

This module only needs numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.data.painted_slices import PaintedSlices, PaintProfile

__all__ = [
    "AxisDecision",
    "and_list",
    "axis_mismatch_advice",
    "crossing_slice_advice",
    "decide_axis",
    "has_paint",
    "infer_axis",
    "label_array",
    "painted_profile",
    "painted_voxels",
]


class AxisDecision(NamedTuple):
    """The slicing axis training uses, and why, in plain words (``str()``: "axis 2: <reason>")."""

    axis: int
    reason: str

    def __str__(self) -> str:
        return f"axis {self.axis}: {self.reason}"


class _Candidates(NamedTuple):
    """The axes the user's inputs leave open, best last, and why those."""

    axes: tuple[int, ...]
    reason: str


def decide_axis(
    labels: Sequence[np.ndarray | PaintProfile | None],
    *,
    model_axis: int | None = None,
    chosen: int | None = None,
    accepted: int | None = None,
    viewer_axis: int | None = None,
) -> AxisDecision:
    """Decide the slicing axis once, from everything that bears on it, in priority order.

    1. ``model_axis``, when training can continue the loaded model: the inputs below
       leave its axis open (they name it, or the paint fits it as well as any other).
    2. ``chosen``: the user's explicit choice.
    3. ``accepted``: the axis slices were accepted along.
    4. The axis the painted slices lie along (the one with the fewest painted slices).
    5. On a tie, or with nothing painted: ``viewer_axis``, the axis the viewer slices along.

    Parameters
    ----------
    labels : sequence of np.ndarray, PaintProfile or None
        Painted label arrays, one per volume; ``None`` for unlabeled volumes.
        All arrays must have the same number of dimensions.
    model_axis : int, optional
        Slicing axis of a loaded model that training would continue from. When the
        decision is another axis, a new model must be trained (it cannot slice otherwise).
    chosen : int, optional
        The axis the user chose (None: "auto").
    accepted : int, optional
        The axis of the slices the user accepted as correct.
    viewer_axis : int, optional
        The axis the viewer slices along. Without it, a tie goes to the last tied axis.

    Returns
    -------
    AxisDecision
        The axis, non-negative, and the reason for it.

    Raises
    ------
    ValueError
        If nothing decides the axis (no voxel painted, no axis given), or if the
        arrays disagree in dimensionality.
    """
    arrays = [label_array(lab) for lab in labels if lab is not None]
    ndim = _common_ndim(arrays)
    model_axis, chosen, accepted, viewer_axis = (
        None if axis is None else normalize_axis(axis, ndim) for axis in (model_axis, chosen, accepted, viewer_axis)
    )
    open_axes = _open_axes(arrays, ndim, chosen, accepted)
    if model_axis in open_axes.axes:
        return AxisDecision(model_axis, "training continues the loaded model, which slices along it")
    if len(open_axes.axes) == 1:
        return AxisDecision(open_axes.axes[0], open_axes.reason)
    if viewer_axis in open_axes.axes:
        return AxisDecision(viewer_axis, f"{open_axes.reason}, and the viewer slices along it")
    if not any(has_paint(a) for a in arrays):
        raise ValueError("There are no painted voxels, so the slicing axis cannot be inferred.")
    return AxisDecision(open_axes.axes[-1], f"{open_axes.reason}; it is the last of them")


def infer_axis(labels: Sequence[np.ndarray | PaintProfile | None], fallback: int | None = None) -> int:
    """Return the axis along which only a few slices carry painted voxels.

    For every axis the share of slices (pooled over all volumes) the paint
    spreads over is computed, each slice weighed by its painted voxels; the
    axis with the smallest share wins, because a user painting "a few slices"
    leaves most slices of the slicing axis empty while the other two axes cross
    every painted slice. Weighed so, a stroke made in another view (a thin
    line on each slice it crosses) does not make its own axis the slicing one.
    It is :func:`decide_axis` with nothing but the paint and the viewer.

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
    return decide_axis(labels, viewer_axis=fallback).axis


def _common_ndim(arrays: list[np.ndarray | PaintProfile]) -> int:
    """The dimensionality of every array (3 when there is none)."""
    ndims = {a.ndim for a in arrays}
    if len(ndims) > 1:
        raise ValueError(f"All label arrays must have the same number of dimensions, got {sorted(ndims)}.")
    return ndims.pop() if ndims else 3


def _open_axes(
    arrays: list[np.ndarray | PaintProfile], ndim: int, chosen: int | None, accepted: int | None
) -> _Candidates:
    """The axes the choice, the accepted slices or else the paint leave open (the tie-breakers pick among them)."""
    if chosen is not None:
        return _Candidates((chosen,), "you chose it")
    if accepted is not None:
        return _Candidates((accepted,), "the slices you accepted lie along it")
    painted = [(a, counted) for a, counted in zip(arrays, map(_counted, arrays), strict=True) if has_paint(counted)]
    if not painted:
        return _Candidates(tuple(range(ndim)), "nothing is painted yet")
    spread = _paint_spread([counted for _, counted in painted])
    tied = tuple(int(a) for a in np.flatnonzero(np.isclose(spread, spread.min(), rtol=0.0, atol=1e-12)))
    across = {_painted_across(painted, axis) for axis in tied}
    if len(across) == 1 and None not in across:
        lines = f"axis {tied[0]} meets" if len(tied) == 1 else f"axes {and_list(tied)} meet"
        return _Candidates((across.pop(),), f"the painted slices lie along it ({lines} them as lines only)")
    if len(tied) == 1:
        return _Candidates(tied, "the painted slices lie along it")
    return _Candidates(tied, f"the paint lies along axes {and_list(tied)} alike")


def and_list(axes: Sequence[int]) -> str:
    """``0, 1 and 2``."""
    words = [str(a) for a in axes]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def axis_mismatch_advice(labels: Sequence[np.ndarray | None], axis: int) -> str | None:
    """A warning when the paint lies along another axis than the chosen slicing ``axis``, else None.

    In slice mode every slice along ``axis`` that touches a painted voxel counts as
    fully labeled, its unpainted voxels as background. Slices painted along another
    axis cross many slices along ``axis``, so training would learn background where the
    structures are: a class then sits on no labeled slice of its own.
    """
    arrays = [label_array(lab) for lab in labels if lab is not None]
    painted = [(a, counted) for a, counted in zip(arrays, map(_counted, arrays), strict=True) if has_paint(counted)]
    if not painted or len({a.ndim for a, _ in painted}) > 1:
        return None
    counts = [counted for _, counted in painted]
    axis = normalize_axis(axis, counts[0].ndim)
    spread = _paint_spread(counts)
    painted_axis = int(spread.argmin())
    across = _painted_across(painted, painted_axis)
    painted_axis = painted_axis if across is None else across
    # Dense labels touch every slice along every axis: no axis is "the painted one" then.
    if painted_axis == axis or _painted_fractions(counts).min() >= 0.5 or spread[axis] < 2 * spread.min():
        return None
    crossed = sum(int(np.count_nonzero(painted_profile(a, axis))) for a in counts)
    return (
        f"The painted slices lie along axis {painted_axis}, but training slices along axis {axis}: each of "
        f"the {crossed} slices along axis {axis} that touch paint counts as fully labeled, its unpainted "
        f"voxels as background. Choose axis {painted_axis} (or let the axis be inferred) unless that is what you mean."
    )


#: Slices along the training axis that a slice painted along another axis must cross, alone, to be pointed out.
CROSSED_SLICES_TO_WARN = 3


def crossing_slice_advice(labels: Sequence[np.ndarray | PaintProfile | None], axis: int) -> str | None:
    """A warning when slices painted along another axis than ``axis`` cross the slices along ``axis``, else None.

    A slice painted along another axis (a structure painted once in the axial view when training slices
    sagittally) leaves a single line of paint on every slice along ``axis`` it crosses, and each of them
    then counts as fully labeled: background wherever the line is not. Such a slice shows as the same
    line, one voxel thick, being the only paint on :data:`CROSSED_SLICES_TO_WARN` or more slices along
    ``axis``; a slice painted along ``axis`` holds more than such a line and is not counted, so a stray
    slice is found beside them (a structure one voxel thin along the other axis, painted at one index on
    several slices, looks the same and is pointed out too: the warning then says what to do if it is
    meant). Each volume is looked at on its own: volumes of a cohort differ in shape, and index ``j``
    of one is not index ``j`` of another. A lazily read file is looked at through its painted slices along
    ``axis`` (:class:`~napari_action.data.painted_slices.PaintedSlices`, all it keeps; a large uncompressed
    scan's stroke went unnoticed before); a paint profile without its slices is not looked at.
    """
    axis = normalize_axis(axis, 3)
    painted = [lab for lab in labels if _crossing_checkable(lab, axis)]
    if not painted:
        return None
    for other in (a for a in range(3) if a != axis):
        crossed, found = 0, set()
        for volume in painted:
            count, per_index = _line_only_slices(_crossing_profile(volume, axis, other))
            crossed += count
            found.update(int(j) for j in np.flatnonzero(per_index >= CROSSED_SLICES_TO_WARN))
        found = sorted(found)
        if found:
            slices = "slice" if len(found) == 1 else "slices"
            return (
                f"Paint on {slices} {and_list(found)} along axis {other} crosses {crossed} slices along axis "
                f"{axis}, the slicing axis, as a line: each of them counts as painted, background everywhere but "
                f"on that line. If that paint is a slip, erase it; if you meant to paint along axis {other}, "
                f"choose axis {other} as the slicing axis."
            )
    return None


def _crossing_checkable(labels: np.ndarray | PaintProfile | None, axis: int) -> bool:
    """Whether ``labels`` hold painted voxels to look at along ``axis``: a 3D array, or slices read along it."""
    if isinstance(labels, PaintedSlices):
        return labels.axis == axis and labels.any()
    return isinstance(labels, np.ndarray) and labels.ndim == 3 and bool(labels.any())


def _crossing_profile(labels: np.ndarray | PaintedSlices, axis: int, other: int) -> np.ndarray:
    """``profile[s, j]``: slice ``s`` along ``axis`` holds paint at index ``j`` along ``other``."""
    if isinstance(labels, PaintedSlices):
        # A slice along ``axis`` keeps the other two axes in order: ``other`` is its rows or its columns.
        across = 1 if other < 3 - axis - other else 0
        profile = np.zeros((labels.shape[axis], labels.shape[other]), bool)
        for index, values in (labels.slices or {}).items():
            profile[index] = np.any(values != 0, axis=across)
        return profile
    profile = np.any(labels != 0, axis=3 - axis - other)
    return profile.T if axis > other else profile


def _line_only_slices(profile: np.ndarray) -> tuple[int, np.ndarray]:
    """Slices whose paint (``profile[s, j]``: at index ``j`` along another axis) lies on isolated indices only:
    how many, and per index."""
    padded = np.pad(profile, ((0, 0), (1, 1)))
    isolated = profile & ~padded[:, :-2] & ~padded[:, 2:]
    line_only = profile.any(axis=1) & (isolated == profile).all(axis=1)
    return int(line_only.sum()), isolated[line_only].sum(axis=0)


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


def painted_voxels(array: np.ndarray | PaintProfile, axis: int) -> np.ndarray:
    """Per slice along ``axis``, how many voxels are painted (1 per painted slice where a profile did not count)."""
    if isinstance(array, PaintProfile):
        counted = array.voxels[axis] if array.voxels is not None else array.painted[axis]
        return np.asarray(counted, dtype=np.int64)
    others = tuple(a for a in range(array.ndim) if a != axis)
    return np.count_nonzero(array, axis=others)


_Counts = np.ndarray | PaintProfile

#: Slices along the first axis compared with 0 at once while counting the paint (16 x 512 x 400 booleans: 3 MB).
COUNT_BLOCK_SLICES = 16


def _counted(array: np.ndarray | PaintProfile) -> np.ndarray | PaintProfile:
    """A 3D label array's painted voxels counted per slice along each axis in one pass, a block of slices at a
    time (a profile, and an array of another dimensionality, as they are).

    Counted axis by axis, every voxel was compared with 0 three times over, on strided reads: 0.5 s on the GUI
    thread for a 512 x 512 x 400 volume at Train. The counts are the same (``np.count_nonzero`` per slice). A block
    without paint is only looked at.
    """
    if isinstance(array, PaintProfile) or array.ndim != 3:
        return array
    voxels = [np.zeros(n, np.int64) for n in array.shape]
    for start in range(0, array.shape[0], COUNT_BLOCK_SLICES):
        block = np.asarray(array[start : start + COUNT_BLOCK_SLICES] != 0)
        if not block.any():  # most blocks of a scan painted on a few slices: the sums below are the cost
            continue
        voxels[0][start : start + len(block)] = block.sum(axis=(1, 2))
        voxels[1] += block.sum(axis=(0, 2))
        voxels[2] += block.sum(axis=(0, 1))
    return PaintProfile(tuple(int(n) for n in array.shape), tuple(v > 0 for v in voxels), tuple(voxels))


def _paint_spread(arrays: list[np.ndarray | PaintProfile]) -> np.ndarray:
    """Per axis, over how large a share of its slices the paint spreads, each slice weighed by its painted voxels.

    A slice counts as much as the paint it holds, measured by the participation ratio (sum of the
    counts, squared, over the sum of their squares): k slices painted alike count as k, and a stroke made
    in another view, a thin line on each slice it crosses, adds little however many it crosses. Counted
    as painted or not, such a stroke made the axis of a thick-slice scan (few slices) its own: it
    crossed more of the few slices than the painted structures span of the many pixels across them.
    """
    ndim = arrays[0].ndim
    effective = np.zeros(ndim)
    total = np.zeros(ndim)
    for array in arrays:
        for axis in range(ndim):
            counts = painted_voxels(array, axis).astype(np.float64)
            squares = float(np.square(counts).sum())
            effective[axis] += float(counts.sum()) ** 2 / squares if squares > 0 else 0.0
            total[axis] += array.shape[axis]
    return effective / total


def _painted_across(painted: list[tuple[np.ndarray | PaintProfile, _Counts]], axis: int) -> int | None:
    """The axis of fewer painted slices than ``axis`` whose paint every painted slice along ``axis`` meets as lines
    only (the paint is those few slices), else None.

    :func:`_paint_spread` weighs the painted slices against the whole length of their axis: on a scan of few
    slices (512 x 512 x 12) two painted ones spread over a sixth of them, more than small structures spread
    over the 512 rows across, and training sliced along the rows, each holding only the painted slices' lines.
    A profile of a file read lazily does not show the lines: those are left to the spread. ``painted`` pairs
    each array with its counts (:func:`_counted`).
    """
    volumes = [a for a, _ in painted if isinstance(a, np.ndarray) and a.ndim == 3]
    if len(volumes) < len(painted) or not volumes:
        return None
    painted_along = {other: sum(int(painted_profile(c, other).sum()) for _, c in painted) for other in range(3)}
    for other in (a for a in range(3) if a != axis and painted_along[a] < painted_along[axis]):
        profiles = [_crossing_profile(volume, axis, other) for volume in volumes]
        if all(_line_only_slices(profile)[0] == int(profile.any(axis=1).sum()) for profile in profiles):
            return other
    return None


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
