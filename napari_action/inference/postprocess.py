"""What happens to a prediction after the network: smoothing across slices, the prior, clean-up.

* :class:`SliceSmoother` averages each slice's probabilities with its neighbours'.
* :func:`fuse_prior` mixes in the prior from the painted slices near them.
* Beyond the slices its propagation reaches (:mod:`napari_action.data.structure_extents`)
  a structure is ended where it grows again or at once (:func:`trim_beyond_extents`,
  the whole-volume prediction; slices streamed during training, a few at a time:
  :func:`clear_outside_extents` at once, :func:`taper_streamed` where it grows again).
* :func:`keep_largest_components` (optional): a 2D network predicts each slice on
  its own, so it leaves stray blobs on slices far from any painted one. Most
  anatomical structures are one connected piece per side, so keeping the
  largest 3D connected components of each class removes those blobs (measured
  on Colin27 in docs/benchmarks.md). Structures that really are several pieces
  (left and right under one label) need ``keep=2``; the option is off by
  default for that reason.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_action.data.structure_extents import StructureExtents, neighbour_counts


def keep_largest_components(labels: np.ndarray, keep: int = 1, background: int = 0) -> np.ndarray:
    """Keep the ``keep`` largest 3D connected components of every label value.

    Parameters
    ----------
    labels : np.ndarray
        Integer label volume; it is not modified.
    keep : int
        Number of components kept per label value (2 for paired structures
        labelled alike on both sides).
    background : int
        Value of removed voxels.

    Returns
    -------
    np.ndarray
        A cleaned copy, same shape and dtype.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}.")
    cleaned = labels.copy()
    for value in np.unique(labels):
        if value == background:
            continue
        mask = labels == value
        components, count = ndimage.label(mask)
        if count <= keep:
            continue
        sizes = np.bincount(components.ravel())[1:]
        kept = np.argsort(sizes)[::-1][:keep] + 1
        cleaned[mask & ~np.isin(components, kept)] = background
    return cleaned


#: The thinnest slice that lengths along the slicing axis (the smoothing, the prior's decay) are counted on.
#: 1.5 mm of smoothing was chosen on 1 mm slices (1.5 slices; from 0 to 4 the Dice was flat there); a
#: microscope's stack of 2 µm slices, its header in micrometres, is read in millimetres, and 1.5 mm spanned
#: 750 of its slices, averaged every slice with the whole stack and left its cells predicted nowhere; the
#: prior's 6 mm decay likewise mixed the propagation into all 3,000 slices around a painted one. On thinner
#: slices these lengths span as many slices as on 1 mm ones.
THINNEST_COUNTED_MM = 1.0


def slices_spanned(length_mm: float, thickness_mm: float) -> float:
    """``length_mm`` along the slicing axis in slices: over the slice thickness, or over 1 mm for thinner slices."""
    return length_mm / max(thickness_mm, THINNEST_COUNTED_MM)


