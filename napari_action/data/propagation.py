"""Image-guided propagation of painted slices: labels that follow the anatomy.

Shape interpolation (:mod:`napari_action.data.interpolation`) morphs one
painted outline into the next without looking at the image. Propagation looks:
between every two neighbouring slices it estimates the in-plane motion of the
image (2D optical flow, scikit-image's iterative Lucas-Kanade), and carries the
class probabilities of a painted slice along that motion one slice at a time.

* **Between two painted slices** both are carried towards each other and the
  two estimates are blended by distance (the nearer painted slice counts more),
  so a structure that changes shape between them follows the image, not a
  straight morph.
* **Beyond the painted range** the first and last painted slices are carried
  outwards, and every structure fades with the distance travelled: it keeps
  half its probability after ``extent`` times its painted radius (in mm; a
  structure usually extends about as far along the slicing axis as across it),
  so a small cross-section near a structure's end stops soon and a large one
  carries further. Where nothing keeps a probability of one half, propagation
  stops: a slice too far away gets no label rather than a wrong one.

No training is involved: two or three seconds on one CPU core for a 181-slice brain.
The result serves as the instant preview when training starts, as ACTION's
prior on unlabeled slices, and as a segmentation of its own.

The volume is read a slice at a time (``read_slice``), so volumes larger than
memory work; what is kept is one class id (1 byte) and one confidence (2
bytes) per voxel of the slices the propagation reached.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from napari_action.data.carried_ends import has_thick_slices
from napari_action.data.flow_disagreement import PaintedShapes
from napari_action.data.intensity import exact_statistics
from napari_action.data.interpolation import check_slice_targets, painted_class_targets
from napari_action.data.piece_workers import side_by_side
from napari_action.data.propagation_sweeps import (
    PropagatedRun,
    PropagationSettings,
    SliceCache,
    SliceReader,
    appearance_blend,
    carry_between,
    carry_beyond,
    decide,
    onehot,
)

__all__ = [
    "LabelPropagation",
    "Piece",
    "PieceRun",
    "PropagatedRun",
    "PropagationSettings",
    "iter_pieces",
    "iter_propagation",
    "propagate_class_slices",
    "propagate_labels",
    "propagation_pieces",
    "slicing_spacing",
]


class LabelPropagation:
    """The propagated labels of one volume, slicing axis first, filled run by run.

    Attributes
    ----------
    covered : np.ndarray
        ``(S,)`` bool: the propagation reached the slice (painted slices included).
    distance : np.ndarray
        ``(S,)`` int64: slices to the nearest painted slice.
    slice_confidence : np.ndarray
        ``(S,)`` float32: mean confidence over the slice's structures and their
        borders (1 on painted slices, 0 where the propagation did not reach).
    """

    def __init__(self, num_slices: int, slice_shape: tuple[int, int], labeled: Sequence[int]):
        self.num_slices = int(num_slices)
        self.slice_shape = (int(slice_shape[0]), int(slice_shape[1]))
        index = np.arange(self.num_slices)
        self.distance = np.abs(index[:, None] - np.asarray(sorted(labeled))[None, :]).min(axis=1)
        self.covered = np.zeros(self.num_slices, bool)
        self.slice_confidence = np.zeros(self.num_slices, np.float32)
        self._classes: dict[int, np.ndarray] = {}
        self._confidence: dict[int, np.ndarray] = {}

    def store(self, run: PropagatedRun) -> None:
        """Keep a computed run (1 byte per voxel for the classes, 2 for the confidence)."""
        for offset in range(run.classes.shape[0]):
            z = run.start + offset
            classes, confidence = run.classes[offset], run.confidence[offset]
            self._classes[z] = classes.astype(np.uint8 if classes.max(initial=0) < 256 else np.int32)
            self._confidence[z] = confidence.astype(np.float16)
            self.covered[z] = True
            self.slice_confidence[z] = _slice_confidence(classes, confidence)

    def classes_at(self, z: int) -> np.ndarray:
        """``(H, W)`` int64 class ids of slice ``z``; background where the propagation did not reach."""
        found = self._classes.get(int(z))
        return np.zeros(self.slice_shape, np.int64) if found is None else found.astype(np.int64)

    def confidence_at(self, z: int) -> np.ndarray:
        """``(H, W)`` float32 confidence of slice ``z``; 0 where the propagation did not reach."""
        found = self._confidence.get(int(z))
        return np.zeros(self.slice_shape, np.float32) if found is None else found.astype(np.float32)

    def classes(self) -> np.ndarray:
        """``(S, H, W)`` int64 class ids of every slice (background where not reached)."""
        return np.stack([self.classes_at(z) for z in range(self.num_slices)])


def _slice_confidence(classes: np.ndarray, confidence: np.ndarray) -> float:
    """Mean confidence where it matters: the structures and their uncertain borders."""
    relevant = (classes > 0) | (confidence < 0.95)
    return float(confidence[relevant].mean()) if relevant.any() else float(confidence.mean())


# --------------------------------------------------------------------------- propagation


@dataclass(frozen=True)
class Piece:
    """One part of a propagation that can be computed on its own, and the painted slices it depends on.

    ``kind`` is ``"painted"`` (a painted slice itself), ``"between"`` (the slices between the
    painted slices ``source`` and ``other``) or ``"beyond"`` (outwards from the painted slice
    ``source`` in direction ``other``, -1 or +1). A piece computed for one set of painted slices
    is the same for another wherever :attr:`painted` holds the same labels: a stroke on one slice
    recomputes only the pieces next to it.
    """

    kind: str
    source: int
    other: int

    @property
    def painted(self) -> tuple[int, ...]:
        """The painted slices whose labels decide this piece."""
        return (self.source, self.other) if self.kind == "between" else (self.source,)


def propagation_pieces(painted: Sequence[int]) -> list[Piece]:
    """The pieces of a propagation from the (sorted) ``painted`` slices, in the order they are computed."""
    order = sorted(int(s) for s in painted)
    pieces = [Piece("painted", s, s) for s in order]
    # Beyond the painted range first: its runs come a few slices at a time, outwards from the painted slices,
    # so a preview shows more than the painted slices within a second; an interval between two painted
    # slices is one run, whole only when both of its sweeps are (on a 512 x 512 CT, half a minute).
    pieces += [Piece("beyond", order[0], -1), Piece("beyond", order[-1], 1)]
    return pieces + [Piece("between", a, b) for a, b in zip(order[:-1], order[1:], strict=True) if b - a > 1]


def iter_propagation(
    read_slice: SliceReader,
    num_slices: int,
    targets: dict[int, np.ndarray],
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    settings: PropagationSettings | None = None,
) -> Iterator[PropagatedRun]:
    """Propagate class-id maps given on a few slices through a volume, one run of slices at a time.

    Runs come in this order: the painted slices themselves, outwards from the
    first and last painted slice in short runs until every structure has faded,
    then each interval between two painted slices.

    Parameters
    ----------
    read_slice : callable
        ``read_slice(z)`` returns slice ``z`` of the normalised image, ``(H, W)``.
    num_slices : int
        Slices along the slicing axis.
    targets : dict of int to np.ndarray
        Slice index -> ``(H, W)`` class ids of a painted slice (negative
        values, the ignore index, count as background).
    num_classes : int
        Class ids run from 0 (background) to ``num_classes - 1``.
    spacing : sequence of 3 float
        Voxel size in mm: slice thickness first, then the two in-plane sizes.
    settings : PropagationSettings, optional

    Yields
    ------
    PropagatedRun

    Raises
    ------
    ValueError
        If no slice is given, a slice index is out of range, or the maps differ in shape.
    """
    for made in iter_pieces(read_slice, num_slices, targets, num_classes, spacing, settings):
        if made.run is not None:
            yield made.run


class PieceRun(NamedTuple):
    """A run of slices and the piece it belongs to; ``run`` None says the piece is whole (all its runs given)."""

    piece: Piece
    run: PropagatedRun | None


def iter_pieces(
    read_slice: SliceReader,
    num_slices: int,
    targets: dict[int, np.ndarray],
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    settings: PropagationSettings | None = None,
    known: Mapping[Piece, Iterable[PropagatedRun]] | None = None,
    workers: int = 1,
) -> Iterator[PieceRun]:
    """:func:`iter_propagation`, each run with its piece, then each piece's end (``run`` None); the runs of ``known``
    pieces are given back, not computed.

    Parameters
    ----------
    known : mapping of Piece to iterable of PropagatedRun, optional
        Pieces computed before for the same image, settings and labels on their painted slices
        (each iterated once).
    workers : int
        Threads that compute pieces side by side (the flows and warps release the GIL); each run is
        given as soon as it is made, so the runs of pieces computed at the same time interleave.
        1 computes the pieces one after the other. ``read_slice`` must be safe to call from several
        threads when ``workers`` > 1.
    """
    settings = settings or PropagationSettings()
    known = known or {}
    order, _ = check_slice_targets(targets, num_slices)
    onehots = {s: onehot(targets[s], num_classes) for s in order}

    def runs_of(piece: Piece, images: SliceCache) -> Iterator[PieceRun]:
        runs = known[piece] if piece in known else _compute(piece, images, onehots, num_slices, spacing, settings)
        yield from (PieceRun(piece, run) for run in runs)
        yield PieceRun(piece, None)

    pieces = propagation_pieces(order)
    if workers > 1:
        yield from side_by_side(pieces, lambda piece: runs_of(piece, SliceCache(read_slice)), workers)
        return
    images = SliceCache(read_slice)
    for piece in pieces:
        yield from runs_of(piece, images)


def _compute(
    piece: Piece,
    images: SliceCache,
    onehots: dict[int, np.ndarray],
    num_slices: int,
    spacing: Sequence[float],
    settings: PropagationSettings,
) -> Iterable[PropagatedRun]:
    """The runs of one piece."""
    first = onehots[piece.source]
    if piece.kind == "painted":
        return (PropagatedRun(piece.source, *decide(first[None])),)
    thickness, in_plane = float(spacing[0]), (float(spacing[1]), float(spacing[2]))
    if piece.kind == "between":
        last = onehots[piece.other]
        thick = has_thick_slices([thickness, *in_plane], 0)
        # Thick slices lie too far apart for one's image to be compared with the next (every slice shows
        # other anatomy): the appearance weight cost the demo's hearts and the real thick-slice tumours a
        # little and gained them nothing. Their own rule decides there: the flow check.
        blend = None if thick else appearance_blend(images, piece.source, piece.other, first, last, settings)
        shapes = None
        if thick and settings.flow_agreement > 0:
            shapes = PaintedShapes(first, last, in_plane, settings.flow_agreement)
        return (carry_between(images, piece.source, piece.other, first, last, settings, shapes, blend),)
    room = piece.source if piece.other < 0 else num_slices - 1 - piece.source
    limit = min(settings.max_beyond, room)
    return carry_beyond(images, piece.source, piece.other, limit, first, thickness, in_plane, settings)


def slicing_spacing(spacing: Sequence[float], axis: int) -> list[float]:
    """Voxel sizes per array axis reordered as the propagation takes them: thickness first, then in-plane."""
    return [float(spacing[axis])] + [float(spacing[a]) for a in range(3) if a != axis]


def propagate_class_slices(
    read_slice: SliceReader,
    num_slices: int,
    targets: dict[int, np.ndarray],
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    settings: PropagationSettings | None = None,
) -> LabelPropagation:
    """All of :func:`iter_propagation` at once, kept in a :class:`LabelPropagation`."""
    order, shape = check_slice_targets(targets, num_slices)
    result = LabelPropagation(num_slices, shape, order)
    for run in iter_propagation(read_slice, num_slices, targets, num_classes, spacing, settings):
        result.store(run)
    return result


def propagate_labels(
    image: np.ndarray,
    labels: np.ndarray,
    axis: int,
    spacing: Sequence[float] | None = None,
    labeled_slices: Sequence[int] = (),
    settings: PropagationSettings | None = None,
) -> np.ndarray:
    """Propagate the painted slices of a label volume through the image.

    Parameters
    ----------
    image : np.ndarray
        3D image (any intensity range: it is standardised here).
    labels : np.ndarray
        Label volume of the same shape, painted on a few slices along ``axis``
        (0 = not painted; any non-negative label values). Not modified.
    axis : int
        Slicing axis.
    spacing : sequence of 3 float, optional
        Voxel size in mm per array axis (default 1 mm).
    labeled_slices : sequence of int
        Extra slices that count as painted although they hold only background.
    settings : PropagationSettings, optional

    Returns
    -------
    np.ndarray
        New array, shape and dtype of ``labels``: painted slices unchanged,
        the rest propagated, 0 where the propagation did not reach.

    Raises
    ------
    ValueError
        If the arrays are not 3D of one shape, or nothing is painted.
    """
    image, labels = np.asarray(image), np.asarray(labels)
    if labels.ndim != 3 or image.shape != labels.shape:
        raise ValueError(f"Propagation needs a 3D image and labels of one shape, got {image.shape}, {labels.shape}.")
    axis = int(axis) % 3
    moved = np.moveaxis(labels, axis, 0)
    values, targets = painted_class_targets(moved, labeled_slices, "propagate")
    # The training's normalisation: the flow compares intensities between slices.
    image = np.moveaxis(image, axis, 0)
    volume = exact_statistics(image).apply(image)
    sizes = slicing_spacing((1.0, 1.0, 1.0) if spacing is None else spacing, axis)
    result = propagate_class_slices(volume.__getitem__, moved.shape[0], targets, values.size, sizes, settings)
    return np.moveaxis(values[result.classes()].astype(labels.dtype), 0, axis)
