"""The sweeps of the propagation (:mod:`~napari_action.data.propagation`): painted slices carried slice by slice.

Between two painted slices both are carried towards each other and blended by distance; beyond the
painted range one is carried outwards until every structure has faded or ended
(:mod:`~napari_action.data.carried_ends`). Each step pulls the class probabilities along the 2D optical
flow between two neighbouring slices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_action.data.appearance_blend import AppearanceBlend
from napari_action.data.carried_ends import ThickSliceEnds, fade, has_thick_slices, painted_radius
from napari_action.data.flow_disagreement import PaintedShapes
from napari_action.data.optical_flow import lucas_kanade_flow

__all__ = [
    "PropagatedRun",
    "PropagationSettings",
    "SliceCache",
    "SliceReader",
    "appearance_blend",
    "carry_between",
    "carry_beyond",
    "decide",
    "onehot",
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
        ring outside it (and outside what it encloses) falls below this share of that difference on the
        painted slice, or where the structure that walled it on the painted slice (a ventricle's
        myocardium) covers less than this share of what it covered there (0: never). A structure ends
        between two thick slices, often at its widest (a heart's base, a tumour's edge), where fading with
        the distance carries it a slice or two too far. On thin slices it changes nothing: there a
        contrast test cost Colin27 0.04 Dice with one painted slice.
    flow_agreement : float
        On thick slices, between two painted slices that both hold a structure: on a slice where the
        masks carried from the two sides overlap by less than this Dice, the structure is drawn by
        shape interpolation instead (0: never). Screened on real thick-slice tumours and the phantom:
        0.3 changed only a tumour the flows lost (0.13 -> 0.63); 0.5 also replaced one they had right.
    appearance_tolerance : float
        Between two painted slices, each side's carried labels are weighted by how well the painted image
        they were carried with still matches the slice they land on: by ``exp(-m / appearance_tolerance)``
        on top of the distance weight, ``m`` being the local mean squared difference (in the normalised
        image's units) between the carried and the actual image. Where a structure appears or ends
        abruptly between two painted slices (a vertebral body beside its lateral processes), the side whose
        image no longer matches gives way, and the structure ends where the image changes instead of half
        way (0: distance alone). Only where the two sides disagree about structures the image shows
        (``appearance_contrast``); elsewhere the blend stays by distance, and so it does on thick slices
        (:data:`~napari_action.data.carried_ends.THICK_SLICES`), where each slice shows other anatomy.
    appearance_window : float
        Sigma in pixels of the Gaussian window over which that squared difference is averaged.
    appearance_contrast : float
        A structure counts as shown by the image when its mean intensity on a painted slice differs from
        that of a 3-pixel ring around it by this much (normalised units): fully from 1.5 times, not at
        all below half. A structure that looks like its surroundings (the pallidum in a T1 brain, 0.04)
        is carried on by whichever side happens to match better; vertebrae in CT stand out by 0.6-1.1.
    """

    window_radius: int = 4
    warps: int = 3
    extent: float = 1.0
    max_beyond: int = 64
    flow_smoothing: float = 2.0
    end_contrast: float = 0.5
    flow_agreement: float = 0.3
    appearance_tolerance: float = 0.1
    appearance_window: float = 3.0
    appearance_contrast: float = 0.1

    def __post_init__(self) -> None:
        if self.window_radius < 1 or self.warps < 1:
            raise ValueError(f"window_radius and warps must be >= 1, got {self.window_radius}, {self.warps}.")
        for name in (
            "extent",
            "max_beyond",
            "flow_smoothing",
            "appearance_tolerance",
            "appearance_window",
            "appearance_contrast",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
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


def carry_between(
    images: SliceCache,
    a: int,
    b: int,
    first: np.ndarray,
    last: np.ndarray,
    settings: PropagationSettings,
    shapes: PaintedShapes | None = None,
    blend: AppearanceBlend | None = None,
) -> PropagatedRun:
    """Both painted slices carried across the interval, blended by distance (and by ``blend``, when given)."""
    # The painted image travels with its labels (one more channel), so that where it lands it can be
    # compared with the slice that is there.
    forward = [carried for _, carried in _carry(images, a, b, _with_image(first, images[a], blend), settings)]
    blended = np.empty((b - a - 1, *first.shape), np.float32)
    for z, backward in _carry(images, b, a, _with_image(last, images[b], blend), settings):
        t = (z - a) / (b - a)
        ahead = forward[z - a - 1]
        weight = 1.0 - t
        if blend is not None:
            ahead, backward, carried_images = ahead[:-1], backward[:-1], (ahead[-1], backward[-1])
            weight = blend.first_weight(images[z], carried_images, (ahead, backward), t)
        blended[z - a - 1] = weight * ahead + (1.0 - weight) * backward
        if shapes is not None:
            shapes.where_flows_disagree(blended[z - a - 1], ahead, backward, t)
    return PropagatedRun(a + 1, *decide(blended))


def appearance_blend(
    images: SliceCache, a: int, b: int, first: np.ndarray, last: np.ndarray, settings: PropagationSettings
) -> AppearanceBlend | None:
    """The appearance weight of the interval between painted slices ``a`` and ``b`` (None when switched off)."""
    if settings.appearance_tolerance <= 0:
        return None
    return AppearanceBlend(
        (images[a], images[b]),
        (first, last),
        settings.appearance_tolerance,
        settings.appearance_window,
        settings.appearance_contrast,
    )


def _with_image(probs: np.ndarray, image: np.ndarray, blend: AppearanceBlend | None) -> np.ndarray:
    return probs if blend is None else np.concatenate([probs, np.asarray(image, np.float32)[None]])


def carry_beyond(
    images: SliceCache,
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
    if settings.end_contrast > 0 and has_thick_slices([thickness, *in_plane], 0):
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
    return PropagatedRun(pending[0][0], *decide(np.stack([probs for _, probs in pending])))


def _carry(
    images: SliceCache, source: int, stop: int, probs: np.ndarray, settings: PropagationSettings
) -> Iterator[tuple[int, np.ndarray]]:
    """Warp ``probs`` from slice ``source`` towards ``stop`` (excluded), one slice at a time.

    Each slice's probabilities are pulled from its neighbour along the flow
    between the two images, and become the source for the next: small motions
    composed, and a little smoothing at every step that rounds off the borders.
    """
    step = 1 if stop > source else -1
    grid = None
    for z in range(source + step, stop, step):
        flow = lucas_kanade_flow(images[z], images[z - step], radius=settings.window_radius, warps=settings.warps)
        if settings.flow_smoothing > 0:
            flow = np.stack([ndimage.gaussian_filter(part, settings.flow_smoothing) for part in flow])
        if grid is None:
            grid = np.indices(flow.shape[1:], dtype=np.float32)
        coordinates = grid + flow
        probs = np.stack([ndimage.map_coordinates(p, coordinates, order=1, mode="nearest") for p in probs])
        yield z, probs


def decide(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class ids and the winning probability of ``(n, C, H, W)`` probabilities."""
    return probs.argmax(axis=1).astype(np.int64), probs.max(axis=1).astype(np.float32)


def onehot(target: np.ndarray, num_classes: int) -> np.ndarray:
    ids = np.where(np.asarray(target) < 0, 0, target)
    if ids.max(initial=0) >= num_classes:
        raise ValueError(f"Class id {int(ids.max())} is out of range for {num_classes} classes.")
    return (ids[None] == np.arange(num_classes)[:, None, None]).astype(np.float32)


class SliceCache:
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
