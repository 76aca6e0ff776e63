"""Prediction from a volume read slice by slice into labels written slice by slice.

:meth:`~napari_action.inference.predictor.Predictor.iter_predict` normalises the whole volume
into a float32 copy and keeps labels, confidence and entropy volumes: about 13 bytes per
voxel besides the volume itself. :func:`predict_to_writer` holds only a run of slices at a
time: it reads them from a :class:`~napari_action.io.volume_source.VolumeSource`, normalises
them with statistics taken beforehand, predicts, smooths across slices
(:class:`~napari_action.inference.postprocess.SliceSmoother` keeps a window of slices) and
hands each finished label slice to a :class:`~napari_action.io.label_writers.LabelWriter`.
Its memory does not grow with the number of slices.

Normalisation from a sample
---------------------------
Training normalises each volume by clipping it to its 0.5th and 99.5th intensity percentiles
and z-scoring the result (:func:`~napari_action.data.slice_pool.normalize_volume`). Those four
numbers need every voxel; here they come from a strided sample of whole slices along the
slicing axis, at most :data:`SAMPLE_VOXELS` voxels (every slice of a volume up to 256³, every
10th of a 512×512×600 one). Then the statistics are exact for volumes up to that size (the
same labels as the in-memory path) and for larger ones they are those of a systematic sample
of a few dozen slices: percentiles and moments of anatomy that changes smoothly from slice to
slice, within a few hundredths of a standard deviation of the exact values in our tests.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from napari_action.inference.postprocess import SliceSmoother
from napari_action.inference.predictor import Predictor
from napari_action.io.label_writers import LabelWriter
from napari_action.io.volume_source import VolumeSource

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
        """Normalise ``block`` exactly as :func:`~napari_action.data.slice_pool.normalize_volume` does (float32)."""
        out = np.asarray(block).astype(np.float32, copy=True)
        np.clip(out, self.low, self.high, out=out)
        out -= np.float32(self.mean)
        out /= np.float32(self.std)
        return out

    @property
    def pad(self) -> float:
        """The minimum of the normalised volume, used to pad slices (the clipped minimum, ``low``)."""
        return float(self.apply(np.array([self.low], np.float32))[0])


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
    sample = _read_sample(source, axis, indices)
    low, high = np.percentile(sample, clip)
    np.clip(sample, low, high, out=sample)
    mean = float(sample.mean(dtype=np.float64))
    std = float(sample.std(dtype=np.float64))
    # The relative floor of normalize_volume: a constant volume becomes zeros, not noise.
    std = max(std, 1e-6 * max(abs(mean), 1.0))
    return IntensityStatistics(float(low), float(high), mean, std, exact=indices.size == n_slices)


def _read_sample(source: VolumeSource, axis: int, indices: np.ndarray) -> np.ndarray:
    if indices.size == source.shape[axis]:  # every slice: read in runs
        runs = [(start, min(start + _READ_RUN, indices.size)) for start in range(0, indices.size, _READ_RUN)]
    else:
        runs = [(int(i), int(i) + 1) for i in indices]
    return np.concatenate([source.read(axis, start, stop).astype(np.float32).ravel() for start, stop in runs])


def predict_to_writer(
    predictor: Predictor,
    source: VolumeSource,
    writer: LabelWriter,
    *,
    tta: bool = False,
    batch_size: int = 8,
    statistics: IntensityStatistics | None = None,
    on_progress: Callable[[int, int], object] | None = None,
) -> IntensityStatistics:
    """Predict ``source`` slice by slice along the model's axis into ``writer`` (which is not committed here).

    Parameters
    ----------
    predictor : Predictor
        The network, its classes, axis, context and cross-slice smoothing.
    source : VolumeSource
        The volume, read a run of slices (plus the 2.5D context) at a time.
    writer : LabelWriter
        Receives each finished label slice, in order, along ``predictor.axis``.
    tta : bool
        Average over flips.
    batch_size : int
        Slices per forward pass (halved when an accelerator runs out of memory).
    statistics : IntensityStatistics, optional
        Normalisation; by default :func:`intensity_statistics` of ``source``.
    on_progress : callable, optional
        Called with ``(slices_done, n_slices)`` after each run.

    Returns
    -------
    IntensityStatistics
        The normalisation used.
    """
    axis = predictor.axis
    n_slices = source.shape[axis]
    statistics = statistics or intensity_statistics(source, axis)
    thickness = float(source.meta.zooms[axis]) or 1.0
    smoother = SliceSmoother(predictor.smoothing_mm / thickness, n_slices)
    start = 0
    while start < n_slices:
        stop = min(start + batch_size, n_slices)
        # The run with its 2.5D context; at the volume's ends the edge slice repeats, as in training.
        low, high = max(0, start - predictor.context), min(n_slices, stop + predictor.context)
        block = statistics.apply(source.read(axis, low, high))
        try:
            _, probs = predictor.predict_slices(block, start - low, stop - low, tta, pad=statistics.pad)
        except Exception as error:
            batch_size = predictor._smaller_batch(batch_size, error)
            continue  # the same slices again, fewer at a time
        for offset, slice_probs in enumerate(probs):
            for index, smoothed in smoother.push(start + offset, slice_probs):
                writer.write(index, predictor.class_values[smoothed.argmax(axis=0)].astype(predictor.label_dtype))
        start = stop
        if on_progress is not None:
            on_progress(stop, n_slices)
    return statistics
