"""Paint that lands on slices the user did not look at: a flood fill that leaked.

Training takes every slice along the slicing axis that holds a painted voxel as fully labeled, its
unpainted voxels as background (docs/usage.md, step 3). A flood fill whose outline is not closed
runs over the whole slice (over every slice, filling in 3D), without a sign on the screen but the
colour: that slice holds one label everywhere, and no background.

:func:`painting_slip_advice` points it out, after a slice painted in another view
(:func:`~napari_action.data.slicing_axis.crossing_slice_advice`). Only numpy is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.data.painted_slices import PaintedSlices, PaintProfile
from napari_action.data.slicing_axis import crossing_slice_advice, painted_profile

__all__ = ["filled_slice_advice", "painting_slip_advice"]

#: Slices named in a message before "…": a fill that leaked through a volume fills hundreds.
LISTED_SLICES = 8


def painting_slip_advice(labels: Sequence[np.ndarray | PaintProfile | None], axis: int) -> str | None:
    """A warning when paint lies on slices along ``axis`` the user likely did not look at, else None.

    The first that applies: a slice painted in another view, a slice one label fills whole (a
    flood fill that leaked).
    """
    return crossing_slice_advice(labels, axis) or filled_slice_advice(labels, axis)


def filled_slice_advice(labels: Sequence[np.ndarray | PaintProfile | None], axis: int) -> str | None:
    """A warning naming the slices along ``axis`` that hold one label on every voxel, else None."""
    axis = normalize_axis(axis, 3)
    found, values = set(), set()
    for volume in labels:
        for index, values_on_slice in _painted_slices(volume, axis):
            first = values_on_slice.flat[0]
            if np.all(values_on_slice == first):
                found.add(index)
                values.add(int(first))
    if not found:
        return None
    one = len(found) == 1
    return (
        f"{'Slice' if one else 'Slices'} {_listed(found)} along axis {axis}, the slicing axis, "
        f"{'holds' if one else 'hold'} one label on every voxel ({_listed(values)}), as a flood fill leaves "
        f"that ran over the whole slice (its outline not closed, or filling in 3D): training learns that label "
        "everywhere there and no background. Undo the fill (Ctrl+Z), close the outline and fill again with "
        "n edit dim 2."
    )


def _painted_slices(labels: np.ndarray | PaintProfile | None, axis: int) -> Iterator[tuple[int, np.ndarray]]:
    """Each painted slice along ``axis`` with its label values (none where only a profile is in memory)."""
    if isinstance(labels, PaintedSlices):
        if labels.axis == axis:
            yield from ((int(i), values) for i, values in (labels.slices or {}).items() if np.any(values))
        return
    if labels is None or isinstance(labels, PaintProfile):
        return
    array = np.asarray(labels)
    for index in np.flatnonzero(painted_profile(array, axis)):
        yield int(index), array[(slice(None),) * axis + (int(index),)]


def _listed(numbers: set[int]) -> str:
    """``3, 4 and 6``; past :data:`LISTED_SLICES` numbers, the first ones and how many in all."""
    ordered = [str(n) for n in sorted(numbers)]
    if len(ordered) > LISTED_SLICES:
        return f"{', '.join(ordered[:LISTED_SLICES])}, … ({len(ordered)} in all)"
    return ordered[0] if len(ordered) == 1 else f"{', '.join(ordered[:-1])} and {ordered[-1]}"
