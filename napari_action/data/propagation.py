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

No training is involved: a few seconds on one CPU core for a 181-slice brain.
The result serves as the instant preview when training starts, as ACTION's
prior on unlabeled slices, and as a segmentation of its own.

The volume is read a slice at a time (``read_slice``), so volumes larger than
memory work; what is kept is one class id (1 byte) and one confidence (2
bytes) per voxel of the slices the propagation reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.registration import optical_flow_ilk

from napari_action.data.carried_ends import THICK_SLICES, ThickSliceEnds, fade, painted_radius, thickness_ratio
from napari_action.data.flow_disagreement import PaintedShapes
from napari_action.data.intensity import exact_statistics
from napari_action.data.interpolation import check_slice_targets, painted_class_targets

__all__ = [
    "LabelPropagation",
    "Piece",
    "PropagatedRun",
    "PropagationSettings",
    "iter_pieces",
    "iter_propagation",
    "propagate_class_slices",
    "propagate_labels",
    "propagation_pieces",
    "slicing_spacing",
]

#: Reads one slice of the (normalised) image along the slicing axis: ``(H, W)`` float.
SliceReader = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class PropagationSettings:
    """How labels are carried from slice to slice.

    Attributes
    ----------
    window_radius : int
        Radius in pixels of the Lucas-Kanade window: the scale of the motion
        that is tracked (screened on Colin27: 4 beat 3 and 7).
    warps : int
        Warping iterations of the flow estimate (3 scored as 10 at a third of the time).
    extent : float
        Beyond the painted range, a structure keeps half its probability after
        ``extent`` times its painted radius (mm); 0 carries nothing beyond.
    max_beyond : int
        At most this many slices beyond the first and last painted slice.
    flow_smoothing : float
        Sigma in pixels of a Gaussian applied to each flow field before it carries the labels
        (0: none). Neighbouring pixels of one structure move together; smoothing removes the
        flow's pixel noise, which otherwise frays the borders a little more at every slice
        (screened on Colin27, TPTBox and the phantom: 2 beat 0, 1, 3, 4 and 6).
    end_contrast : float
        On thick slices (:data:`~napari_action.data.carried_ends.THICK_SLICES`), beyond the painted range: a
        structure ends on the first slice where the difference between its mean intensity and that of a 3 mm
        ring around it falls below this share of that difference on the painted slice, or where the
        structure that walled it on the painted slice (a ventricle's myocardium) covers less than this
        share of what it covered there (0: never). A structure ends between two thick slices, often at
        its widest (a heart's base, a tumour's edge), where fading with the distance carries it a slice
        or two too far. On thin slices it changes nothing: there a contrast test cost Colin27 0.04 Dice
        with one painted slice.
    flow_agreement : float
        On thick slices, between two painted slices that both hold a structure: on a slice where the
        masks carried from the two sides overlap by less than this Dice, the structure is drawn by
        shape interpolation instead (0: never). Screened on real thick-slice tumours and the phantom:
        0.3 changed only a tumour the flows lost (0.13 -> 0.63); 0.5 also replaced one they had right.
    """

    window_radius: int = 4
    warps: int = 3
    extent: float = 1.0
    max_beyond: int = 64
    flow_smoothing: float = 2.0
    end_contrast: float = 0.5
    flow_agreement: float = 0.3

    def __post_init__(self) -> None:
        if self.window_radius < 1 or self.warps < 1:
            raise ValueError(f"window_radius and warps must be >= 1, got {self.window_radius}, {self.warps}.")
        if self.extent < 0 or self.max_beyond < 0 or self.flow_smoothing < 0:
            raise ValueError(
                "extent, max_beyond and flow_smoothing must be >= 0, got "
                f"{self.extent}, {self.max_beyond}, {self.flow_smoothing}."
            )
        for name in ("end_contrast", "flow_agreement"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")


@dataclass(frozen=True)
class PropagatedRun:
    """Propagated class ids of consecutive slices, as they are computed.

    Attributes
    ----------
    start : int
        Index of the first slice.
    classes : np.ndarray
        ``(n, H, W)`` int64 class ids (0 = background).
    confidence : np.ndarray
        ``(n, H, W)`` float32 probability of the winning class.
    """

    start: int
    classes: np.ndarray
    confidence: np.ndarray

    @property
    def stop(self) -> int:
        return self.start + self.classes.shape[0]


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
    pieces += [Piece("between", a, b) for a, b in zip(order[:-1], order[1:], strict=True) if b - a > 1]
    return pieces + [Piece("beyond", order[0], -1), Piece("beyond", order[-1], 1)]


def iter_propagation(
    read_slice: SliceReader,
    num_slices: int,
    targets: dict[int, np.ndarray],
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    settings: PropagationSettings | None = None,
) -> Iterator[PropagatedRun]:
    """Propagate class-id maps given on a few slices through a volume, one run of slices at a time.

    Runs come in this order: the painted slices themselves, each interval
    between two painted slices, then outwards from the first and last painted
    slice in short runs until every structure has faded.

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
    for _, run in iter_pieces(read_slice, num_slices, targets, num_classes, spacing, settings):
        yield run


def iter_pieces(
    read_slice: SliceReader,
    num_slices: int,
    targets: dict[int, np.ndarray],
    num_classes: int,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    settings: PropagationSettings | None = None,
    known: Mapping[Piece, Iterable[PropagatedRun]] | None = None,
) -> Iterator[tuple[Piece, PropagatedRun]]:
    """:func:`iter_propagation`, each run with its piece; the runs of ``known`` pieces are given back, not computed.

    Parameters
    ----------
    known : mapping of Piece to iterable of PropagatedRun, optional
        Pieces computed before for the same image, settings and labels on their painted slices
        (each iterated once).
    """
    settings = settings or PropagationSettings()
    known = known or {}
    order, _ = check_slice_targets(targets, num_slices)
    onehots = {s: _onehot(targets[s], num_classes) for s in order}
    images = _SliceCache(read_slice)
    for piece in propagation_pieces(order):
        runs = known[piece] if piece in known else _compute(piece, images, onehots, num_slices, spacing, settings)
        for run in runs:
            yield piece, run


def _compute(
    piece: Piece,
    images: _SliceCache,
    onehots: dict[int, np.ndarray],
    num_slices: int,
    spacing: Sequence[float],
    settings: PropagationSettings,
) -> Iterable[PropagatedRun]:
    """The runs of one piece."""
    first = onehots[piece.source]
    if piece.kind == "painted":
        return (PropagatedRun(piece.source, *_decide(first[None])),)
    thickness, in_plane = float(spacing[0]), (float(spacing[1]), float(spacing[2]))
    if piece.kind == "between":
        shapes = None
        if settings.flow_agreement > 0 and thickness_ratio([thickness, *in_plane], 0) >= THICK_SLICES:
            shapes = PaintedShapes(first, onehots[piece.other], in_plane, settings.flow_agreement)
        return (_between(images, piece.source, piece.other, first, onehots[piece.other], settings, shapes),)
    room = piece.source if piece.other < 0 else num_slices - 1 - piece.source
    limit = min(settings.max_beyond, room)
    return _beyond(images, piece.source, piece.other, limit, first, thickness, in_plane, settings)


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


# --------------------------------------------------------------------------- the sweeps


def _between(
    images: _SliceCache,
    a: int,
    b: int,
    first: np.ndarray,
    last: np.ndarray,
    settings: PropagationSettings,
    shapes: PaintedShapes | None = None,
) -> PropagatedRun:
    """Both painted slices carried across the interval, blended by distance."""
    forward = [probs for _, probs in _carry(images, a, b, first, settings)]
    blended = np.empty((b - a - 1, *first.shape), np.float32)
    for z, backward in _carry(images, b, a, last, settings):
        t = (z - a) / (b - a)
        blended[z - a - 1] = (1.0 - t) * forward[z - a - 1] + t * backward
        if shapes is not None:
            shapes.where_flows_disagree(blended[z - a - 1], forward[z - a - 1], backward, t)
    return PropagatedRun(a + 1, *_decide(blended))


def _beyond(
    images: _SliceCache,
    source: int,
    step: int,
    limit: int,
    probs: np.ndarray,
    thickness: float,
    in_plane: tuple[float, float],
    settings: PropagationSettings,
    run_length: int = 8,
) -> Iterator[PropagatedRun]:
    """Carry one painted slice outwards; every structure fades with distance; stop where all have."""
    if limit <= 0 or settings.extent <= 0:
        return
    half_way = settings.extent * painted_radius(probs, in_plane)  # mm per class
    stop = source + step * (limit + 1)
    pending: list[tuple[int, np.ndarray]] = []
    ends = None
    if settings.end_contrast > 0 and thickness_ratio([thickness, *in_plane], 0) >= THICK_SLICES:
        ends = ThickSliceEnds(images[source], probs, in_plane, settings.end_contrast)
    for z, carried in _carry(images, source, stop, probs, settings):
        # In place: an ended structure is not carried further.
        ended_here = ends is not None and ends.apply(images[z], carried)
        faded = fade(carried, abs(z - source) * thickness, half_way)
        if not (faded[1:] >= 0.5).any():
            if ended_here:
                # The anatomy says the structures end here: a known background slice, which teaches the
                # network the hard negative beyond the end (the atrium above a heart's base).
                pending.append((z, faded))
            break
        pending.append((z, faded))
        if len(pending) == run_length:
            yield _run_of(pending)
            pending = []
    if pending:
        yield _run_of(pending)


def _run_of(pending: list[tuple[int, np.ndarray]]) -> PropagatedRun:
    """A run of consecutive slices from ``(z, probs)`` pairs in either direction."""
    pending = sorted(pending, key=lambda item: item[0])
    return PropagatedRun(pending[0][0], *_decide(np.stack([probs for _, probs in pending])))


def _carry(
    images: _SliceCache, source: int, stop: int, probs: np.ndarray, settings: PropagationSettings
) -> Iterator[tuple[int, np.ndarray]]:
    """Warp ``probs`` from slice ``source`` towards ``stop`` (excluded), one slice at a time.

    Each slice's probabilities are pulled from its neighbour along the flow
    between the two images, and become the source for the next: small motions
    composed, and a little smoothing at every step that rounds off the borders.
    """
    step = 1 if stop > source else -1
    grid = None
    for z in range(source + step, stop, step):
        flow = optical_flow_ilk(images[z], images[z - step], radius=settings.window_radius, num_warp=settings.warps)
        if settings.flow_smoothing > 0:
            flow = np.stack([ndimage.gaussian_filter(part, settings.flow_smoothing) for part in flow])
        if grid is None:
            grid = np.indices(flow.shape[1:], dtype=np.float32)
        coordinates = grid + flow
        probs = np.stack([ndimage.map_coordinates(p, coordinates, order=1, mode="nearest") for p in probs])
        yield z, probs


def _decide(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and the winning probability of ``(n, C, H, W)`` probabilities."""
    return probs.argmax(axis=1).astype(np.int64), probs.max(axis=1).astype(np.float32)


def _onehot(target: np.ndarray, num_classes: int) -> np.ndarray:
    ids = np.where(np.asarray(target) < 0, 0, target)
    if ids.max(initial=0) >= num_classes:
        raise ValueError(f"Class id {int(ids.max())} is out of range for {num_classes} classes.")
    return (ids[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)


class _SliceCache:
    """The last few slices read, as float32 (each is read by two neighbouring flows)."""

    def __init__(self, read_slice: SliceReader, size: int = 4):
        self._read = read_slice
        self._size = size
        self._held: dict[int, np.ndarray] = {}

    def __getitem__(self, z: int) -> np.ndarray:
        if z not in self._held:
            if len(self._held) >= self._size:
                self._held.pop(next(iter(self._held)))
            self._held[z] = np.asarray(self._read(int(z)), np.float32)
        return self._held[z]
