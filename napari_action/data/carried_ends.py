"""Where a structure carried beyond the painted range ends (:mod:`~napari_action.data.propagation`).

It fades with the distance over its painted radius, as a structure that narrows to its end would;
on thick slices it also ends on the first slice where it no longer stands out from its surroundings or
where the structure that walled it has ended, since such structures end between two slices, often at
their widest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = [
    "RING_MM",
    "THICK_SLICES",
    "WALLED",
    "ThickSliceEnds",
    "fade",
    "has_thick_slices",
    "painted_radius",
    "thickness_ratio",
]

#: Slices at least this many times thicker than their pixels are thick: a structure ends between two of
#: them, often abruptly (the phantom's hearts: 8 mm over 1.5 mm, 5.3 times; pyradiomics' tumour scans:
#: 3.2-8.8 times; Colin27 and the TPTBox crops are isotropic).
THICK_SLICES = 3.0
#: Width of the ring a structure's contrast is measured against (``PropagationSettings.end_contrast``).
RING_MM = 3.0
#: A structure whose ring another one covers at least this much on the painted slice is walled by it.
WALLED = 0.5


def thickness_ratio(spacing: Sequence[float], axis: int) -> float:
    """How many times thicker a volume's slices along ``axis`` are than its finest in-plane pixel side."""
    in_plane = [float(size) for index, size in enumerate(spacing) if index != axis]
    return float(spacing[axis]) / min(in_plane)


def has_thick_slices(spacing: Sequence[float], axis: int) -> bool:
    """Whether slices along ``axis`` are at least :data:`THICK_SLICES` times thicker than their pixels."""
    return thickness_ratio(spacing, axis) >= THICK_SLICES


def fade(probs: np.ndarray, distance_mm: float, half_way: np.ndarray) -> np.ndarray:
    """Scale every structure by ``2 ** -(d / half_way) ** 2``; background takes what they lose."""
    with np.errstate(divide="ignore"):
        keep = np.where(half_way > 0, np.exp2(-((distance_mm / np.maximum(half_way, 1e-9)) ** 2)), 0.0)
    faded = probs * keep[:, None, None].astype(np.float32)
    faded[0] = 1.0 - faded[1:].sum(axis=0)
    return faded


def painted_radius(probs: np.ndarray, in_plane: tuple[float, float]) -> np.ndarray:
    """Per class, the radius in mm of a disc with its painted area (0 for background and absent classes)."""
    area = probs.reshape(probs.shape[0], -1).sum(axis=1) * in_plane[0] * in_plane[1]
    radius = np.sqrt(area / np.pi)
    radius[0] = 0.0
    return radius


class ThickSliceEnds:
    """Ends each carried structure on the first slice where it is no longer the structure that was painted.

    Two signs, each compared with the painted slice and ending the structure below ``share`` of it:

    - its contrast: how much its mean intensity stands out from a ring outside it (the myocardium above a
      heart's base holds the atrium's bright blood; past a tumour's edge its region looks like the tissue
      around it). What it encloses is left out of the ring: the blood inside a myocardium would keep a
      carried wall "dark" against it long after the muscle has ended;
    - its wall: for a structure that another one enclosed on the painted slice (at least :data:`WALLED` of
      its ring), how much of its ring that wall still covers. A cavity ends where its wall does: the left
      ventricle's blood goes on into the atrium above the base, as bright as before, but the myocardium
      that walled it has ended (the convention of cardiac contours: the basal slice is the last one where
      the muscle surrounds the cavity).
    """

    def __init__(self, painted_image: np.ndarray, probs: np.ndarray, in_plane: tuple[float, float], share: float):
        self._ring_pixels = max(1, round(RING_MM / min(in_plane)))
        self._share = share
        classes = range(1, len(probs))
        # None: nothing to compare (absent, no ring) or ended; never compared again.
        self._contrasts = [None] + [self._contrast(painted_image, probs[c] >= 0.5) for c in classes]
        self._walls = [None] + [self._wall(probs, c) for c in classes]

    def apply(self, image: np.ndarray, carried: np.ndarray) -> bool:
        """End, in ``carried`` (C, H, W) itself, the structures that lost their contrast or wall on ``image``.

        Returns whether a structure still visible on this slice (at least one pixel of one half) ended here.
        """
        seen_ending = False
        for c, painted in enumerate(self._contrasts):
            if painted is not None:
                region = carried[c] >= 0.5
                now = self._contrast(image, region)
                if now is None or now / painted < self._share:
                    seen_ending |= self._end(carried, c, region)
        # After the contrasts: a wall that ended on this slice ends what it walled on this slice too.
        for c, wall in enumerate(self._walls):
            if wall is not None and self._contrasts[c] is not None:
                by, painted_cover = wall
                region = carried[c] >= 0.5
                ring = self._ring(region)
                if not ring.any() or float((carried[by][ring] >= 0.5).mean()) < self._share * painted_cover:
                    seen_ending |= self._end(carried, c, region)
        return seen_ending

    def _end(self, carried: np.ndarray, c: int, region: np.ndarray) -> bool:
        carried[0] += carried[c]  # background takes what the structure held
        carried[c] = 0.0
        self._contrasts[c] = None
        return bool(region.any())

    def _ring(self, region: np.ndarray) -> np.ndarray:
        return ndimage.binary_dilation(region, iterations=self._ring_pixels) & ~region

    def _outer_ring(self, region: np.ndarray) -> np.ndarray:
        """The part of :meth:`_ring` outside what ``region`` encloses."""
        return self._ring(region) & ~ndimage.binary_fill_holes(region)

    def _contrast(self, image: np.ndarray, region: np.ndarray) -> float | None:
        """Mean intensity in ``region`` minus that of the ring outside it; None when either is empty or they match."""
        if not region.any():
            return None
        ring = self._outer_ring(region)
        if not ring.any():
            return None
        contrast = float(image[region].mean() - image[ring].mean())
        return contrast if abs(contrast) > 1e-6 else None

    def _wall(self, probs: np.ndarray, c: int) -> tuple[int, float] | None:
        """The structure that covers most of ``c``'s ring on the painted slice and that share, if walled."""
        ring = self._ring(probs[c] >= 0.5)
        if not ring.any():
            return None
        cover = [0.0 if d in (0, c) else float((probs[d][ring] >= 0.5).mean()) for d in range(len(probs))]
        by = int(np.argmax(cover))
        return (by, cover[by]) if cover[by] >= WALLED else None
