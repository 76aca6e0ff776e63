"""Prediction from a volume read slice by slice into labels written slice by slice.

:meth:`~napari_action.inference.predictor.Predictor.iter_predict` normalises the whole volume
into a float32 copy and keeps labels, confidence and entropy volumes: about 13 bytes per
voxel besides the volume itself. :func:`predict_to_writer` holds only a run of slices at a
time: it reads them from a :class:`~napari_action.io.volume_source.VolumeSource`, normalises
them with statistics taken beforehand, predicts, smooths across slices
(:class:`~napari_action.inference.postprocess.SliceSmoother` keeps a window of slices) and
hands each finished label slice to a :class:`~napari_action.io.label_writers.LabelWriter`
(and, if asked, with its entropy to a :class:`~napari_action.inference.quality.QualityAccumulator`).
Its memory does not grow with the number of slices.

Normalisation from a sample
---------------------------
The four numbers of the training normalisation come from a strided sample of whole slices
(:func:`~napari_action.data.intensity.intensity_statistics`): exact for volumes up to
:data:`~napari_action.data.intensity.SAMPLE_VOXELS` voxels, a systematic sample of a few dozen
slices beyond. They live in :mod:`napari_action.data.intensity`, which training shares.
"""

from __future__ import annotations

from collections.abc import Callable

from napari_action.data.intensity import (
    CLIP_PERCENTILES,
    SAMPLE_VOXELS,
    IntensityStatistics,
    intensity_statistics,
    sample_slices,
)
from napari_action.inference.postprocess import SliceSmoother, slices_spanned
from napari_action.inference.predictor import Predictor
from napari_action.inference.quality import QualityAccumulator
from napari_action.inference.suggestions import normalized_entropy
from napari_action.io.label_writers import LabelWriter
from napari_action.io.volume_source import VolumeSource

# Re-exported: they were defined here before training needed them too.
__all__ = [
    "CLIP_PERCENTILES",
    "SAMPLE_VOXELS",
    "IntensityStatistics",
    "intensity_statistics",
    "predict_to_writer",
    "sample_slices",
]


def predict_to_writer(
    predictor: Predictor,
    source: VolumeSource,
    writer: LabelWriter,
    *,
    tta: bool = False,
    batch_size: int = 8,
    statistics: IntensityStatistics | None = None,
    on_progress: Callable[[int, int], object] | None = None,
    quality: QualityAccumulator | None = None,
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
    quality : QualityAccumulator, optional
        Receives each finished slice's labels and normalised entropy (the volume's quality record,
        :mod:`napari_action.inference.quality`), so that no second pass over the volume is needed.

    Returns
    -------
    IntensityStatistics
        The normalisation used.
    """
    axis = predictor.axis
    n_slices = source.shape[axis]
    statistics = statistics or intensity_statistics(source, axis, reference=predictor.intensity_reference)
    thickness = float(source.meta.zooms[axis]) or 1.0
    scale = predictor.scale_for(source.meta.zooms)  # slices of another voxel size: seen at the training size
    smoother = SliceSmoother(slices_spanned(predictor.smoothing_mm, thickness), n_slices)
    start = 0
    while start < n_slices:
        stop = min(start + batch_size, n_slices)
        # The run with its 2.5D context; at the volume's ends the edge slice repeats, as in training.
        low, high = max(0, start - predictor.context), min(n_slices, stop + predictor.context)
        block = statistics.apply(source.read(axis, low, high))
        try:
            _, probs = predictor.predict_slices(block, start - low, stop - low, tta, pad=statistics.pad, scale=scale)
        except Exception as error:
            batch_size = predictor.smaller_batch(batch_size, error)
            continue  # the same slices again, fewer at a time
        for offset, slice_probs in enumerate(probs):
            for index, smoothed in smoother.push(start + offset, slice_probs):
                labels = predictor.class_values[smoothed.argmax(axis=0)].astype(predictor.label_dtype)
                writer.write(index, labels)
                if quality is not None:
                    quality.add_slice(index, labels, normalized_entropy(smoothed, axis=0, check=False))
        start = stop
        if on_progress is not None:
            on_progress(stop, n_slices)
    return statistics
