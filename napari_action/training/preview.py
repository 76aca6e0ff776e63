"""What the user sees of a model while it trains.

Before the first step: the prior (propagated or interpolated labels), run by
run as it is computed. Once the network fits the labeled slices (the fit
gate): a few slices predicted by the eval-mode teacher every so often.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from napari_action.config import TrainConfig
from napari_action.data.carried_prior import CarriedPrior
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import SlicePrior, iter_prior_runs
from napari_action.data.slice_pool import SlicePool
from napari_action.inference.predictor import Predictor
from napari_action.progress import SlicePrediction
from napari_action.training.stream_schedule import FitGate, StreamCursor

__all__ = ["iter_prior_preview", "streamed_slices", "teacher_predictor"]


def teacher_predictor(
    teacher: torch.nn.Module,
    class_values: np.ndarray,
    axis: int,
    config: TrainConfig,
    device: torch.device,
    pixel_mm: Sequence[float] | None = None,
) -> Predictor:
    """A predictor over ``teacher`` (put in eval mode), sharing its weights, in the trainer's precision;
    ``pixel_mm``: the in-plane voxel size of the painted slices, which other volumes' slices are resized to."""
    return Predictor(
        teacher,
        class_values,
        axis,
        context=config.model.context,
        device=device,
        amp=config.amp,
        cpu_bfloat16=config.cpu_bfloat16,
        smoothing_mm=config.predict_smoothing_mm,
        prior_decay_mm=config.predict_prior_decay_mm,
        structure_ends=config.structure_ends,
        intensity_reference=config.intensity_reference,
        pixel_mm=pixel_mm,
    )


def iter_prior_preview(
    priors: Mapping[int, SlicePrior], class_values: np.ndarray, axis: int
) -> Iterator[tuple[SlicePrediction, ...]]:
    """The prior of every volume that has one, run by run, as label values with the prior's confidence.

    Runs are computed as they are asked for, so the first ones show before the
    whole prior is known.
    """
    # The painted volumes' own priors first: they show within seconds, and the carried ones are made from them.
    for index in sorted(priors, key=lambda i: (isinstance(priors[i], CarriedPrior), i)):
        for run in iter_prior_runs(priors[index]):
            labels = class_values[run.classes]
            yield (SlicePrediction(index, axis, run.start, labels, run.confidence),)


def streamed_slices(
    stream: StreamCursor,
    gate: FitGate,
    predictor_of: Callable[[], Predictor],
    pool: SlicePool,
    images: Sequence[NormalizedVolume],
    spacings: Sequence[Sequence[float]] | None,
    config: TrainConfig,
    done: int,
) -> tuple[SlicePrediction, ...]:
    """The next slices of the sweep after step ``done`` when they are due (``config.stream_every_steps`` or
    ``stream_every_seconds``), mixed with the prior as the final prediction is, once the network fits the
    labeled slices; none before. ``predictor_of()`` makes the predictor (only when due); ``spacings``: each
    volume's voxel size in mm. Where the prior reaches, the preview stays (``config.stream_over_preview``)."""
    if not stream.due(done, config.stream_every_steps, config.stream_every_seconds):
        return ()
    skip_reached = config.stream_over_preview == "unreached"
    predictor = predictor_of()
    if not gate.open:
        gate.check(predictor, pool)
    if not gate.open:
        return ()
    return stream.predict(predictor, images, pool.priors, spacings, skip_reached=skip_reached)
