"""What a prediction of one of the trainer's own volumes needs besides the network.

A training volume is named by its index: the trainer knows its voxel size, its
prior (painted volumes) and where each structure starts and ends on it, which
an image passed as an array does not carry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import SlicePrior, structure_extents
from napari_action.data.structure_extents import StructureExtents
from napari_action.data.unpainted_extents import UnpaintedExtents
from napari_action.inference.predictor import Predictor
from napari_action.progress import PredictionUpdate
from napari_action.training.prior_mix import prior_share
from napari_action.training.volume_turns import VolumeTurns

__all__ = ["checked_volume_index", "predict_training_volume", "training_volume_extents"]


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


def predict_training_volume(
    predictor: Predictor,
    image: NormalizedVolume,
    index: int,
    prior: SlicePrior | None,
    turns: VolumeTurns,
    **kwargs,
) -> Iterator[PredictionUpdate]:
    """Training volume ``index`` predicted whole with its prior mixed in (:func:`prior_share`), read in the training
    voxel order and given back in its stored one; ``kwargs`` go to :meth:`Predictor.iter_predict`."""
    whole = image.whole()  # iter_predict keeps whole volumes anyway
    share = prior_share(prior)
    updates = predictor.iter_predict(
        whole, normalized=True, volume_index=index, prior=prior, prior_share=share, **kwargs
    )
    return turns.updates_out(updates)
