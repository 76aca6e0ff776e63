"""Which slices to predict while training runs, and when.

Predicting whole volumes every few steps would cost more than training on a
CPU, so the trainer streams a few slices at a time: first around the slice the
user looks at (a :class:`~napari_action.progress.FocusRequest`), then sweeping
through every volume in turn, so each volume is eventually covered.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import SlicePrior
from napari_action.data.slice_pool import SlicePool
from napari_action.evaluation.metrics import dice_per_class
from napari_action.inference.postprocess import taper_streamed
from napari_action.inference.predictor import Predictor, with_prior
from napari_action.progress import SlicePrediction
from napari_action.training.prior_mix import prior_share


class StreamCursor:
    """Round-robin sweep over the slices of several volumes.

    Parameters
    ----------
    n_slices : sequence of int
        Number of slices along the training axis, per volume.
    chunk : int
        Slices predicted per streamed update.
    """

    def __init__(self, n_slices: Sequence[int], chunk: int):
        self.n_slices = list(n_slices)
        self.chunk = max(1, int(chunk))
        self._volume = 0
        self._start = [0] * len(self.n_slices)
        self._focus: tuple[int, int] | None = None
        # Per volume, each class's area on every slice in the latest streamed prediction (NaN: not
        # streamed yet), for the taper to walk from a structure's extent to the slices streamed now.
        self._areas: dict[int, np.ndarray] = {}
        self._last_step = 0
        self._last_time = time.perf_counter()

    def focus(self, volume_index: int, slice_index: int) -> None:
        """Stream the chunk centred on this slice next."""
        if 0 <= volume_index < len(self.n_slices):
            slice_index = int(np.clip(slice_index, 0, self.n_slices[volume_index] - 1))
            self._focus = (volume_index, slice_index)

    def due(self, step: int, every_steps: int, every_seconds: float) -> bool:
        """True every ``every_steps`` steps or ``every_seconds`` seconds, whichever comes first."""
        now = time.perf_counter()
        if step - self._last_step >= every_steps or now - self._last_time >= every_seconds:
            self._last_step, self._last_time = step, now
            return True
        return False

    def next_range(self) -> tuple[int, int, int]:
        """``(volume_index, start, stop)`` of the next chunk to predict."""
        if self._focus is not None:
            volume, center = self._focus
            self._focus = None
            start = max(0, min(center - self.chunk // 2, self.n_slices[volume] - self.chunk))
            return volume, start, min(start + self.chunk, self.n_slices[volume])
        volume = self._volume
        start = self._start[volume]
        stop = min(start + self.chunk, self.n_slices[volume])
        self._start[volume] = 0 if stop >= self.n_slices[volume] else stop
        self._volume = (volume + 1) % len(self.n_slices)
        return volume, start, stop

    def predict(
        self,
        predictor: Predictor,
        volumes: Sequence[np.ndarray | NormalizedVolume],
        priors: Mapping[int, SlicePrior] | None = None,
        spacings: Sequence[Sequence[float]] | None = None,
        *,
        skip_reached: bool = False,
    ) -> tuple[SlicePrediction, ...]:
        """Predict the next chunk with ``predictor`` on ``volumes`` (normalised arrays, or normalised on demand).

        With the volumes' ``priors`` (by volume index) and voxel ``spacings`` (mm, one per array axis;
        default 1 mm), each slice is mixed
        with its prior as the final prediction mixes it (:func:`with_prior`, with the prior's share,
        :func:`~napari_action.training.prior_mix.prior_share`): near a painted slice
        the streamed layer then shows what the preview showed there, not a half-trained network's guess.
        Beyond the slices its propagation reaches, a structure is ended as ``structure_ends`` says: "cut"
        at once; "taper" where, walking out over the areas streamed so far, it grows again or has not
        been streamed yet (on Colin27 the network's false positives on slices the preview leaves
        empty had taken the layer below the preview; docs/benchmarks.md).
        ``skip_reached`` leaves out the slices the prior reaches (the preview stays there): the
        result is then the runs of the chunk outside its reach, possibly none. Slices of another
        in-plane voxel size than the training one are seen at it (:meth:`Predictor.scale_for`), as
        whole-volume prediction sees them.
        """
        volume, start, stop = self.next_range()
        image = volumes[volume]
        if not isinstance(image, NormalizedVolume):
            image = NormalizedVolume(image, None)
        # Only the chunk and its 2.5D context are read; at the volume's ends the edge slice
        # repeats, as in training, and the padding is the whole volume's minimum.
        low = max(0, start - predictor.context)
        high = min(image.shape[predictor.axis], stop + predictor.context)
        block = image.block(predictor.axis, low, high)
        scale = None if spacings is None else predictor.scale_for(spacings[volume])
        labels, probs = predictor.predict_slices(block, start - low, stop - low, pad=image.pad, scale=scale)
        prior = (priors or {}).get(volume)
        if prior is None:
            return (SlicePrediction(volume, predictor.axis, start, labels, probs.max(axis=1)),)
        decay = predictor.prior_decay_slices(1.0 if spacings is None else float(spacings[volume][predictor.axis]))
        extents = predictor.extents_of(prior)
        cut = extents if predictor.structure_ends == "cut" else None
        share = prior_share(prior)
        probs = np.stack([with_prior(p, prior, start + i, decay, cut, share) for i, p in enumerate(probs)])
        class_ids = probs.argmax(axis=1)
        labels = predictor.class_values[class_ids].astype(labels.dtype)
        if predictor.structure_ends == "taper":
            area = self._remembered_areas(volume, start, class_ids, len(predictor.class_values))
            taper_streamed(labels, start, area, extents, predictor.class_values)
        shown = ~prior.covered[start:stop] if skip_reached else np.ones(stop - start, bool)
        return tuple(
            SlicePrediction(volume, predictor.axis, start + first, labels[first:last], probs[first:last].max(axis=1))
            for first, last in _runs_of_true(shown)
        )

    def _remembered_areas(self, volume: int, start: int, class_ids: np.ndarray, num_classes: int) -> np.ndarray:
        """Record each class's area on the streamed slices (``class_ids``: ``(n, H, W)``); return the
        volume's ``(slices, classes)`` areas."""
        area = self._areas.get(volume)
        if area is None or area.shape[1] != num_classes:
            area = self._areas[volume] = np.full((self.n_slices[volume], num_classes), np.nan)
        area[start : start + len(class_ids)] = [np.bincount(ids.ravel(), minlength=num_classes) for ids in class_ids]
        return area


