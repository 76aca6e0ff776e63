"""The painted volumes' prior carried onto a volume nobody painted, through an affine registration.

A volume opened beside the painted ones has no prior of its own: nothing was painted on it. Its
anatomy is, though, the painted volumes' anatomy seen through another head, scanner and field of
view, so each painted volume's prior (the labels propagated from its painted slices,
:mod:`napari_action.data.priors`) is registered onto it (:mod:`napari_action.data.registration`,
affine, mutual information) and read there by nearest neighbour. Several painted volumes vote,
each with its own confidence. The result is a :class:`~napari_action.data.priors.SlicePrior`
like any other: the preview on that volume, the teacher's vote, confident slices as labeled data.

Slices are carried on demand (a gather per slice, a few milliseconds) and the last few are kept,
so nothing of the size of the volume is stored besides each painted volume's prior as a class map.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from napari_action.data.annotations import IGNORE_INDEX
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.registration import AffineRegistration, ImagePyramid, RegistrationSettings, register_pyramids

__all__ = ["CarriedPrior", "CarrySource", "axis_first_affine"]

#: Carried slices kept (classes and confidence of a 512² slice: 1.5 MiB each).
CACHED_SLICES = 32
#: Every how many pixels, along each in-plane axis, a slice is probed to tell whether it is covered.
COVERAGE_STRIDE = 4


def axis_first_affine(affine: np.ndarray, axis: int) -> np.ndarray:
    """The affine of the same volume indexed slicing axis first, ``(slice, row, column)``."""
    order = [axis] + [a for a in range(3) if a != axis]
    permutation = np.zeros((4, 4))
    for position, own in enumerate(order):
        permutation[own, position] = 1.0
    permutation[3, 3] = 1.0
    return np.asarray(affine, dtype=np.float64) @ permutation


class CarrySource:
    """A painted volume, its voxel → world affine and its prior along the slicing axis.

    The prior is read into a class map and a confidence map (slicing axis first; -1 and 0 where it
    says nothing) when first needed, once, and shared by every volume it is carried onto.
    """

    def __init__(self, volume: NormalizedVolume, affine: np.ndarray, prior: object, axis: int):
        self.volume = volume
        self.affine = np.asarray(affine, dtype=np.float64)
        self.prior = prior  # a SlicePrior (typed loosely: priors.py imports this module)
        self.axis = int(axis)
        self.axis_first_affine = axis_first_affine(self.affine, self.axis)
        self.pyramid = ImagePyramid(volume, self.affine)  # coarse levels shared by every registration onto it
        self._maps: tuple[np.ndarray, np.ndarray] | None = None

    def _class_maps(self) -> tuple[np.ndarray, np.ndarray]:
        if self._maps is None:
            covered = np.asarray(self.prior.covered)
            in_plane = tuple(n for a, n in enumerate(self.volume.shape) if a != self.axis)
            classes = np.full((covered.size, *in_plane), IGNORE_INDEX, dtype=np.int8)
            confidence = np.zeros((covered.size, *in_plane), dtype=np.float16)
            for z in np.flatnonzero(covered):
                classes[z] = self.prior.classes_at(int(z))
                confidence[z] = self.prior.confidence_at(int(z))
            self._maps = classes, confidence
        return self._maps

    def read(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Classes and confidence at ``(3, ...)`` axis-first voxel positions (nearest voxel); -1 and 0 outside."""
        classes, confidence = self._class_maps()
        index = np.rint(points).astype(np.int64)
        shape = np.asarray(classes.shape).reshape(3, *([1] * (points.ndim - 1)))
        inside = np.all((index >= 0) & (index < shape), axis=0)
        clipped = tuple(np.clip(index[k], 0, classes.shape[k] - 1) for k in range(3))
        return (
            np.where(inside, classes[clipped], IGNORE_INDEX),
            np.where(inside, confidence[clipped].astype(np.float32), 0.0),
        )


