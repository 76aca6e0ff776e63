"""The intensity normalisation of training and prediction, as four numbers that can be applied slice by slice.

Training normalises each volume by clipping it to its 0.5th and 99.5th intensity percentiles
and z-scoring the result (:func:`~napari_action.data.intensity.normalize_volume`).
:class:`IntensityStatistics` holds those four numbers, so that a volume too large for memory
can be normalised a run of slices (or a crop) at a time, with the same arithmetic: every
operation is elementwise, so normalising a piece gives the same bits as normalising the whole
volume and then taking the piece.

Where the numbers come from
---------------------------
:func:`exact_statistics` takes them from every voxel of an array in memory, with exactly the
operations of :func:`~napari_action.data.intensity.normalize_volume`.
:func:`intensity_statistics` takes them from a strided sample of whole slices of a
:class:`~napari_action.io.volume_source.VolumeSource`, at most :data:`SAMPLE_VOXELS` voxels
(every slice of a volume up to 256³, every 10th of a 512×512×600 one). The statistics are exact
for volumes up to that size and for larger ones they are those of a systematic sample of a few
dozen slices: percentiles and moments of anatomy that changes smoothly from slice to slice,
within a few hundredths of a standard deviation of the exact values in our tests.

This module only needs numpy, so the data and inference layers can both import it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only
    from napari_action.io.volume_source import VolumeSource

__all__ = [
    "CLIP_PERCENTILES",
    "SAMPLE_VOXELS",
    "IntensityStatistics",
    "check_volume_values",
    "clip_and_measure",
    "exact_statistics",
    "intensity_statistics",
    "normalize_volume",
    "pad_value",
    "sample_slices",
]

#: Most voxels read to estimate the normalisation (64 MiB as float32).
SAMPLE_VOXELS = 16 * 2**20
#: Percentiles the intensities are clipped to, as in training.
CLIP_PERCENTILES = (0.5, 99.5)
# Slices read at once while gathering a sample of consecutive slices.
_READ_RUN = 32


@dataclasses.dataclass(frozen=True)
class IntensityStatistics:
    """The four numbers of the training normalisation: clip to ``[low, high]``, subtract ``mean``, divide by ``std``.

    ``exact`` says whether they come from every voxel.
    """

    low: float
    high: float
    mean: float
    std: float
    exact: bool = True

    def apply(self, block: np.ndarray) -> np.ndarray:
        """Normalise ``block`` exactly as :func:`~napari_action.data.intensity.normalize_volume` does (float32)."""
        out = np.asarray(block).astype(np.float32, copy=True)
        np.clip(out, self.low, self.high, out=out)
        out -= np.float32(self.mean)
        out /= np.float32(self.std)
        return out

    @property
    def pad(self) -> float:
        """The minimum of the normalised volume, used to pad slices (the clipped minimum, ``low``)."""
        return float(self.apply(np.array([self.low], np.float32))[0])


def clip_and_measure(values: np.ndarray, clip: tuple[float, float] | None) -> IntensityStatistics:
    """Clip float32 ``values`` in place to their percentiles and measure them: the core of the normalisation.

    Parameters
    ----------
    values : np.ndarray
        Float32 intensities; clipped in place.
    clip : (float, float) or None
        Lower and upper percentiles (already checked); ``None`` skips clipping (then ``low`` and
        ``high`` are the minimum and maximum, which clip nothing).

    Returns
    -------
    IntensityStatistics
        Percentile bounds, mean and standard deviation (with a relative floor) of the clipped values.
    """
    if clip is None:
        low, high = np.min(values), np.max(values)
    else:
        low, high = np.percentile(values, clip)
        np.clip(values, low, high, out=values)
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    # Relative floor: a constant volume has std ~ rounding noise of its mean,
    # dividing by that noise would turn a flat image into random values.
    std = max(std, 1e-6 * max(abs(mean), 1.0))
    return IntensityStatistics(float(low), float(high), mean, std)


def exact_statistics(volume: np.ndarray, clip: tuple[float, float] | None = CLIP_PERCENTILES) -> IntensityStatistics:
    """The normalisation of a volume in memory, from every voxel (a float32 copy lives while it runs).

    Applied to ``volume`` (or to any piece of it) it gives the same bits as
    :func:`~napari_action.data.intensity.normalize_volume`, which is built on the same
    :func:`clip_and_measure`.
    """
    return clip_and_measure(np.asarray(volume).astype(np.float32, copy=True), clip)


def sample_slices(n_slices: int, plane_voxels: int, budget: int = SAMPLE_VOXELS) -> np.ndarray:
    """Indices of evenly spaced slices holding at most ``budget`` voxels (every slice if they fit)."""
    stride = max(1, math.ceil(n_slices * plane_voxels / max(budget, 1)))
    return np.arange(stride // 2, n_slices, stride) if stride > 1 else np.arange(n_slices)


def intensity_statistics(
    source: VolumeSource,
    axis: int,
    budget: int = SAMPLE_VOXELS,
    clip: tuple[float, float] = CLIP_PERCENTILES,
) -> IntensityStatistics:
    """The normalisation of ``source``, from every slice if they hold at most ``budget`` voxels, else a sample.

    Parameters
    ----------
    source : VolumeSource
        The volume.
    axis : int
        The slicing axis the sample is taken along (whole slices).
    budget : int
        Most voxels read into memory (as float32).
    clip : (float, float)
        Lower and upper percentiles.

    Returns
    -------
    IntensityStatistics
        Percentile bounds, mean and standard deviation of the clipped sample.
    """
    n_slices = source.shape[axis]
    plane = int(np.prod(source.shape)) // n_slices
    indices = sample_slices(n_slices, plane, budget)
    measured = clip_and_measure(_read_sample(source, axis, indices), clip)
    return dataclasses.replace(measured, exact=indices.size == n_slices)


def _read_sample(source: VolumeSource, axis: int, indices: np.ndarray) -> np.ndarray:
    if indices.size == source.shape[axis]:  # every slice: read in runs
        runs = [(start, min(start + _READ_RUN, indices.size)) for start in range(0, indices.size, _READ_RUN)]
    else:
        runs = [(int(i), int(i) + 1) for i in indices]
    return np.concatenate([source.read(axis, start, stop).astype(np.float32).ravel() for start, stop in runs])


# ----------------------------------------------------------------- whole volumes in memory
def normalize_volume(volume: np.ndarray, clip: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """Clip a volume to intensity percentiles, then z-score it.

    Parameters
    ----------
    volume : np.ndarray
        Image intensities, any real dtype. Not modified.
    clip : (float, float) or None
        Lower and upper percentiles; ``None`` skips clipping.

    Returns
    -------
    np.ndarray
        New float32 array, zero mean and unit standard deviation (a constant
        volume becomes all zeros).

    Raises
    ------
    ValueError
        If the volume holds NaN or infinite values, is empty, or ``clip`` is
        not an increasing pair within [0, 100].
    """
    volume = check_volume_values(volume)
    out = volume.astype(np.float32, copy=True)
    # The same clipping and moments as exact_statistics, so that a volume normalised
    # piece by piece (NormalizedVolume) gives these very bits.
    statistics = clip_and_measure(out, None if clip is None else _check_clip(clip))
    out -= np.float32(statistics.mean)
    out /= np.float32(statistics.std)
    return out


def check_volume_values(volume: np.ndarray) -> np.ndarray:
    """The volume as an array, once it is known to be non-empty, real-valued and finite.

    Raises
    ------
    ValueError
        If the volume holds NaN or infinite values, is empty or not real-valued.
    """
    volume = np.asarray(volume)
    if volume.size == 0:
        raise ValueError("Cannot normalise an empty volume.")
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"Volume must be real-valued, got dtype {volume.dtype}.")
    _check_finite(volume)
    return volume


def _check_finite(volume: np.ndarray) -> None:
    if volume.dtype.kind != "f":
        return
    n_nan = int(np.count_nonzero(np.isnan(volume)))
    n_inf = int(np.count_nonzero(np.isinf(volume)))
    if n_nan or n_inf:
        raise ValueError(f"Volume contains {n_nan} NaN and {n_inf} infinite voxels; fill or mask them before training.")


def _check_clip(clip: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(c) for c in clip)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"clip must be increasing percentiles within [0, 100], got {clip}.")
    return low, high


def pad_value(volume: np.ndarray) -> float:
    """Intensity used to pad crops of a normalised volume: its minimum.

    Outside the field of view there is usually air or empty background, the
    darkest intensity; padding with the z-score mean (0) would instead draw an
    artificial mid-grey frame. Use the same value when padding for prediction.
    """
    return float(np.min(volume))