def _runs_of_true(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(first, stop)`` of every run of consecutive True values in a 1D mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


class FitGate:
    """Whether streamed network predictions are good enough to replace the preview.

    The check the user sees: Dice of the network on the slices they labeled
    (mean over the foreground classes on those slices). Until it reaches
    ``threshold`` the interpolation preview stays on screen; once reached,
    streaming stays on (a dip later must not bring the old preview back).

    Parameters
    ----------
    threshold : float
        Painted-slice Dice needed before streaming; 0 streams from the start.
    slices_per_check : int
        Labeled slices predicted per check (taken in turn), to keep checks cheap.
    """

    def __init__(self, threshold: float, slices_per_check: int = 4):
        self.threshold = float(threshold)
        self.slices_per_check = max(1, int(slices_per_check))
        self.fit: float | None = None
        self.open = self.threshold <= 0
        self._next = 0

    def check(self, predictor: Predictor, pool: SlicePool) -> float | None:
        """Predict a few labeled slices, update :attr:`fit` and :attr:`open`; return the fit."""
        labeled = pool.labeled
        if not labeled:
            return None
        chosen = [labeled[(self._next + i) % len(labeled)] for i in range(min(self.slices_per_check, len(labeled)))]
        self._next = (self._next + len(chosen)) % len(labeled)
        scores = [_slice_dice(predictor, pool, v, s) for v, s in chosen]
        scores = [x for x in scores if not np.isnan(x)]
        if scores:
            self.fit = float(np.mean(scores))
            self.open = self.open or self.fit >= self.threshold
        return self.fit


def _slice_dice(predictor: Predictor, pool: SlicePool, v: int, s: int) -> float:
    """Mean foreground Dice of the network on one labeled slice (supervised pixels only).

    NaN when neither the labels nor the prediction hold a foreground class there.
    """
    target = pool.target(v, s)
    # At the size training sees this volume's slices (a painted volume of another pixel size is enlarged).
    probs = predictor.class_probabilities(pool.image(v, s), pool.pad_value(v), pool.slice_scale(v))
    predicted = probs.argmax(axis=0)
    valid = target >= 0  # the ignore index (-1) marks pixels without supervision
    # By default dice_per_class scores the foreground classes present in either array.
    dice = dice_per_class(predicted[valid], target[valid])
    return float(np.mean(list(dice.values()))) if dice else float("nan")
