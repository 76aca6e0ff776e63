"""The prior on unlabeled slices: what the painted slices say about their neighbours.

Two sources, one interface (:class:`SlicePrior`):

``"propagation"`` (default)
    The painted labels carried along the image's own motion
    (:mod:`napari_action.data.propagation`), between painted slices and beyond
    them until each structure fades. Costs seconds per volume, computed once
    (in the training thread, run by run, so a front end can show it as it comes).
``"interpolation"``
    Shape interpolation between painted slices
    (:mod:`napari_action.data.interpolation`): no image, computed per slice on
    demand; nothing outside the painted range. For binary masks of structures
    with no image contrast.

The trainer mixes the prior into the teacher's pseudo-labels, the predictor
into its output near painted slices, and the widget shows it before training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch

from napari_action.config import PRIOR_SOURCES
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.carried_prior import CarriedPrior, CarrySource
from napari_action.data.interpolation import annotation_interpolator
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.propagation import (
    LabelPropagation,
    Piece,
    PieceRun,
    PropagatedRun,
    PropagationSettings,
    iter_pieces,
    slicing_spacing,
)
from napari_action.data.registration import RegistrationSettings
from napari_action.data.structure_extents import StructureExtents

__all__ = [
    "PRIOR_SOURCES",
    "PropagationPrior",
    "SlicePrior",
    "build_priors",
    "iter_prior_runs",
    "structure_extents",
]

#: Slices over which a shape interpolation's preview confidence halves, away from a labeled slice.
INTERPOLATION_HALF_DISTANCE = 4.0


class SlicePrior(Protocol):
    """Class ids and their confidence per slice of one volume, slicing axis first."""

    @property
    def covered(self) -> np.ndarray:
        """``(S,)`` bool: the prior says something about the slice."""

    @property
    def distance(self) -> np.ndarray:
        """``(S,)`` int: slices to the nearest labeled slice."""

    def classes_at(self, z: int) -> np.ndarray:
        """``(H, W)`` int64 class ids of slice ``z``."""

    def confidence_at(self, z: int) -> np.ndarray:
        """``(H, W)`` float32 confidence in [0, 1] of slice ``z``."""


class PropagationPrior:
    """The propagation of one volume's labeled slices, computed once, when first needed.

    :meth:`iter_runs` computes it run by run (and keeps every run), so a
    front end can show the first slices while the rest is computed; any other
    access computes what is left at once.
    """

    def __init__(
        self,
        volume: NormalizedVolume,
        axis: int,
        targets: dict[int, np.ndarray],
        num_classes: int,
        spacing: Sequence[float],
        settings: PropagationSettings | None = None,
        reuse: PropagationPrior | None = None,
    ):
        shape = volume.shape
        self._num_slices = int(shape[axis])
        self._in_plane = tuple(int(shape[a]) for a in range(3) if a != axis)
        self._spacing = slicing_spacing(spacing, axis)
        self._volume, self._axis = volume, axis
        self._targets = {int(s): np.asarray(t) for s, t in targets.items()}
        self._num_classes = int(num_classes)
        self._settings = settings or PropagationSettings()
        self._result = LabelPropagation(self._num_slices, self._in_plane, sorted(self._targets))
        self._runs: Iterator[tuple[Piece, PropagatedRun]] | None = None
        self._done = False
        # The slice ranges of every piece computed to its end, offered to the next prior of this
        # volume (their labels are read back from the result: nothing is held twice).
        self._pieces: dict[Piece, list[tuple[int, int]]] = {}
        # The pieces being computed (several at a time when threads compute them side by side).
        self._partial: dict[Piece, list[tuple[int, int]]] = {}
        self._known = reuse.pieces_valid_for(self) if reuse is not None else {}
        self._extents: StructureExtents | None = None

    def same_targets(self, targets: dict[int, np.ndarray], num_classes: int) -> bool:
        """True when ``targets`` are what this prior propagates (nothing to recompute)."""
        if num_classes != self._num_classes or set(targets) != set(self._targets):
            return False
        return all(np.array_equal(targets[s], self._targets[s]) for s in targets)

    def pieces_valid_for(self, other: PropagationPrior) -> dict[Piece, Iterator[PropagatedRun]]:
        """The pieces computed here that ``other`` would compute the same: same image and settings,
        same labels on the painted slices each depends on."""
        same_setup = (
            other._volume is self._volume
            and other._axis == self._axis
            and other._num_classes == self._num_classes
            and other._spacing == self._spacing
            and other._settings == self._settings
        )
        if not same_setup:
            return {}
        return {
            # Read back only when the other prior reaches the piece.
            piece: (self._stored_run(start, stop) for start, stop in ranges)
            for piece, ranges in self._pieces.items()
            if self._same_labels(other, piece.painted)
        }

    def _same_labels(self, other: PropagationPrior, slices: Sequence[int]) -> bool:
        return all(s in other._targets and np.array_equal(other._targets[s], self._targets[s]) for s in slices)

    def _stored_run(self, start: int, stop: int) -> PropagatedRun:
        classes = np.stack([self._result.classes_at(z) for z in range(start, stop)])
        confidence = np.stack([self._result.confidence_at(z) for z in range(start, stop)])
        return PropagatedRun(start, classes, confidence)

    def iter_runs(self) -> Iterator[PropagatedRun]:
        """Every run of the prior: those already computed first (read back), then the rest as it is computed.

        A later caller (the preview asked for after training touched the prior) sees the whole
        prior, not only what is left to compute.
        """
        for start, stop in self._computed_ranges():
            yield self._stored_run(start, stop)
        yield from self._compute_rest()

    def _compute_rest(self) -> Iterator[PropagatedRun]:
        """Compute what is left, yielding each run as it is kept (pieces still valid from before are reused)."""
        if self._done:
            return
        if self._runs is None:
            whole = slice(None)
            self._runs = iter_pieces(
                lambda z: self._volume.region(self._axis, z, whole, whole),
                self._num_slices,
                self._targets,
                self._num_classes,
                self._spacing,
                self._settings,
                known=self._known,
                # The cores the caller gave torch (--threads, the widget's threads): nothing else runs
                # while a prior is first computed, and the flows release the GIL.
                workers=torch.get_num_threads(),
            )
        for made in self._runs:
            self._note(made)
            if made.run is not None:
                self._result.store(made.run)
                yield made.run
        self._done = True

    def _computed_ranges(self) -> list[tuple[int, int]]:
        """Slice ranges of every run computed so far, in the order they were computed."""
        done = [r for ranges in self._pieces.values() for r in ranges]
        return done + [r for ranges in self._partial.values() for r in ranges]

    def _note(self, made: PieceRun) -> None:
        """Track the runs of each piece; a piece whose end came is whole, and offered to the next prior."""
        ranges = self._partial.setdefault(made.piece, [])
        if made.run is None:
            self._pieces[made.piece] = self._partial.pop(made.piece)
        else:
            ranges.append((made.run.start, made.run.stop))

    @property
    def result(self) -> LabelPropagation:
        """The whole propagation (computed now if it was not yet)."""
        for _ in self._compute_rest():
            pass
        return self._result

    @property
    def covered(self) -> np.ndarray:
        return self.result.covered

    @property
    def distance(self) -> np.ndarray:
        return self.result.distance

    def classes_at(self, z: int) -> np.ndarray:
        return self.result.classes_at(z)

    def confidence_at(self, z: int) -> np.ndarray:
        return self.result.confidence_at(z)

    @property
    def extents(self) -> StructureExtents:
        """Each structure's first and last propagated slice (the whole propagation computed now if it was not yet)."""
        if self._extents is None:
            self._extents = StructureExtents.of_prior(self, self._num_classes)
        return self._extents