class SliceSmoother:
    """Gaussian smoothing of per-slice class probabilities along the slicing axis, slice by slice.

    A 2D network predicts each slice on its own; neighbouring slices of an
    anatomical structure are nearly alike, so averaging each slice's
    probabilities with its neighbours' (Gaussian weights, ``sigma`` slices)
    removes flicker between slices. On Colin27 it raised mean Dice by 0.005
    (3 painted slices) to 0.017 (7) (docs/benchmarks.md). Only ``2 * radius + 1``
    slices are held at a time, so memory does not grow with the volume.

    Parameters
    ----------
    sigma : float
        Standard deviation in slices; 0 passes slices through unchanged.
    n_slices : int
        Slices in the volume (the kernel is renormalised at its ends).
    """

    def __init__(self, sigma: float, n_slices: int):
        if sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}.")
        self.radius = int(np.ceil(3 * sigma)) if sigma > 0 else 0
        offsets = np.arange(-self.radius, self.radius + 1)
        self._kernel = np.exp(-0.5 * (offsets / sigma) ** 2) if sigma > 0 else np.ones(1)
        self.n_slices = int(n_slices)
        self._held: dict[int, np.ndarray] = {}
        self._next = 0  # the next slice to complete
        self._pushed = -1  # the last slice received

    def push(self, index: int, probs: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add slice ``index`` (slices must come in order); return the slices now complete."""
        if index != self._pushed + 1:
            raise ValueError(f"Slices must arrive in order; expected {self._pushed + 1}, got {index}.")
        self._pushed = index
        self._held[index] = probs
        ready = []
        while self._next in self._held and min(self._next + self.radius, self.n_slices - 1) in self._held:
            ready.append((self._next, self._smoothed(self._next)))
            self._held.pop(self._next - self.radius, None)
            self._next += 1
        return ready

    def _smoothed(self, index: int) -> np.ndarray:
        lo, hi = max(index - self.radius, 0), min(index + self.radius, self.n_slices - 1)
        weights = self._kernel[lo - index + self.radius : hi - index + self.radius + 1]
        total = sum(w * self._held[j] for w, j in zip(weights, range(lo, hi + 1), strict=True))
        return (total / weights.sum()).astype(np.float32)


def fuse_prior(
    probs: np.ndarray,
    prior_classes: np.ndarray,
    distance: int,
    decay: float,
    prior_confidence: np.ndarray | None = None,
) -> np.ndarray:
    """Mix one slice's probabilities with the prior from the labeled slices.

    ``alpha = confidence * exp(-distance / decay)`` of the vote goes to the
    prior's class (a one-hot map: propagated or interpolated), the rest to the network: on a labeled slice
    (distance 0) the labels win, a few slices away the network decides.

    Parameters
    ----------
    probs : np.ndarray
        ``(C, H, W)`` class probabilities of the slice.
    prior_classes : np.ndarray
        ``(H, W)`` the prior's class ids of the same slice.
    distance : int
        Slices to the nearest labeled slice.
    decay : float
        Slices over which the prior's share falls by a factor e; 0 turns fusion off.
    prior_confidence : np.ndarray, optional
        ``(H, W)`` the prior's own confidence in [0, 1] (default 1 everywhere).
    """
    if decay <= 0:
        return probs
    alpha = float(np.exp(-distance / decay))
    if prior_confidence is not None:
        alpha = alpha * prior_confidence[None].astype(probs.dtype)
    onehot = np.zeros_like(probs)
    np.put_along_axis(onehot, prior_classes[None].astype(np.int64), 1.0, axis=0)
    return (1.0 - alpha) * probs + alpha * onehot


def clear_outside_extents(probs: np.ndarray, extents: StructureExtents | None, z: int) -> np.ndarray:
    """Slice ``z``'s ``(C, H, W)`` probabilities with every structure that ``extents`` end before ``z`` removed.

    What such a structure had goes to the background (class 0): the prior says
    the structure is not on this slice, not that something else is there.
    Returns ``probs`` itself when nothing is removed.
    """
    if extents is None:
        return probs
    outside = extents.outside(z)
    if not outside.any():
        return probs
    bounded = probs.copy()
    bounded[0] += bounded[outside].sum(axis=0)
    bounded[outside] = 0.0
    return bounded


def trim_beyond_extents(
    labels: np.ndarray, extents: StructureExtents | None, class_values: np.ndarray, rule: str = "taper"
) -> None:
    """End each structure beyond its extent; ``labels`` (label values, slicing axis first) changed in place.

    ``rule`` "cut" removes every structure from the slices beyond its extent. ``rule`` "taper"
    walks outwards from the extent's first and last slice and keeps the structure while its
    predicted area stays within :data:`TAPER_SLACK` of the smallest area met since the
    extent's end (plus one pixel); from the first slice where it grows beyond that, it is
    removed there and further out. A real structure narrows towards its end; one that grows
    again past where the propagation ends it has run into something else that looks alike.
    Removed voxels take the background value, ``class_values[0]``. A structure that ``extents.walls``
    says another one walls is ended by its wall instead: "cut" leaves it :data:`WALLED_MARGIN` slices
    beyond its extent, then ends it, walking out from where its wall holds, on the first slice where
    the wall covers less than :data:`UNWALLED` of what it covered there (a ventricle run on into the
    atrium above a heart's base: the myocardium that walled it has ended).

    The cut was better on the phantom's hearts, which end abruptly, and up to 0.06 worse on
    vertebrae in sagittal slices, which reach far beyond their painted cross-section; the
    taper never more than 0.009 worse than the network alone (docs/benchmarks.md, "Where each structure ends").
    """
    if extents is None:
        return
    if rule not in ("taper", "cut"):
        raise ValueError(f"rule must be 'taper' or 'cut', got {rule!r}.")
    walled = {c for c, _, _ in extents.walls} if rule == "cut" else set()
    for c in np.flatnonzero(extents.first >= 0):
        if rule == "cut":
            margin = WALLED_MARGIN if c in walled else 0
            low, high = int(extents.first[c]) - margin, int(extents.last[c]) + margin
        else:
            low, high = taper_range(np.count_nonzero(labels == class_values[c], axis=(1, 2)), extents, c)
        _remove_outside(labels, class_values[c], low, high, class_values[0])
    if rule == "cut":
        for walled in extents.walls:
            _end_where_unwalled(labels, walled, class_values)


#: How much a structure's area may grow, past the end of its extent, over the smallest area since.
TAPER_SLACK = 0.1
#: A walled structure has lost its wall on a slice where the wall covers less than this share of the
#: border it covered on the prior's slices.
UNWALLED = 0.5
#: Slices beyond its extent that "cut" leaves a walled structure, for its wall to end it: an affine
#: registration places a never-painted heart's base only to within a slice, and between two painted
#: slices the propagation ends a cavity that closes there half way. Screened on the demo's hearts: 1
#: slice was never worse than 0 (docs/benchmarks.md).
WALLED_MARGIN = 1


def _end_where_unwalled(labels: np.ndarray, walled: tuple[int, int, float], class_values: np.ndarray) -> None:
    """End a walled structure, walking out from its largest walled slice, on the first slice it has lost its wall.

    The walk starts where the wall holds, not at the largest slice: a ventricle run on into the atrium
    above a heart's base is larger than any true cross-section of it.
    """
    c, by, cover = walled
    value, wall = class_values[c], class_values[by]
    area = np.count_nonzero(labels == value, axis=(1, 2))
    held = np.array(
        [area[z] > 0 and _wall_cover(labels[z], value, wall) >= UNWALLED * cover for z in range(len(labels))]
    )
    if not held.any():
        return
    core = int(np.argmax(np.where(held, area, -1)))
    for step in (1, -1):
        z = core
        while 0 <= z < len(labels) and (area[z] == 0 or held[z]):
            z += step
        if 0 <= z < len(labels):
            part = labels[z:] if step > 0 else labels[: z + 1]
            part[part == value] = class_values[0]


def _wall_cover(labels: np.ndarray, value: int, wall: int) -> float:
    """Share of the border of ``value``'s region on one slice that touches ``wall``."""
    counts = neighbour_counts(np.where(labels == value, 1, np.where(labels == wall, 2, 0)), 3)
    return float(counts[1, 2] / max(counts[1].sum(), 1))


def taper_range(area: np.ndarray, extents: StructureExtents, c: int) -> tuple[int, int]:
    """The first and last slice the taper keeps structure ``c`` on, from its ``area`` on every slice.

    ``area`` may hold NaN where the area is not known yet (slices not streamed so far): the walk
    outwards ends there, as where the structure grows again.
    """
    low = _end_of_taper(area, int(extents.first[c]), -1)
    high = _end_of_taper(area, int(extents.last[c]), 1)
    return (0 if low is None else low + 1), (area.size - 1 if high is None else high - 1)


def taper_streamed(
    labels: np.ndarray, start: int, area: np.ndarray, extents: StructureExtents | None, class_values: np.ndarray
) -> None:
    """The taper on slices ``start:start + len(labels)`` of a volume streamed a few slices at a time.

    ``area`` is ``(slices, classes)``: each class's area on every slice of the volume in the latest
    streamed prediction, NaN where none has been streamed; ``labels`` (label values) change in place.
    A structure is kept beyond its extent only where the walk from the extent's end over known
    areas shows it narrowing, as :func:`trim_beyond_extents` keeps it on the whole volume.
    """
    if extents is None:
        return
    for c in np.flatnonzero(extents.first >= 0):
        low, high = taper_range(area[:, c], extents, c)
        _remove_outside(labels, class_values[c], low - start, high - start, class_values[0])


def _remove_outside(labels: np.ndarray, value: int, low: int, high: int, background: int) -> None:
    """``value`` becomes ``background`` on the slices of ``labels`` before ``low`` and after ``high``."""
    for part in (labels[: max(low, 0)], labels[max(high + 1, 0) :]):
        part[part == value] = background


def _end_of_taper(area: np.ndarray, start: int, step: int) -> int | None:
    """The first slice from ``start`` outwards (``step`` = +1 or -1) where the area has grown again, or
    is not known (NaN); None if never."""
    smallest = area[start]
    z = start + step
    if np.isnan(smallest):
        return z if 0 <= z < area.size else None
    while 0 <= z < area.size:
        if np.isnan(area[z]) or area[z] > smallest * (1.0 + TAPER_SLACK) + 1:
            return z
        smallest = min(smallest, area[z])
        z += step
    return None
