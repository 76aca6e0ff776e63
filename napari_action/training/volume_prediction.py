"""What a prediction of one of the trainer's own volumes needs besides the network.

A training volume is named by its index: the trainer knows its voxel size, its
prior (painted volumes) and where each structure starts and ends on it, which
an image passed as an array does not carry.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.priors import SlicePrior, structure_extents
from napari_action.data.structure_extents import StructureExtents
from napari_action.data.unpainted_extents import UnpaintedExtents

__all__ = ["checked_volume_index", "training_volume_extents"]


def checked_volume_index(index: int | np.integer, count: int) -> int:
    """``index`` as an int when the trainer has that volume; else an error saying how to predict another image."""
    index = int(index)
    if not 0 <= index < count:
        raise IndexError(
            f"The trainer has {count} image(s), numbered 0 to {count - 1}; got {index}. "
            "To predict another image, pass its array."
        )
    return index


def training_volume_extents(
    config: TrainConfig,
    index: int,
    priors: Mapping[int, SlicePrior],
    annotation: SparseAnnotation,
    unpainted: UnpaintedExtents,
) -> StructureExtents | None:
    """Where each structure starts and ends on training volume ``index`` (``config.structure_ends``).

    On a painted volume where its own propagation places it; on one nobody
    painted where the painted volumes' propagation lands once registered onto
    it (registering it the first time); None when nothing bounds the structures there.
    """
    if config.prior_source != "propagation" or config.structure_ends == "network":
        return None
    own = structure_extents(priors.get(index))
    if own is not None:
        return own
    return unpainted.extents(index, annotation, priors)
