"""Messages exchanged between the headless core and any front end.

These small frozen dataclasses are the only types the napari adapter needs to
understand the trainer and the predictor; they hold plain numbers and numpy
arrays, never tensors, so they can cross threads (or processes) safely.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SlicePrediction:
    """Predicted labels for a run of consecutive slices of one volume.

    Parameters
    ----------
    volume_index : int
        Index of the volume in the list given to the trainer or predictor.
    axis : int
        Slicing axis of the volume.
    start : int
        Index of the first slice in ``labels`` along ``axis``.
    labels : np.ndarray
        Label values (the user's values, not class ids), with ``axis`` moved
        first: shape ``(n_slices, *in_plane_shape)``.
    confidence : np.ndarray or None
        Max softmax probability per voxel, same shape, float32 in [0, 1]; None where the prediction was
        asked not to make it (``iter_predict(with_confidence=False)``).
    uncertainty, slice_scores : np.ndarray or None
        The voxels' uncertainty (same shape) and one score per slice, for a front end that ranks slices
        (:func:`~napari_action.inference.uncertainty.with_uncertainty`); None unless asked for.
    """

    volume_index: int
    axis: int
    start: int
    labels: np.ndarray
    confidence: np.ndarray | None
    uncertainty: np.ndarray | None = None
    slice_scores: np.ndarray | None = None

    @property
    def stop(self) -> int:
        return self.start + self.labels.shape[0]


@dataclass(frozen=True)
class TrainProgress:
    """One step of training as seen from outside.

    ``predictions`` is empty on most steps; every ``stream_every_steps`` steps
    (or seconds) it carries a few slices predicted by the eval-mode teacher.
    """

    stage: str
    step: int
    total_steps: int
    losses: dict[str, float]
    lr: float
    steps_per_second: float
    eta_seconds: float
    device: str
    predictions: tuple[SlicePrediction, ...] = field(default_factory=tuple)
    #: Dice of the network on the labeled slices at the last check (None before the first).
    painted_fit: float | None = None
    #: Whether streamed predictions are on (they wait until ``painted_fit`` reaches the config's gate).
    streaming: bool = True
    #: Whether the preview stays on the slices it reaches while streaming (the network shows elsewhere).
    preview_kept: bool = False
    #: Something the user should know, said once (e.g. batches halved after the GPU memory was full).
    notice: str | None = None

    @property
    def fraction(self) -> float:
        return self.step / max(self.total_steps, 1)


@dataclass(frozen=True)
class PredictionUpdate:
    """Progress of a whole-volume prediction.

    The last update of a volume has ``done=True`` and carries the full
    ``labels``, ``confidence`` (max softmax probability) and ``entropy``
    (normalised to [0, 1], the uncertainty) arrays in the volume's own axis
    order, and ``axis``, the array axis its slices were predicted along (the
    model's, but for a training volume stored in another voxel order).
    """

    volume_index: int
    slices_done: int
    total_slices: int
    done: bool = False
    labels: np.ndarray | None = None
    confidence: np.ndarray | None = None
    entropy: np.ndarray | None = None
    axis: int | None = None
    #: One uncertainty score per slice along ``axis`` (:func:`~napari_action.inference.suggestions.slice_scores`
    #: of ``entropy``, slice by slice), where whoever handed the update over computed them (napari's prediction
    #: job, off the GUI thread); None otherwise.
    slice_scores: np.ndarray | None = None
    #: What besides the network made the labels, in words (a training volume's painted slices mixed in, the
    #: painted labels ending its structures: :func:`~napari_action.training.volume_prediction.prediction_aid`);
    #: None for the network alone, which is all a saved model predicts with.
    aided_by: str | None = None


@dataclass(frozen=True)
class AnnotationUpdate:
    """New or corrected labels sent to a running trainer (``generator.send``).

    Parameters
    ----------
    labels : tuple
        One label array (or ``None``) per training volume, same order and
        shapes as given to the trainer. The trainer copies what it needs.
    labeled_slices : dict, optional
        Extra slices per volume index that count as labeled even where they
        hold no painted voxel (a slice that truly contains only background).
    """

    labels: tuple[np.ndarray | None, ...]
    labeled_slices: dict[int, tuple[int, ...]] | None = None


@dataclass(frozen=True)
class FocusRequest:
    """Ask the trainer to stream this slice first (the one the user looks at): its index along the slicing
    axis, or for a volume the trainer reads turned (``Trainer.turns``) along the axis that axis lies on as stored."""

    volume_index: int
    slice_index: int
