"""How noisy each training volume is, and how much noise the painted crops should be shown with.

The painted slices come from one or two scans; the volumes trained on alongside them, and
predicted afterwards, may come from other scanners, with more noise. A network that only ever saw
the painted scan's noise fails on the noisier ones (on 12 simulated scans of one brain, the
unpainted scans' Dice fell with their noise level). The remedy is the usual one, Gaussian noise in
the training views, but it is not free where every volume is alike (the demo's hearts lost Dice
with it), so its amount follows the data: enough to bring the painted scans up to the noisiest
volume in training, and none when they are about as noisy as the rest.

The noise of a slice is estimated as in Immerkær (1996), "Fast noise variance estimation": the
image convolved with a mask that cancels locally linear intensity leaves mostly noise; we take the
median absolute response (robust to edges) rather than the mean. In z-score units (the volumes are
normalised), over a few slices of the volume's middle.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_action.data.normalized_volume import NormalizedVolume

# Cancels constant and linear intensity; its response to white noise of sd s has sd 6 s.
_LAPLACIAN_DIFFERENCE = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
_MASK_NORM = 6.0
_MAD_TO_SD = 1.4826  # median absolute deviation of a Gaussian, in standard deviations
#: Slices sampled per volume, evenly over its middle 60 % (where the anatomy is).
SAMPLED_SLICES = 9
#: Noise augmentation starts when some training volume is this many times noisier than every painted
#: one, and by at least this much (z-score units).
NOISIER_BY = 1.5
NOISIER_BY_AT_LEAST = 0.05


def noise_level(volume: NormalizedVolume, axis: int) -> float:
    """Standard deviation of the noise of ``volume`` (z-score units), the median over sampled slices."""
    count = volume.shape[axis]
    picks = np.unique(np.linspace(0.2 * (count - 1), 0.8 * (count - 1), SAMPLED_SLICES).round().astype(int))
    levels = [_slice_noise(volume.region(axis, int(index), slice(None), slice(None))) for index in picks]
    return float(np.median(levels))


def _slice_noise(image: np.ndarray) -> float:
    if min(image.shape) < 3:
        return 0.0
    response = ndimage.convolve(np.asarray(image, dtype=np.float32), _LAPLACIAN_DIFFERENCE)[1:-1, 1:-1]
    return float(np.median(np.abs(response)) * _MAD_TO_SD / _MASK_NORM)


def noise_to_add(levels: Sequence[float], painted: Sequence[int]) -> float:
    """The largest noise (sd, z-score units) to add to the painted crops: 0 unless some volume is noisier.

    ``levels`` holds every training volume's :func:`noise_level`, ``painted`` the indices of the
    volumes with painted slices. Noise adds in variance, so the painted scan with the least noise
    reaches the noisiest volume with ``sqrt(noisiest² - least²)``.
    """
    if not painted or not levels:
        return 0.0
    least = min(levels[index] for index in painted)
    noisiest = max(levels)
    if noisiest < max(NOISIER_BY * least, least + NOISIER_BY_AT_LEAST):
        return 0.0
    return float(np.sqrt(noisiest**2 - least**2))
