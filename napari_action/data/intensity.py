"""The intensity normalisation of training and prediction, as four numbers that can be applied slice by slice.

Training normalises each volume by clipping it to its 0.5th and 99.5th intensity percentiles
and z-scoring the result (:func:`~napari_action.data.intensity.normalize_volume`) by the mean and
standard deviation of its *foreground*: the voxels above the volume's Otsu threshold
(:func:`foreground_of`). A volume's whole-volume moments depend on how much empty background its
field of view holds: a skull-stripped brain (four fifths zeros) z-scored as a whole put its deep
grey matter a full standard deviation above where a head scan put it, and a network trained on the
head scan found nothing in it. The foreground's moments describe the anatomy alone.
The default, ``reference="foreground_in_view"``, first sets aside a fill value outside the scanner's
field of view (:func:`fill_below_imaged`): CT padded with -2048 or -3024 HU around a circular field of
view holds a quarter of its voxels there, far below air. Counted, that padding set the lower clip bound
and Otsu split it from air and body together, so one spine normalised differently by its padding value
alone. Read as the darkest imaged intensity, the padding looks like air, as in a scan padded with air's
value. ``reference="foreground"`` counts it (models saved before keep that), and ``reference="whole"``
measures every voxel, as napari-action did earlier still.
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

from napari_action.config import check_intensity_reference

if TYPE_CHECKING:  # annotations only
    from napari_action.io.volume_source import VolumeSource

__all__ = [
    "CLIP_PERCENTILES",
    "FILL_GAP_OF_RANGE",
    "MIN_SPREAD_OF_RANGE",
    "SAMPLE_VOXELS",
    "IntensityStatistics",
    "check_volume_values",
    "clip_and_measure",
    "display_window",
    "exact_statistics",
    "fill_below_imaged",
    "foreground_of",
    "intensity_statistics",
    "normalize_volume",
    "otsu_threshold",
    "pad_value",
    "sample_slices",
]

#: Most voxels read to estimate the normalisation (64 MiB as float32).
SAMPLE_VOXELS = 16 * 2**20
#: Percentiles the intensities are clipped to, as in training.
CLIP_PERCENTILES = (0.5, 99.5)
#: The foreground's standard deviation counts as at least this share of the clipped intensity range. Anatomy
#: spreads over a fifth to an eighth of it (range / sd: Colin27 6.9, MNI152 7.1, the phantom 5.0-5.5, spine CT
#: 5.5 and MRI 5.9, nibabel's example EPI 8.0); a uniform bright object as the foreground (a disc, a filled
#: vessel) would make its own noise look like anatomy, and a noisier copy of it hardly noisier.
MIN_SPREAD_OF_RANGE = 1.0 / 10.0
#: A volume's minimum is a fill value outside the field of view when the voxels above it start more than this share
#: of their clipped range above it. CT padding lies 0.55 (-2048 HU) to 1.1 (-3024 HU) of a body's range below air;
#: a skull-stripped brain's darkest voxel lies 0.14 of its range above its zeros (MNI152), and the noise in an MRI's
#: background touches its zeros.
FILL_GAP_OF_RANGE = 0.2
#: The references whose moments are the foreground's (the voxels above the Otsu threshold).
_FOREGROUND_REFERENCES = ("foreground_in_view", "foreground")
#: Histogram bins of the Otsu threshold.
_OTSU_BINS = 256
#: Most voxels :func:`display_window` reads (every n-th voxel along each axis of a larger volume).
WINDOW_VOXELS = 2**20
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


def clip_and_measure(
    values: np.ndarray, clip: tuple[float, float] | None, reference: str = "foreground_in_view"
) -> IntensityStatistics:
    """Clip float32 ``values`` in place to their percentiles and measure them: the core of the normalisation.

    Parameters
    ----------
    values : np.ndarray
        Float32 intensities; clipped in place.
    clip : (float, float) or None
        Lower and upper percentiles (already checked); ``None`` skips clipping (then ``low`` and
        ``high`` are the minimum and maximum, which clip nothing).
    reference : {"foreground_in_view", "foreground", "whole"}
        The voxels the mean and standard deviation are taken over (``config.INTENSITY_REFERENCES``).

    Returns
    -------
    IntensityStatistics
        Percentile bounds, mean and standard deviation (with a relative floor) of the clipped values.
    """
    check_intensity_reference(reference, "reference")
    if clip is None:
        low, high = np.min(values), np.max(values)
    else:
        low, high = _clip_bounds(values, clip, reference)
        np.clip(values, low, high, out=values)
    measured = foreground_of(values) if reference in _FOREGROUND_REFERENCES else values
    mean = float(measured.mean(dtype=np.float64))
    std = float(measured.std(dtype=np.float64))
    if reference in _FOREGROUND_REFERENCES:
        std = max(std, MIN_SPREAD_OF_RANGE * float(high - low))
    # Relative floor: a constant volume has std ~ rounding noise of its mean,
    # dividing by that noise would turn a flat image into random values.
    std = max(std, 1e-6 * max(abs(mean), 1.0))
    return IntensityStatistics(float(low), float(high), mean, std)


def _clip_bounds(values: np.ndarray, clip: tuple[float, float], reference: str) -> tuple[float, float]:
    """The lower percentile of every voxel; the upper one of every voxel above that lower bound (the foreground
    references); with "foreground_in_view", both of the voxels above a fill value (:func:`fill_below_imaged`).

    Empty background counts toward whole-volume percentiles: a skull-stripped brain (four fifths zeros)
    had its brightest 2 % of tissue clipped where a head scan lost 0.9 %, and padding a scan with empty
    space clips more of it. Above the lower bound only what was imaged counts.
    """
    low, high = _percentile_bounds(values, clip, reference != "whole")
    if reference == "foreground_in_view":
        imaged = fill_below_imaged(values, low, high)
        if imaged is not None:
            low, high = _percentile_bounds(imaged, clip, True)
    return low, high


def display_window(volume: np.ndarray, budget: int = WINDOW_VOXELS) -> tuple[float, float] | None:
    """The intensities to show a scan between when it opens: the clip bounds of its normalisation.

    A viewer's default window, the minimum to the maximum, shows a CT padded with -3024 HU and holding a
    pedicle screw at +3000 in a narrow band of grey (air at a third, bone at three fifths of it); the
    clip bounds leave out the padding and the few brightest voxels. Taken from every n-th voxel along each
    axis, at most ``budget`` voxels; None for a constant volume.
    """
    volume = np.asarray(volume)
    step = max(1, math.ceil((volume.size / max(budget, 1)) ** (1.0 / max(volume.ndim, 1))))
    sample = volume[(slice(None, None, step),) * volume.ndim].astype(np.float32).ravel()
    if sample.size == 0 or not np.isfinite(sample).all():
        return None
    low, high = _clip_bounds(sample, CLIP_PERCENTILES, "foreground_in_view")
    return (low, high) if high > low else None


def _percentile_bounds(values: np.ndarray, clip: tuple[float, float], above_low: bool) -> tuple[float, float]:
    low = float(np.percentile(values, clip[0]))
    imaged = values[values > low] if above_low else values
    high = float(np.percentile(imaged, clip[1])) if imaged.size else low
    return low, max(high, low)


def fill_below_imaged(values: np.ndarray, low: float, high: float) -> np.ndarray | None:
    """The voxels above a fill value at the minimum of ``values``, or None where the minimum is imaged.

    ``low`` and ``high`` are the clip bounds of every voxel. The minimum is a fill value (CT's padding
    outside a circular field of view) when it is the lower bound (at least 0.5 % of the voxels hold it)
    and the values above it start more than :data:`FILL_GAP_OF_RANGE` of their range above it.
    """
    if low > float(np.min(values)):
        return None
    imaged = values[values > low]
    if imaged.size == 0:
        return None
    darkest = float(np.min(imaged))
    spread = high - darkest  # a two-valued image (a mask) has none: its minimum is no fill
    return imaged if spread > 0 and darkest - low > FILL_GAP_OF_RANGE * spread else None


def foreground_of(values: np.ndarray) -> np.ndarray:
    """The values above their Otsu threshold (all of them for a constant image).

    Otsu's threshold splits the histogram into the two classes of least spread within: background and
    anatomy in a scan with air or a stripped skull around it, soft tissue and bone in a crop inside a body.
    No share of voxels is required of either class: a rule with a cut-off would normalise two alike
    volumes differently when one falls just below it.
    """
    threshold = otsu_threshold(values)
    return values if threshold is None else values[values > threshold]


def otsu_threshold(values: np.ndarray, bins: int = _OTSU_BINS) -> float | None:
    """The intensity that best splits ``values`` into two classes (Otsu 1979); None for a constant image."""
    low, high = float(np.min(values)), float(np.max(values))
    if not high > low:
        return None
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2.0
    below = np.cumsum(counts, dtype=np.float64)[:-1]  # voxels in bins 0..i, for a split after bin i
    above = counts.sum() - below
    sum_below = np.cumsum(counts * centres)[:-1]
    mean_below = sum_below / np.maximum(below, 1.0)
    mean_above = (np.dot(counts, centres) - sum_below) / np.maximum(above, 1.0)
    # Between-class variance (up to a constant factor): largest where the two means are far apart
    # and both classes are well filled.
    between = below * above * (mean_below - mean_above) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def exact_statistics(
    volume: np.ndarray,
    clip: tuple[float, float] | None = CLIP_PERCENTILES,
    reference: str = "foreground_in_view",
) -> IntensityStatistics:
    """The normalisation of a volume in memory, from every voxel (a float32 copy lives while it runs).

    Applied to ``volume`` (or to any piece of it) it gives the same bits as
    :func:`~napari_action.data.intensity.normalize_volume`, which is built on the same
    :func:`clip_and_measure`.
    """
    return clip_and_measure(np.asarray(volume).astype(np.float32, copy=True), clip, reference)


def sample_slices(n_slices: int, plane_voxels: int, budget: int = SAMPLE_VOXELS) -> np.ndarray:
    """Indices of evenly spaced slices holding at most ``budget`` voxels (every slice if they fit)."""
    stride = max(1, math.ceil(n_slices * plane_voxels / max(budget, 1)))
    return np.arange(stride // 2, n_slices, stride) if stride > 1 else np.arange(n_slices)


def intensity_statistics(
    source: VolumeSource,
    axis: int,
    budget: int = SAMPLE_VOXELS,
    clip: tuple[float, float] = CLIP_PERCENTILES,
    reference: str = "foreground_in_view",
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
    reference : {"foreground_in_view", "foreground", "whole"}
        The voxels the mean and standard deviation are taken over (:func:`clip_and_measure`).

    Returns
    -------
    IntensityStatistics
        Percentile bounds, mean and standard deviation of the clipped sample.
    """
    n_slices = source.shape[axis]
    plane = int(np.prod(source.shape)) // n_slices
    indices = sample_slices(n_slices, plane, budget)
    measured = clip_and_measure(_read_sample(source, axis, indices), clip, reference)
    return dataclasses.replace(measured, exact=indices.size == n_slices)