def structure_extents(prior: SlicePrior | None) -> StructureExtents | None:
    """Where a volume's prior starts and ends each structure, if it is the propagation of its painted slices.

    Only the propagation stops a structure by what the image and the painted
    cross-section say; a shape interpolation knows nothing beyond the painted
    range, and labels carried from another volume were not measured as bounds.
    """
    return prior.extents if isinstance(prior, PropagationPrior) else None


def build_priors(
    annotation: SparseAnnotation,
    volumes: Sequence[NormalizedVolume],
    source: str,
    spacings: Sequence[Sequence[float]] | None = None,
    previous: dict[int, SlicePrior] | None = None,
    affines: Sequence[np.ndarray] | None = None,
    carried_confidence: float = 1.0,
    registration: RegistrationSettings | None = None,
) -> dict[int, SlicePrior]:
    """The prior of every volume with labeled slices (slice mode only; scribbles leave pixels unknown).

    ``previous`` priors whose labeled slices did not change are kept, so that a
    stroke on one volume does not recompute the propagation of the others; on the
    volume it touched, only the pieces next to the changed slices are recomputed.

    With ``affines`` (each volume's voxel → world, millimetres), every volume with no labeled
    slice gets the labeled volumes' priors carried onto it by registration
    (:class:`~napari_action.data.carried_prior.CarriedPrior`), its confidence scaled by
    ``carried_confidence``, registered with ``registration`` (the shipped settings if none).
    """
    if source not in PRIOR_SOURCES:
        raise ValueError(f"Unknown prior source {source!r}; choose one of {PRIOR_SOURCES}.")
    if annotation.mode != "slice":
        return {}
    priors: dict[int, SlicePrior] = {}
    for v in range(annotation.num_volumes):
        slices = annotation.labeled_slices(v)
        if not slices:
            continue
        if source == "interpolation":
            found = annotation_interpolator(annotation, v)
            if found is not None and found.gap.any():
                priors[v] = found
            continue
        targets = {s: annotation.target(v, s) for s in slices}
        kept = (previous or {}).get(v)
        if isinstance(kept, PropagationPrior) and kept.same_targets(targets, annotation.num_classes):
            priors[v] = kept
            continue
        spacing = (1.0, 1.0, 1.0) if spacings is None else spacings[v]
        reuse = kept if isinstance(kept, PropagationPrior) else None
        priors[v] = PropagationPrior(volumes[v], annotation.axis, targets, annotation.num_classes, spacing, reuse=reuse)
    if affines is not None and priors:
        priors |= carried_priors(annotation, volumes, affines, priors, previous or {}, carried_confidence, registration)
    return priors


