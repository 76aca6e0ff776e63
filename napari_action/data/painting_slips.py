"""Paint that lands on slices the user did not look at: a 3D brush's ball, a flood fill that leaked.

Training takes every slice along the slicing axis that holds a painted voxel as fully labeled, its
unpainted voxels as background (docs/usage.md, step 3). Painting tools that reach past the slice
shown break that without a sign on the screen:

- a brush set to paint in 3D (napari's *n edit dim* 3) paints a ball: each slice above and below
  the one shown gets a smaller disc, inside the shown slice's paint, and trains as background all
  around it, over the structure the disc lies in;
- a flood fill whose outline is not closed runs over the whole slice (over every slice, filling
  in 3D): that slice holds one label everywhere, and no background.

:func:`painting_slip_advice` points out either, after a slice painted in another view
(:func:`~napari_action.data.slicing_axis.crossing_slice_advice`). Only numpy is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.data.painted_slices import PaintedSlices, PaintProfile
from napari_action.data.slicing_axis import and_list, crossing_slice_advice, painted_profile

__all__ = ["brushed_through_advice", "filled_slice_advice", "painting_slip_advice"]

#: Slices named in a message before "…": a fill that leaked through a volume fills hundreds.
LISTED_SLICES = 8


def painting_slip_advice(labels: Sequence[np.ndarray | PaintProfile | None], axis: int) -> str | None:
    """A warning when paint lies on slices along ``axis`` the user likely did not look at, else None.

    The first that applies: a slice painted in another view, a slice one label fills whole (a
    flood fill that leaked), slices a 3D brush painted around the one shown.
    """
    return (
        crossing_slice_advice(labels, axis) or filled_slice_advice(labels, axis) or brushed_through_advice(labels, axis)
    )


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


def brushed_through_advice(labels: Sequence[np.ndarray | PaintProfile | None], axis: int) -> str | None:
    """A warning naming the slices along ``axis`` whose paint a 3D brush seems to have left, else None.

    Such a slice's paint lies inside the paint of a neighbouring slice, each voxel with the same label,
    and is smaller: a ball's disc nests so in the disc of the slice next to it towards the ball's centre,
    while an outline drawn by hand rarely stays inside the next slice's all round (a slice holding the
    very paint of its neighbour is not named: either may be the slice shown). Volumes painted on
    half their slices or more (a complete mask) are not looked at: there a structure's last slices nest so too.
    """
    axis = normalize_axis(axis, 3)
    found: set[int] = set()
    for volume in labels:
        if _painted_share(volume, axis) < 0.5:
            found |= _brushed_through(dict(_painted_slices(volume, axis)))
    if not found:
        return None
    one = len(found) == 1
    return (
        f"Paint on {'slice' if one else 'slices'} {_listed(found)} along axis {axis}, the slicing axis, lies "
        "inside a part of the paint of the slice next to it, with the same labels, as a brush painting in 3D "
        "(napari's n edit dim 3) leaves on the slices around the one shown: "
        f"{'it counts' if one else 'each counts'} as painted, background everywhere else, the structures around "
        "that paint included. Paint those slices completely, or undo those strokes (Ctrl+Z) and paint with "
        "n edit dim 2; if you painted them completely on purpose, train on."
    )


def _brushed_through(slices: dict[int, np.ndarray]) -> set[int]:
    """The slices whose paint nests in a smaller part of a neighbour's (each voxel with the same label)."""
    found = set()
    for index, values in slices.items():
        painted = values != 0
        for neighbour in (slices.get(index - 1), slices.get(index + 1)):
            if neighbour is None:
                continue
            inside = bool(np.all(neighbour[painted] == values[painted]))
            if inside and painted.sum() < np.count_nonzero(neighbour):
                found.add(index)
                break
    return found


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


def _painted_share(labels: np.ndarray | PaintProfile | None, axis: int) -> float:
    """The share of the slices along ``axis`` that hold paint (0 without labels)."""
    if labels is None:
        return 0.0
    return float(np.mean(painted_profile(labels if isinstance(labels, PaintProfile) else np.asarray(labels), axis)))


def _listed(numbers: set[int]) -> str:
    """``3, 4 and 6``; past :data:`LISTED_SLICES` numbers, the first ones and how many in all."""
    ordered = sorted(numbers)
    if len(ordered) > LISTED_SLICES:
        return f"{', '.join(map(str, ordered[:LISTED_SLICES]))}, … ({len(ordered)} in all)"
    return and_list(ordered)