class CarriedPrior:
    """The prior of one unpainted volume, carried from every painted volume (a vote); computed when first needed.

    Parameters
    ----------
    target : NormalizedVolume
        The unpainted volume.
    target_affine : np.ndarray
        Its voxel → world affine (millimetres), in its own axis order.
    axis : int
        The slicing axis (every volume is sliced along the same array axis).
    sources : sequence of CarrySource
        The painted volumes and their priors.
    num_classes : int
        Classes of the annotation (background 0).
    settings : RegistrationSettings, optional
    confidence_scale : float
        The carried confidence is the painted volumes' vote times this: a registration carries an
        anatomy only as far as another head or heart resembles it.
    reuse : CarriedPrior, optional
        A previous prior of the same volume: registrations to the same painted volumes are kept
        (they depend on the images only), so a new stroke re-carries labels without re-registering.
    """

    def __init__(
        self,
        target: NormalizedVolume,
        target_affine: np.ndarray,
        axis: int,
        sources: Sequence[CarrySource],
        num_classes: int,
        settings: RegistrationSettings | None = None,
        confidence_scale: float = 1.0,
        reuse: CarriedPrior | None = None,
    ):
        if not sources:
            raise ValueError("A carried prior needs at least one painted volume to carry from.")
        self._target, self._axis = target, int(axis)
        self._target_affine = np.asarray(target_affine, dtype=np.float64)
        self._pyramid = ImagePyramid(target, self._target_affine)
        self._sources = list(sources)
        self._num_classes = int(num_classes)
        self._settings = settings or RegistrationSettings()
        self._scale = float(confidence_scale)
        self._registrations: dict[int, AffineRegistration] = {}
        if reuse is not None and reuse._target is target:
            # Keyed by the painted volume itself: the same image registers the same way.
            self._registrations = {k: r for k, r in reuse._registrations.items() if k in self._source_keys()}
        self._maps: list[np.ndarray] | None = None
        self._covered: np.ndarray | None = None
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        shape = target.shape
        self._num_slices = int(shape[axis])
        self._in_plane = tuple(int(shape[a]) for a in range(3) if a != axis)

    @property
    def sources(self) -> list[CarrySource]:
        """The painted volumes this prior carries from."""
        return list(self._sources)

    def _source_keys(self) -> set[int]:
        return {id(source.volume) for source in self._sources}

    @property
    def registrations(self) -> list[AffineRegistration]:
        """One registration per painted volume (computed now if they were not yet)."""
        self._prepare()
        return [self._registrations[id(source.volume)] for source in self._sources]

    def _prepare(self) -> None:
        if self._maps is not None:
            return
        for source in self._sources:
            key = id(source.volume)
            if key not in self._registrations:
                self._registrations[key] = register_pyramids(self._pyramid, source.pyramid, self._settings)
        target = axis_first_affine(self._target_affine, self._axis)
        # Target (slice, row, column) → each painted volume's (slice, row, column).
        self._maps = [
            np.linalg.inv(source.axis_first_affine) @ self._registrations[id(source.volume)].matrix @ target
            for source in self._sources
        ]

    def _carry(self, z: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Classes and confidence of target slice ``z`` (every ``stride``-th pixel): the painted volumes' vote."""
        self._prepare()
        rows, cols = np.meshgrid(
            np.arange(0, self._in_plane[0], stride), np.arange(0, self._in_plane[1], stride), indexing="ij"
        )
        scores = np.zeros((self._num_classes, *rows.shape), dtype=np.float32)
        for mapping, source in zip(self._maps, self._sources, strict=True):
            points = np.stack(
                [mapping[k, 0] * z + mapping[k, 1] * rows + mapping[k, 2] * cols + mapping[k, 3] for k in range(3)]
            )
            classes, confidence = source.read(points)
            for c in range(self._num_classes):
                scores[c] += np.where(classes == c, confidence, 0.0)
        # Where no painted volume says anything: background with confidence 0, as every prior reads "nothing".
        classes = scores.argmax(0).astype(np.int64)
        # Unknown or disagreeing painted volumes lower the confidence: the vote is shared by all of them.
        confidence = scores.max(0) * (self._scale / len(self._maps))
        return classes, confidence.astype(np.float32)

    @property
    def covered(self) -> np.ndarray:
        """``(S,)`` bool: slices where some painted volume's prior lands."""
        if self._covered is None:
            probes = [self._carry(z, COVERAGE_STRIDE)[1] for z in range(self._num_slices)]
            self._covered = np.array([(p > 0).any() for p in probes])
        return self._covered

    @property
    def distance(self) -> np.ndarray:
        """``(S,)`` zeros: a carried slice is as near to labels as a painted one; its confidence says how sure it is."""
        return np.zeros(self._num_slices, dtype=np.int64)

    def _slice(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        z = int(z)
        if z in self._cache:
            self._cache.move_to_end(z)
            return self._cache[z]
        found = self._carry(z)
        self._cache[z] = found
        if len(self._cache) > CACHED_SLICES:
            self._cache.popitem(last=False)
        return found

    def classes_at(self, z: int) -> np.ndarray:
        return self._slice(z)[0]

    def confidence_at(self, z: int) -> np.ndarray:
        return self._slice(z)[1]
