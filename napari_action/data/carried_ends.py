"""Where a structure carried beyond the painted range ends (:mod:`~napari_action.data.propagation`).

It fades with the distance over its painted radius, as a structure that narrows to its end would;
on thick slices it also ends on the first slice where it no longer stands out from its surroundings,
since such structures end between two slices, often at their widest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["RING_MM", "THICK_SLICES", "ContrastEnds", "fade", "painted_radius", "thickness_ratio"]

#: Slices at least this many times thicker than their pixels are thick: a structure ends between two of
#: them, often abruptly (the phantom's hearts: 8 mm over 1.5 mm, 5.3 times; pyradiomics' tumour scans:
#: 3.2-8.8 times; Colin27 and the TPTBox crops are isotropic).
THICK_SLICES = 3.0
#: Width of the ring a structure's contrast is measured against (``PropagationSettings.end_contrast``).
RING_MM = 3.0


def thickness_ratio(spacing: Sequence[float], axis: int) -> float:
    """How many times thicker a volume's slices along ``axis`` are than its finest in-plane pixel side."""
    in_plane = [float(size) for index, size in enumerate(spacing) if index != axis]
    return float(spacing[axis]) / min(in_plane)


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


class ContrastEnds:
    """Ends each carried structure on the first slice where it stands out from a ring around it by less
    than ``share`` of how it stood out on the painted slice (or the other way round): then it is no
    longer the structure that was painted (the myocardium above a heart's base holds the atrium's bright
    blood; past a tumour's edge its region looks like the tissue around it)."""

    def __init__(self, painted_image: np.ndarray, probs: np.ndarray, in_plane: tuple[float, float], share: float):
        self._ring_pixels = max(1, round(RING_MM / min(in_plane)))
        self._share = share
        # None: nothing to compare (absent, no ring) or ended; never compared again.
        self._painted = [None] + [self._contrast(painted_image, probs[c] >= 0.5) for c in range(1, len(probs))]

    def apply(self, image: np.ndarray, carried: np.ndarray) -> None:
        """End, in ``carried`` (C, H, W) itself, the structures that lost their contrast on ``image``."""
        for c, painted in enumerate(self._painted):
            if painted is None:
                continue
            now = self._contrast(image, carried[c] >= 0.5)
            if now is None or now / painted < self._share:
                carried[0] += carried[c]  # background takes what the structure held
                carried[c] = 0.0
                self._painted[c] = None

    def _contrast(self, image: np.ndarray, region: np.ndarray) -> float | None:
        """Mean intensity in ``region`` minus that of a ring around it; None when either is empty or they match."""
        if not region.any():
            return None
        ring = ndimage.binary_dilation(region, iterations=self._ring_pixels) & ~region
        if not ring.any():
            return None
        contrast = float(image[region].mean() - image[ring].mean())
        return contrast if abs(contrast) > 1e-6 else None
