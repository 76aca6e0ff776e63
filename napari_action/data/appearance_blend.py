"""Between two painted slices, the side whose carried image still matches counts more.

Used by :mod:`~napari_action.data.propagation_sweeps`. Each painted slice's image is carried with its
labels; where it lands it is compared with the slice that is there. Blended by distance alone, a
structure present on one painted slice and absent on the other ends half way between them; where the
image changes earlier or later (a vertebral body between a lateral slice through its processes and the
midline), the side whose carried image no longer matches gives way, so the structure ends where the
image changes.

The image can only say so for a structure it shows: one that looks like its surroundings (the pallidum
beside the internal capsule in a T1 brain) would be carried on by whichever side happens to match
better. So the appearance counts only where the two sides disagree about structures that stand out
from a ring around them on the painted slices; elsewhere the blend stays by distance.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["AppearanceBlend", "class_contrast"]

#: Width in pixels of the ring a structure's contrast is measured against.
RING_PIXELS = 3
#: Fewer painted pixels than this say nothing about a structure's contrast.
MIN_PIXELS = 5


def class_contrast(image: np.ndarray, mask: np.ndarray) -> float | None:
    """How far a structure's mean intensity lies from that of a ring around it (None if too small to tell)."""
    if np.count_nonzero(mask) < MIN_PIXELS:
        return None
    ring = ndimage.binary_dilation(mask, iterations=RING_PIXELS) & ~mask
    if not ring.any():
        return None
    return abs(float(image[mask].mean() - image[ring].mean()))


class AppearanceBlend:
    """Per-pixel weights of the two sides of an interval between painted slices ``a`` and ``b``.

    Parameters
    ----------
    painted_images : tuple of 2 np.ndarray
        The normalised images of slices ``a`` and ``b``, ``(H, W)``.
    painted_probs : tuple of 2 np.ndarray
        Their one-hot labels, ``(C, H, W)``.
    tolerance : float
        A side whose carried image matches worse by ``m`` (local mean squared difference, in the
        normalised image's units) is weighted down by ``exp(-m / tolerance)``.
    window : float
        Sigma in pixels of the Gaussian window of that squared difference.
    contrast : float
        A structure counts fully as visible from a contrast of 1.5 times this, not at all below half of
        it (the contrast in the normalised image's units, the larger on the two painted slices).
    """

    def __init__(
        self,
        painted_images: tuple[np.ndarray, np.ndarray],
        painted_probs: tuple[np.ndarray, np.ndarray],
        tolerance: float,
        window: float,
        contrast: float,
    ):
        self._tolerance = tolerance
        self._window = window
        self.visibility = _visibility(painted_images, painted_probs, contrast)

    def first_weight(
        self,
        image: np.ndarray,
        carried_images: tuple[np.ndarray, np.ndarray],
        carried_probs: tuple[np.ndarray, np.ndarray],
        t: float,
    ) -> np.ndarray:
        """``(H, W)`` weight of the first side on a slice a share ``t`` of the way (the second gets 1 minus it)."""
        # How much of the two sides' disagreement is about structures the image shows.
        dispute = np.abs(carried_probs[0][1:] - carried_probs[1][1:])
        total = dispute.sum(axis=0)
        shown = (dispute * self.visibility[1:, None, None]).sum(axis=0)
        visible = np.divide(shown, total, out=np.zeros_like(total), where=total > 1e-3)
        if not visible.any():  # the distance weight everywhere: no need to compare the images
            return np.full_like(total, 1.0 - t)
        return visible * self._by_image(image, carried_images, t) + (1.0 - visible) * (1.0 - t)

    def _by_image(self, image: np.ndarray, carried: tuple[np.ndarray, np.ndarray], t: float) -> np.ndarray:
        mismatch = [ndimage.gaussian_filter((side - image) ** 2, self._window) for side in carried]
        # Only the difference between the two sides counts: subtracting the smaller keeps exp() in range.
        common = np.minimum(*mismatch)
        first = (1.0 - t) * np.exp(-(mismatch[0] - common) / self._tolerance)
        last = t * np.exp(-(mismatch[1] - common) / self._tolerance)
        return first / (first + last)


def _visibility(
    images: tuple[np.ndarray, np.ndarray], probs: tuple[np.ndarray, np.ndarray], contrast: float
) -> np.ndarray:
    """``(C,)`` in [0, 1]: how clearly each structure stands out on the painted slices (0 for background)."""
    visibility = np.zeros(len(probs[0]), np.float32)
    for c in range(1, len(visibility)):
        measured = [class_contrast(image, p[c] > 0.5) for image, p in zip(images, probs, strict=True)]
        measured = [value for value in measured if value is not None]
        if measured and contrast > 0:
            visibility[c] = np.clip((max(measured) - 0.5 * contrast) / contrast, 0.0, 1.0)
        elif measured:
            visibility[c] = 1.0
    return visibility