def _read_sample(source: VolumeSource, axis: int, indices: np.ndarray) -> np.ndarray:
    if indices.size == source.shape[axis]:  # every slice: read in runs
        runs = [(start, min(start + _READ_RUN, indices.size)) for start in range(0, indices.size, _READ_RUN)]
    else:
        runs = [(int(i), int(i) + 1) for i in indices]
    return np.concatenate([source.read(axis, start, stop).astype(np.float32).ravel() for start, stop in runs])


# ----------------------------------------------------------------- whole volumes in memory
def normalize_volume(
    volume: np.ndarray, clip: tuple[float, float] | None = (0.5, 99.5), reference: str = "foreground_in_view"
) -> np.ndarray:
    """Clip a volume to intensity percentiles, then z-score it by its foreground's moments.

    Parameters
    ----------
    volume : np.ndarray
        Image intensities, any real dtype. Not modified.
    clip : (float, float) or None
        Lower and upper percentiles; ``None`` skips clipping.
    reference : {"foreground_in_view", "foreground", "whole"}
        The voxels the mean and standard deviation are taken over (:func:`clip_and_measure`).

    Returns
    -------
    np.ndarray
        New float32 array, its foreground (or, with ``reference="whole"``, the whole volume) of zero
        mean and unit standard deviation (a constant volume becomes all zeros).

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
    statistics = clip_and_measure(out, None if clip is None else _check_clip(clip), reference)
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
        raise ValueError(
            f"The image contains {n_nan} NaN and {n_inf} infinite voxels; napari-action needs finite values. "
            "Replace them first, e.g. np.nan_to_num(image, nan=0.0, posinf=0.0, neginf=0.0), or read the file "
            "with load_volume(path, nan_policy='zero')."
        )


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
