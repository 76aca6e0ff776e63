"""Where each structure starts and ends on a volume nobody painted: the painted volumes' propagation, registered.

A volume without painted slices has no propagation of its own to bound its
prediction (:mod:`napari_action.data.structure_extents`). Its anatomy is the
painted volumes' anatomy in another body or scan, so their propagation is
carried onto it by the same affine registration as ``unpainted_prior =
"registration"`` (:mod:`napari_action.data.carried_prior`), and the first and
last slice each structure lands on are its extent there (``TrainConfig.structure_ends``).
A registration that cannot turn one heart into another (carried labels score
0.61 on the phantom cohort) can still say where along the axis a heart starts
and ends.

Registrations are made when a volume's bound is first asked for (seconds per
volume) and kept while the painted images stay the same; a new stroke only
re-carries the labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.carried_prior import CarriedPrior
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import SlicePrior, carried_priors
from napari_action.data.structure_extents import StructureExtents

__all__ = ["UnpaintedExtents"]


class UnpaintedExtents:
    """The structure extents of every volume nobody painted, from the painted volumes' priors registered onto it.

    Parameters
    ----------
    volumes : sequence of NormalizedVolume
        Every training volume, painted or not.
    affines : sequence of 4 x 4 arrays
        Each volume's voxel → world affine (millimetres).
    """

    def __init__(
        self,
        volumes: Sequence[NormalizedVolume],
        affines: Sequence[np.ndarray],
    ):
        self._volumes = list(volumes)
        self._affines = [np.asarray(a, dtype=np.float64) for a in affines]
        self._carried: dict[int, CarriedPrior] = {}
        self._painted: dict[int, SlicePrior] = {}
        self._extents: dict[int, StructureExtents] = {}

    def extents(
        self, index: int, annotation: SparseAnnotation, priors: Mapping[int, SlicePrior]
    ) -> StructureExtents | None:
        """Volume ``index``'s extents; None when it is painted or nothing is painted anywhere.

        ``priors`` are the training volumes' priors by index (the painted ones' propagation,
        and the carried ones where ``unpainted_prior`` made them: those are used as they are).
        """
        if annotation.labeled_slices(index):
            return None
        given = priors.get(index)
        if isinstance(given, CarriedPrior):
            return StructureExtents.of_prior(given, annotation.num_classes)
        painted = {v: p for v, p in priors.items() if annotation.labeled_slices(v) and not isinstance(p, CarriedPrior)}
        if not painted:
            return None
        self._renew(annotation, painted)
        if index not in self._extents:
            self._extents[index] = StructureExtents.of_prior(self._carried[index], annotation.num_classes)
        return self._extents[index]

    def _renew(self, annotation: SparseAnnotation, painted: dict[int, SlicePrior]) -> None:
        """Carry the painted priors again once they changed (a stroke); registrations are kept."""
        if painted.keys() == self._painted.keys() and all(painted[v] is self._painted[v] for v in painted):
            return
        self._carried = carried_priors(annotation, self._volumes, self._affines, painted, self._carried)
        self._painted = dict(painted)
        self._extents = {}
