"""Training data: slice pools and crops (the normalisation is in :mod:`napari_action.data.intensity`).

Sampling (:class:`SlicePool`) is plain numpy on the CPU and returns CPU
tensors; the trainer moves batches to its device. The batched augmentations
live in :mod:`napari_action.data.augment`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_action.data.annotations import IGNORE_INDEX, SparseAnnotation
from napari_action.data.crop_frame import CropFrame
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.pixel_size import painted_pixel_mm, slice_scale
from napari_action.data.priors import SlicePrior, build_priors

__all__ = ["SlicePool"]

# Most of the random (not foreground-centred) labeled crops should hold anatomy.
BACKGROUND_SLICE_SHARE = 0.25


# ---------------------------------------------------------------- slice pool
class SlicePool:
    """Labeled and unlabeled 2D(.5) slices of several volumes, with samplers.

    Parameters
    ----------
    volumes : sequence of np.ndarray or NormalizedVolume
        3D volumes: arrays already normalised (see :func:`normalize_volume`),
        used as float32, or :class:`~napari_action.data.normalized_volume.NormalizedVolume`
        images normalised crop by crop as they are sampled (an image read
        from disk is never held whole). Never copied whole.
    annotation : SparseAnnotation
        Which slices are labeled, their targets and the slicing axis.
    context : int
        2.5D context: slices ``s - context .. s + context`` become the input
        channels (``C = 2 * context + 1``); beyond the volume the edge slice is
        repeated.
    prior : bool
        Keep a prior on unlabeled slices (:mod:`napari_action.data.priors`)
        for :meth:`sample_unlabeled_with_prior`.
    prior_source : str
        ``"propagation"`` (the labels carried along the image) or
        ``"interpolation"`` (shape interpolation between painted slices).
    spacings : sequence of 3 float per volume, optional
        Voxel sizes in mm (default 1 mm): how far a propagated structure carries, and the
        painted pixel size (:attr:`pixel_mm`) that ``resize_crops`` resizes crops to.
    affines : sequence of 4 x 4 arrays, optional
        Each volume's voxel → world affine: volumes with no labeled slice then get the
        labeled volumes' priors carried onto them by registration
        (:mod:`napari_action.data.carried_prior`). ``None``: they get no prior.
    carried_confidence : float
        The carried priors' confidence scale (``TrainConfig.unpainted_prior_confidence``).
    resize_crops : bool
        Resize the crops of volumes of another in-plane voxel size to :attr:`pixel_mm`
        (``TrainConfig.resize_crops``); off, every volume's crops are read as stored.

    Attributes
    ----------
    labeled : list of (int, int)
        ``(volume_index, slice_index)`` of every labeled slice.
    unlabeled : list of (int, int)
        ``(volume_index, slice_index)`` of every unlabeled slice.
    pixel_mm : (float, float) or None
        The painted slices' in-plane voxel size (mm; the painted volumes' mean), which prediction
        (and, with ``resize_crops``, training) resizes other volumes' slices to; None without
        ``spacings``.
    """

    def __init__(
        self,
        volumes: Sequence[np.ndarray],
        annotation: SparseAnnotation,
        context: int = 0,
        prior: bool = False,
        prior_source: str = "propagation",
        spacings: Sequence[Sequence[float]] | None = None,
        affines: Sequence[np.ndarray] | None = None,
        carried_confidence: float = 1.0,
        resize_crops: bool = False,
    ) -> None:
        if int(context) < 0:
            raise ValueError(f"context must be >= 0, got {context}.")
        self.context = int(context)
        self.use_prior = bool(prior)
        self.prior_source = prior_source
        self._spacings = None if spacings is None else [tuple(float(x) for x in sp) for sp in spacings]
        self._affines = None if affines is None else [np.asarray(a, dtype=np.float64) for a in affines]
        self._carried_confidence = float(carried_confidence)
        self._resize_crops = bool(resize_crops)
        self.priors: dict[int, SlicePrior] = {}
        self._between: list[tuple[int, int]] | None = None
        self._volumes = [_as_normalized_volume(v, i) for i, v in enumerate(volumes)]
        self._pad_values = [v.pad for v in self._volumes]
        self.update_annotation(annotation)

    @property
    def annotation(self) -> SparseAnnotation:
        """The annotation the pools were built from."""
        return self._annotation

    @property
    def in_channels(self) -> int:
        """Number of input channels, ``2 * context + 1``."""
        return 2 * self.context + 1

    def update_annotation(self, annotation: SparseAnnotation) -> None:
        """Rebuild the pools from a new annotation; the volumes are not touched."""
        shapes = tuple(v.shape for v in self._volumes)
        if tuple(annotation.shapes) != shapes:
            raise ValueError(f"Annotation shapes {annotation.shapes} do not match the volume shapes {shapes}.")
        self._annotation = annotation
        self._axis = annotation.axis
        # (slices, H, W) of each volume along the slicing axis.
        self._moved_shapes = [_moved_shape(v.shape, annotation.axis) for v in self._volumes]
        self.pixel_mm = None if self._spacings is None else painted_pixel_mm(annotation, self._spacings)
        self._frames = [self._frame(v) for v in range(len(self._volumes))]
        n = annotation.num_volumes
        self.labeled = [(v, s) for v in range(n) for s in annotation.labeled_slices(v)]
        self.unlabeled = [(v, s) for v in range(n) for s in annotation.unlabeled_slices(v)]
        self._foreground = _index_foreground(annotation, self.labeled)
        self._supervised = _index_supervised(annotation, self.labeled)
        with_foreground = {k for entries in self._foreground.values() for k, _ in entries}
        self._background_only = [k for k in range(len(self.labeled)) if k not in with_foreground]
        self._with_foreground = sorted(with_foreground)
        if self.use_prior:
            self.priors = build_priors(
                annotation,
                self._volumes,
                self.prior_source,
                self._spacings,
                self.priors,
                self._affines,
                self._carried_confidence,
            )
        self._between = None  # known once the priors are computed (the propagation takes seconds)

    def crop_window(self, volume_index: int, crop: int) -> tuple[int, int]:
        """Rows and columns of a volume's slice read for one ``crop``-pixel training crop."""
        return self._frames[volume_index].window(crop)

    def slice_scale(self, volume_index: int) -> tuple[float, float] | None:
        """How much a volume's slices are enlarged to the training pixel size (None: seen as they are)."""
        return self._frames[volume_index].scale

    def _frame(self, v: int) -> CropFrame:
        if not self._resize_crops or self._spacings is None:
            return CropFrame(self._moved_shapes[v][1:])
        return CropFrame(self._moved_shapes[v][1:], slice_scale(self._spacings[v], self.pixel_mm, self._axis))

    @property
    def between(self) -> list[tuple[int, int]]:
        """Unlabeled slices the prior covers (computing the prior if it was not yet)."""
        if self._between is None:
            self._between = [(v, s) for v, s in self.unlabeled if v in self.priors and self.priors[v].covered[s]]
        return self._between

    def image(self, volume_index: int, slice_index: int) -> np.ndarray:
        """Input channels of one whole slice, ``(C, H, W)`` float32 (a copy)."""
        if not 0 <= slice_index < self._moved_shapes[volume_index][0]:
            raise ValueError(f"Slice {slice_index} out of range for volume {volume_index}.")
        volume, whole = self._volumes[volume_index], slice(None)
        channels = self._channel_indices(volume_index, slice_index)
        return np.stack([volume.region(self._axis, int(index), whole, whole) for index in channels])

    def pad_value(self, volume_index: int) -> float:
        """Image value used outside the volume (its minimum)."""
        return self._pad_values[volume_index]

    def target(self, volume_index: int, slice_index: int) -> np.ndarray:
        """Class-id target ``(H, W)`` int64 of a labeled slice (read-only)."""
        return self._annotation.target(volume_index, slice_index)

    def _channel_indices(self, v: int, s: int) -> np.ndarray:
        offsets = np.arange(-self.context, self.context + 1)
        return np.clip(s + offsets, 0, self._moved_shapes[v][0] - 1)

    # ------------------------------------------------------------- sampling
    def sample_labeled(
        self,
        batch: int,
        crop: int,
        rng: np.random.Generator,
        foreground_prob: float = 0.0,
        background_share: float = BACKGROUND_SLICE_SHARE,
        prior_share: float = 0.0,
        prior_confidence: float = 0.8,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crops of labeled slices.

        With probability ``foreground_prob`` a crop is centred (with jitter of
        up to a quarter crop) on a foreground pixel, chosen class-balanced: a
        foreground class present in the labeled slices uniformly first, then a
        slice containing it, then one of its pixels; small structures are
        otherwise rarely seen. Otherwise a labeled slice is chosen uniformly
        (background-only slices together at most ``background_share`` of the
        time, see :meth:`_pick_labeled_slice`) and cropped at random (scribble mode: around a random painted pixel,
        so that every crop holds supervision). Slices smaller than ``crop``
        are padded (image: :func:`pad_value`, target: ``-1``) at a random
        offset.

        With probability ``prior_share`` a crop comes instead from an
        unlabeled slice the prior covers (:attr:`between`), its target the
        prior's classes where the prior's confidence reaches
        ``prior_confidence`` and ``-1`` (ignored) elsewhere: the propagated
        slices taught like painted ones, where they are sure.

        Returns
        -------
        images : torch.Tensor
            ``(batch, C, crop, crop)`` float32, CPU.
        targets : torch.Tensor
            ``(batch, crop, crop)`` int64, CPU; ``-1`` = ignore.
        """
        _check_sampling(batch, crop)
        if not 0.0 <= foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must be in [0, 1], got {foreground_prob}.")
        if not 0.0 <= background_share <= 1.0:
            raise ValueError(f"background_share must be in [0, 1], got {background_share}.")
        if not self.labeled:
            raise ValueError("No labeled slices to sample from: paint at least one slice.")
        if not 0.0 <= prior_share <= 1.0:
            raise ValueError(f"prior_share must be in [0, 1], got {prior_share}.")
        images, targets = [], []
        for _ in range(batch):
            if prior_share > 0 and rng.random() < prior_share and self.between:
                v, s, y0, x0 = self._prior_window(crop, rng, foreground_prob)
                images.append(self._crop_image(v, s, y0, x0, crop))
                targets.append(self._confident_prior(v, s, y0, x0, crop, prior_confidence))
                continue
            if self._foreground and rng.random() < foreground_prob:
                v, s, y0, x0 = self._foreground_window(crop, rng)
            else:
                v, s, y0, x0 = self._labeled_window(crop, rng, background_share)
            images.append(self._crop_image(v, s, y0, x0, crop))
            targets.append(self._crop_map(v, self.target(v, s), y0, x0, crop, IGNORE_INDEX))
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))

    def sample_unlabeled(self, batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
        """Random crops of unlabeled slices, ``(batch, C, crop, crop)`` float32, CPU."""
        _check_sampling(batch, crop)
        if not self.unlabeled:
            raise ValueError("No unlabeled slices to sample from.")
        images = []
        for _ in range(batch):
            v, s = self.unlabeled[rng.integers(len(self.unlabeled))]
            y0, x0 = self._random_window(v, crop, rng)
            images.append(self._crop_image(v, s, y0, x0, crop))
        return torch.from_numpy(np.stack(images))

    def sample_unlabeled_with_prior(
        self, batch: int, crop: int, rng: np.random.Generator, share: float, decay: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unlabeled crops with the prior of the painted slices (propagation or interpolation).

        About ``share`` of the crops come from slices the prior covers, the
        rest from any unlabeled slice. The prior's weight is its confidence
        times a decay with the distance to the nearest labeled slice,
        ``exp(-d / decay)``.

        Returns
        -------
        images : torch.Tensor
            ``(batch, C, crop, crop)`` float32.
        prior : torch.Tensor
            ``(batch, crop, crop)`` int64 class ids of the prior, ``-1`` where
            there is none (slices it does not cover, padding).
        weight : torch.Tensor
            ``(batch, crop, crop)`` float32 prior weight, 0 where there is none.
        """
        _check_sampling(batch, crop)
        if not self.unlabeled:
            raise ValueError("No unlabeled slices to sample from.")
        images, priors, weights = [], [], []
        for _ in range(batch):
            pool = self.between if self.between and rng.random() < share else self.unlabeled
            v, s = pool[rng.integers(len(pool))]
            y0, x0 = self._random_window(v, crop, rng)
            images.append(self._crop_image(v, s, y0, x0, crop))
            prior, weight = self._prior_crop(v, s, y0, x0, crop, decay)
            priors.append(prior)
            weights.append(weight)
        return (
            torch.from_numpy(np.stack(images)),
            torch.from_numpy(np.stack(priors)),
            torch.from_numpy(np.stack(weights)),
        )

    def _prior_crop(self, v: int, s: int, y0: int, x0: int, crop: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
        found = self.priors.get(v)
        if found is None or not found.covered[s]:
            return np.full((crop, crop), IGNORE_INDEX, np.int64), np.zeros((crop, crop), np.float32)
        prior = self._crop_map(v, found.classes_at(s), y0, x0, crop, IGNORE_INDEX)
        confidence = self._crop_map(v, found.confidence_at(s), y0, x0, crop, 0.0)
        weight = np.where(prior >= 0, confidence * np.exp(-found.distance[s] / decay), 0.0).astype(np.float32)
        return prior, weight

    def _prior_window(self, crop: int, rng: np.random.Generator, foreground_prob: float) -> tuple[int, int, int, int]:
        """Volume, slice and corner of a crop of a slice the prior covers; centred on its foreground at times."""
        v, s = self.between[rng.integers(len(self.between))]
        classes = self.priors[v].classes_at(s)
        present = [c for c in np.unique(classes) if c > 0]
        if present and rng.random() < foreground_prob:
            flat = np.flatnonzero(classes == present[rng.integers(len(present))])
            return (v, s, *self._window_around(v, int(flat[rng.integers(flat.size)]), crop, rng))
        return (v, s, *self._random_window(v, crop, rng))

    def _confident_prior(self, v: int, s: int, y0: int, x0: int, crop: int, threshold: float) -> np.ndarray:
        prior = self.priors[v]
        classes = np.where(prior.confidence_at(s) >= threshold, prior.classes_at(s), IGNORE_INDEX)
        return self._crop_map(v, classes, y0, x0, crop, IGNORE_INDEX)

    def _random_window(self, v: int, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a uniform random crop window (negative = padded)."""
        return self._frames[v].random_corner(crop, rng)

    def _foreground_window(self, crop: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Volume, slice and corner of a crop containing a class-balanced foreground pixel."""
        k, pixel = self._foreground_pixel(rng)
        v, s = self.labeled[k]
        return (v, s, *self._window_around(v, pixel, crop, rng))

    def _foreground_pixel(self, rng: np.random.Generator) -> tuple[int, int]:
        """Index into ``labeled`` and flat pixel of a foreground pixel: class first, then slice, then pixel."""
        classes = sorted(self._foreground)
        entries = self._foreground[classes[rng.integers(len(classes))]]
        k, flat = entries[rng.integers(len(entries))]
        return k, int(flat[rng.integers(flat.size)])

    def _labeled_window(
        self, crop: int, rng: np.random.Generator, background_share: float
    ) -> tuple[int, int, int, int]:
        """Volume, slice and corner of a crop of a randomly chosen labeled slice."""
        k = self._pick_labeled_slice(rng, background_share)
        v, s = self.labeled[k]
        if self._supervised is None:
            return (v, s, *self._random_window(v, crop, rng))
        # Scribbles may cover a small part of the slice: a uniform crop could
        # hold no supervised pixel at all (an empty, NaN-prone loss), so centre
        # on a random painted pixel instead.
        flat = self._supervised[k]
        return (v, s, *self._window_around(v, int(flat[rng.integers(flat.size)]), crop, rng))

    def _pick_labeled_slice(self, rng: np.random.Generator, background_share: float = BACKGROUND_SLICE_SHARE) -> int:
        """Index into ``labeled``: uniform, but background-only slices get at most ``background_share``.

        Users mark empty slices as labeled (above and below an organ, or by
        accepting an empty prediction). Drawn uniformly, 63 such slices next to
        28 painted ones took most crops and Colin27 supervised training
        collapsed (docs/benchmarks.md); capped, they still teach "nothing here".
        """
        n_background = len(self._background_only)
        if n_background == 0 or not self._with_foreground:
            return int(rng.integers(len(self.labeled)))
        share = min(n_background / len(self.labeled), background_share)
        pool = self._background_only if rng.random() < share else self._with_foreground
        return pool[int(rng.integers(len(pool)))]

    def _window_around(self, v: int, flat_pixel: int, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Corner of a crop window containing ``flat_pixel``, jittered by up to a quarter window."""
        return self._frames[v].corner_around(flat_pixel, crop, rng)

    def _crop_image(self, v: int, s: int, y0: int, x0: int, crop: int) -> np.ndarray:
        volume, frame = self._volumes[v], self._frames[v]
        # Only the window is read (in memory) and normalised.
        channels = [
            frame.read(
                lambda rows, cols, i=int(index): volume.region(self._axis, i, rows, cols),
                (y0, x0),
                crop,
                self._pad_values[v],
            )
            for index in self._channel_indices(v, s)
        ]
        return np.stack(channels).astype(np.float32, copy=False)

    def _crop_map(self, v: int, array: np.ndarray, y0: int, x0: int, crop: int, fill: float) -> np.ndarray:
        """A crop of a per-pixel map of one slice (targets, prior classes: nearest; confidences: bilinear)."""
        nearest = not np.issubdtype(array.dtype, np.floating)
        return self._frames[v].read(lambda rows, cols: array[rows, cols], (y0, x0), crop, fill, nearest=nearest)


def _as_normalized_volume(volume: np.ndarray | NormalizedVolume, index: int) -> NormalizedVolume:
    if isinstance(volume, NormalizedVolume):
        return volume
    array = np.asarray(volume)
    if array.ndim != 3:
        raise ValueError(f"Volume {index} must be 3D, got shape {array.shape}.")
    # Already normalised: used as is (no copy for float32, the normal case after normalize_volume).
    return NormalizedVolume(array, None)


def _moved_shape(shape: tuple[int, ...], axis: int) -> tuple[int, int, int]:
    """``(slices, H, W)``: the shape with the slicing axis first."""
    h, w = (n for a, n in enumerate(shape) if a != axis)
    return int(shape[axis]), int(h), int(w)


def _check_sampling(batch: int, crop: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}.")
    if crop < 1:
        raise ValueError(f"crop must be >= 1, got {crop}.")


def _index_foreground(
    annotation: SparseAnnotation, labeled: list[tuple[int, int]]
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Per foreground class: (index into ``labeled``, flat pixel indices) of each slice holding it."""
    index: dict[int, list[tuple[int, np.ndarray]]] = {}
    for k, (v, s) in enumerate(labeled):
        flat_target = annotation.target(v, s).ravel()
        for cls in np.unique(flat_target[flat_target > 0]):
            pixels = np.flatnonzero(flat_target == cls).astype(np.int32)
            index.setdefault(int(cls), []).append((k, pixels))
    return index


def _index_supervised(annotation: SparseAnnotation, labeled: list[tuple[int, int]]) -> list[np.ndarray] | None:
    """Scribble mode: flat indices of the supervised pixels of each labeled slice; else ``None``."""
    if annotation.mode != "scribble":
        return None
    return [np.flatnonzero(annotation.target(v, s).ravel() >= 0).astype(np.int32) for v, s in labeled]
