"""Where along the slicing axis each structure starts and ends, as the painted slices' propagation says.

A 2D network judges every slice on its own: beyond the last slice a structure
really reaches it often goes on finding it in whatever looks alike (on Colin27
with one painted slice, the pallidum on 30 slices above its end, five times
its true size). The propagation stops each structure where its painted
cross-section says it should end, and between two painted slices where one
shows it and the other does not. Its first and last slice per structure are
where prediction starts to watch for the structure's end
(:attr:`TrainConfig.structure_ends`, :func:`~napari_action.inference.postprocess.trim_beyond_extents`).

The same slices say which structure walls another (a ventricle's cavity inside its myocardium): most of
the cavity's border touches the wall. Where a prediction's cavity has lost its wall it has run into
something else as bright (the atrium above a heart's base), and ``cut`` ends it there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_action.data.carried_ends import WALLED

__all__ = ["StructureExtents", "neighbour_counts"]


@dataclass(frozen=True)
class StructureExtents:
    """Per class id, the first and last slice a prior places it on (-1 where it places it nowhere).

    Background (class 0) has no extent: it is never bounded. ``walls`` holds ``(class, walled by, cover)``
    for each structure another one walls on those slices: ``cover`` of its border touches that structure
    (at least :data:`~napari_action.data.carried_ends.WALLED`).
    """

    first: np.ndarray
    last: np.ndarray
    walls: tuple[tuple[int, int, float], ...] = ()

    @classmethod
    def of_slices(cls, slices: Iterable[tuple[int, np.ndarray]], num_classes: int) -> StructureExtents:
        """Extents from ``(z, class ids of slice z)`` pairs, in any order."""
        first = np.full(num_classes, -1, np.int64)
        last = np.full(num_classes, -1, np.int64)
        borders = np.zeros((num_classes, num_classes), np.int64)
        for z, classes in slices:
            classes = np.asarray(classes)
            present = np.bincount(classes.ravel(), minlength=num_classes)[:num_classes] > 0
            present[0] = False
            first[present & ((first < 0) | (first > z))] = z
            last[present & (last < z)] = z
            borders += neighbour_counts(classes, num_classes)
        return cls(first, last, _walls(borders))

    @classmethod
    def of_prior(cls, prior: Any, num_classes: int) -> StructureExtents:
        """Extents over the slices a prior covers (any :class:`~napari_action.data.priors.SlicePrior`;
        typed loosely: that module imports this one)."""
        covered = np.flatnonzero(prior.covered)
        return cls.of_slices(((int(z), prior.classes_at(int(z))) for z in covered), num_classes)

    def outside(self, z: int) -> np.ndarray:
        """``(C,)`` bool: the classes placed somewhere by the prior, but not as far as slice ``z``.

        Classes the prior places nowhere are not flagged: the painted slices say
        nothing about where such a structure is (another volume may have taught
        the network), so the network decides.
        """
        known = self.first >= 0
        return known & ((z < self.first) | (z > self.last))


def neighbour_counts(classes: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts of neighbouring pixel pairs of two different classes in a 2D class-id map:
    ``[c, d]`` is how many of class ``c``'s border edges (4-neighbours) lead to class ``d``."""
    classes = np.asarray(classes, dtype=np.int64)
    counts = np.zeros(num_classes * num_classes, np.int64)
    for here, there in (
        (classes[1:], classes[:-1]),
        (classes[:-1], classes[1:]),
        (classes[:, 1:], classes[:, :-1]),
        (classes[:, :-1], classes[:, 1:]),
    ):
        border = here != there
        counts += np.bincount(here[border] * num_classes + there[border], minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _walls(borders: np.ndarray) -> tuple[tuple[int, int, float], ...]:
    """``(class, walled by, cover)`` of each structure whose border mostly touches one other structure."""
    walls = []
    for c in range(1, len(borders)):
        total = borders[c].sum()
        if total == 0:
            continue
        cover = borders[c] / total
        cover[0] = 0.0  # background walls nothing
        by = int(cover.argmax())
        if cover[by] >= WALLED:
            walls.append((c, by, float(cover[by])))
    return tuple(walls)
