"""Per-voxel uncertainty of the latest predictions, and a score per slice.

Which measure
-------------
A whole-volume prediction carries the normalised softmax entropy
(:attr:`PredictionUpdate.entropy`, in [0, 1]): that is the uncertainty used.
Slices streamed while training carry only the maximum softmax probability
``p``; for them the uncertainty is ``(1 - p) * C / (C - 1)`` with ``C``
classes, which like the normalised entropy is 0 for a certain voxel and 1 for
a uniform guess, so both fill the same map on one scale (the later source
overwrites the earlier, slice by slice). MC dropout would need several
forward passes per slice and the network has no dropout layers: left out.

Slices never predicted have no value yet; they score 0 until a prediction
covers them.

:class:`UncertaintyMaps` holds one volume per image name; each map scores its
slices with :func:`~napari_action.inference.suggestions.slice_scores`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from napari_action.inference.suggestions import slice_scores
from napari_action.progress import SlicePrediction

__all__ = ["UncertaintyMap", "UncertaintyMaps", "streamed_uncertainty"]


def with_uncertainty(prediction: SlicePrediction, n_classes: int) -> SlicePrediction:
    """``prediction`` with its slices' :func:`streamed_uncertainty` and their scores, computed where this runs.

    The widget calls it in the training worker: scoring a run of 100 streamed 512 x 512 slices of a CT held
    napari's GUI thread for 1.4-1.8 s. Without a confidence there is nothing to score.
    """
    if prediction.confidence is None:
        return prediction
    values = streamed_uncertainty(prediction.confidence, n_classes)
    return dataclasses.replace(prediction, uncertainty=values, slice_scores=slice_scores(values, 0))


def streamed_uncertainty(confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Uncertainty of streamed slices: ``(1 - p_max) * C / (C - 1)``, in [0, 1]."""
    if n_classes < 2:
        return np.zeros(np.shape(confidence), np.float32)
    scaled = (1.0 - np.asarray(confidence, np.float32)) * (n_classes / (n_classes - 1))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


@dataclass
class UncertaintyMap:
    """The uncertainty volume of one image and which slices (along ``axis``) hold values."""

    volume: np.ndarray
    axis: int
    covered: np.ndarray
    _scores: np.ndarray | None = field(default=None, repr=False)
    _stale: np.ndarray | None = field(default=None, repr=False)  # slices written since they were scored

    def scores(self) -> np.ndarray:
        """Per-slice scores (:func:`~napari_action.inference.suggestions.slice_scores`), 0 where not covered.

        Only the slices written since the last call are scored again: slices stream in a few at a time,
        and scoring every slice of a 512 x 512 x 400 CT each time took seconds on napari's GUI thread.
        """
        self._start_scores()
        for index in np.flatnonzero(self._stale & self.covered):
            plane = np.take(self.volume, [index], axis=self.axis)
            self._scores[index] = slice_scores(plane, self.axis)[0]
        self._stale[:] = False
        return self._scores

    def scored(self, scores: np.ndarray) -> None:
        """Every slice's score, computed off the GUI thread from these very values: nothing left to score."""
        self._scores = np.array(scores, dtype=np.float64)
        self._stale = np.zeros(self.covered.size, dtype=bool)

    def scored_slices(self, start: int, scores: np.ndarray) -> None:
        """Slices ``start:start+len(scores)`` hold new values whose scores were computed off the GUI thread."""
        self._start_scores()
        stop = start + len(scores)
        self._scores[start:stop] = scores
        self._stale[start:stop] = False

    def _start_scores(self) -> None:
        """No slice scored yet: every slice is to be scored."""
        if self._scores is None:
            self._scores = np.zeros(self.covered.size)
            self._stale = np.ones(self.covered.size, dtype=bool)

    def written(self, start: int = 0, stop: int | None = None) -> None:
        """Slices ``start:stop`` (default: all) hold new values: score them again at the next :meth:`scores`."""
        if self._stale is not None:
            self._stale[start:stop] = True


class UncertaintyMaps:
    """Uncertainty volumes keyed by image name, filled from predictions."""

    def __init__(self):
        self.maps: dict[str, UncertaintyMap] = {}

    def get(self, name: str) -> UncertaintyMap | None:
        """The map of image ``name`` (None: nothing predicted yet)."""
        return self.maps.get(name)

    def forget(self, name: str) -> None:
        """Drop the map of image ``name`` (its image is gone)."""
        self.maps.pop(name, None)

    def rename(self, old: str, new: str) -> None:
        """Keep the map of image ``old`` under its new name."""
        if old in self.maps:
            self.maps[new] = self.maps.pop(old)

    def _map(self, name: str, shape: tuple[int, ...], axis: int) -> UncertaintyMap:
        found = self.maps.get(name)
        if found is None or found.volume.shape != tuple(shape) or found.axis != axis:
            found = self.maps[name] = UncertaintyMap(
                np.zeros(shape, np.float32), axis, np.zeros(shape[axis], dtype=bool)
            )
        return found

    def set_volume(self, name: str, entropy: np.ndarray, axis: int, scores: np.ndarray | None = None) -> UncertaintyMap:
        """Store a whole-volume normalised entropy (every slice covered), with its slices' scores when they were
        computed elsewhere (:attr:`PredictionUpdate.slice_scores <napari_action.progress.PredictionUpdate>`).

        A writable float32 ``entropy`` (a prediction's, handed over) becomes the map of an image without one
        of its shape, not a copy: copying 420 MB into fresh memory took most of a second on napari's GUI thread
        for a 512 x 512 x 400 CT. Do not change it afterwards.
        """
        found = self.maps.get(name)
        if found is None or found.volume.shape != entropy.shape or found.axis != axis:
            owned = entropy.dtype == np.float32 and entropy.flags.writeable
            volume = entropy if owned else np.array(entropy, dtype=np.float32)
            found = self.maps[name] = UncertaintyMap(volume, axis, np.zeros(entropy.shape[axis], dtype=bool))
        else:
            np.copyto(found.volume, entropy, casting="same_kind")
        found.covered[:] = True
        if scores is None or len(scores) != found.covered.size:
            found.written()
        else:
            found.scored(scores)
        return found

    def set_slices(
        self,
        name: str,
        shape: tuple[int, ...],
        axis: int,
        start: int,
        values: np.ndarray,
        scores: np.ndarray | None = None,
    ) -> UncertaintyMap:
        """Store streamed slices ``start:start+len(values)`` (``values`` slices-first), with their ``scores`` when
        they were computed elsewhere from these values (else they are scored when asked)."""
        found = self._map(name, tuple(shape), axis)
        stop = start + values.shape[0]
        np.moveaxis(found.volume, axis, 0)[start:stop] = values  # a view: writes into the volume
        found.covered[start:stop] = True
        found.written(start, stop)
        if scores is not None and len(scores) == stop - start:
            found.scored_slices(start, scores)
        return found