def carried_priors(
    annotation: SparseAnnotation,
    volumes: Sequence[NormalizedVolume],
    affines: Sequence[np.ndarray],
    painted: dict[int, SlicePrior],
    previous: dict[int, SlicePrior],
    confidence: float = 1.0,
    registration: RegistrationSettings | None = None,
) -> dict[int, CarriedPrior]:
    """The painted volumes' priors carried onto every volume without labeled slices."""
    if len(affines) != len(volumes):
        raise ValueError(f"Got {len(affines)} affines for {len(volumes)} volumes; give one per volume.")
    # One source per painted volume, shared: its prior is read into a class map once, not once per target.
    sources = [CarrySource(volumes[v], affines[v], prior, annotation.axis) for v, prior in sorted(painted.items())]
    carried = {}
    for v in range(annotation.num_volumes):
        if v in painted or annotation.labeled_slices(v):
            continue
        kept = previous.get(v)
        reuse = kept if isinstance(kept, CarriedPrior) else None
        carried[v] = CarriedPrior(
            volumes[v],
            affines[v],
            annotation.axis,
            sources,
            annotation.num_classes,
            settings=registration,
            confidence_scale=confidence,
            reuse=reuse,
        )
    return carried


def iter_prior_runs(prior: SlicePrior) -> Iterator[PropagatedRun]:
    """A prior as runs of consecutive slices: the propagation as it is computed, an interpolation at once."""
    if isinstance(prior, PropagationPrior):
        yield from prior.iter_runs()
        return
    span = _covered_span(prior)
    if span is None:
        return
    if isinstance(prior, CarriedPrior):
        yield from _carried_runs(prior, *span)
        return
    first, last = span
    classes = np.stack([prior.classes_at(z) for z in range(first, last)])
    # Interpolated shapes have no confidence of their own: it halves every few slices from a labeled one.
    weight = 0.5 ** (prior.distance[first:last] / INTERPOLATION_HALF_DISTANCE)
    confidence = np.broadcast_to(weight[:, None, None], classes.shape).astype(np.float32)
    yield PropagatedRun(first, classes.astype(np.int64), confidence)


def _covered_span(prior: SlicePrior) -> tuple[int, int] | None:
    """First covered slice and one past the last; None when the prior covers nothing."""
    covered = np.flatnonzero(prior.covered)
    if covered.size == 0:
        return None
    return int(covered[0]), int(covered[-1]) + 1


#: Slices per run of a carried prior's preview: the first ones show while the rest are carried.
CARRIED_RUN_SLICES = 16


def _carried_runs(prior: CarriedPrior, first: int, last: int) -> Iterator[PropagatedRun]:
    """A carried prior from ``first`` to ``last`` in runs of consecutive slices, with its own confidence."""
    for start in range(first, last, CARRIED_RUN_SLICES):
        stop = min(start + CARRIED_RUN_SLICES, last)
        classes = np.stack([prior.classes_at(z) for z in range(start, stop)])
        confidence = np.stack([prior.confidence_at(z) for z in range(start, stop)])
        yield PropagatedRun(start, classes, confidence)
