"""Where along the slicing axis each structure starts and ends, as the painted slices' propagation says.

A 2D network judges every slice on its own: beyond the last slice a structure
really reaches it often goes on finding it in whatever looks alike (on Colin27
with one painted slice, the pallidum on 30 slices above its end, five times
its true size). The propagation stops each structure where its painted
cross-section says it should end, and between two painted slices where one
shows it and the other does not. Its first and last slice per structure are
where prediction starts to watch for the structure's end
(:attr:`TrainConfig.structure_ends`, :func:`~napari_action.inference.postprocess.trim_beyond_extents`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["StructureExtents"]


@dataclass(frozen=True)
class StructureExtents:
    """Per class id, the first and last slice a prior places it on (-1 where it places it nowhere).

    Background (class 0) has no extent: it is never bounded.
    """

    first: np.ndarray
    last: np.ndarray

    @classmethod
    def of_slices(cls, slices: Iterable[tuple[int, np.ndarray]], num_classes: int) -> StructureExtents:
        """Extents from ``(z, class ids of slice z)`` pairs, in any order."""
        first = np.full(num_classes, -1, np.int64)
        last = np.full(num_classes, -1, np.int64)
        for z, classes in slices:
            present = np.bincount(np.asarray(classes).ravel(), minlength=num_classes)[:num_classes] > 0
            present[0] = False
            first[present & ((first < 0) | (first > z))] = z
            last[present & (last < z)] = z
        return cls(first, last)

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
