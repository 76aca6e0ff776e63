"""What a prediction of one of the trainer's own volumes needs besides the network.

A training volume is named by its index: the trainer knows its voxel size, its
prior (painted volumes) and where each structure starts and ends on it, which
an image passed as an array does not carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping

import numpy as np

from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.carried_prior import CarriedPrior
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import SlicePrior, structure_extents
from napari_action.data.structure_extents import StructureExtents
from napari_action.data.unpainted_extents import UnpaintedExtents
from napari_action.inference.predictor import Predictor
from napari_action.progress import PredictionUpdate
from napari_action.training.prior_mix import prior_share
from napari_action.training.volume_turns import VolumeTurns

__all__ = ["checked_volume_index", "predict_training_volume", "prediction_aid", "training_volume_extents"]

#: :func:`prediction_aid`'s words for a volume's own prior mixed in (a painted volume).
PAINTED_AID = "its painted slices mixed in"
#: ... for a prior carried from the painted volumes (``TrainConfig.unpainted_prior = "registration"``).
CARRIED_AID = "the painted labels, carried onto it by registration, mixed in"
#: ... for structures ended where the painted labels reach (``TrainConfig.structure_ends``).
ENDS_AID = "each structure ended where the painted labels reach"


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
    aid = prediction_aid(predictor, prior, kwargs.get("extents"))
    return turns.updates_out(_aided(updates, aid))


def prediction_aid(predictor: Predictor, prior: SlicePrior | None, extents: StructureExtents | None) -> str | None:
    """What besides the network makes a training volume's prediction, in words (:attr:`PredictionUpdate.aided_by`);
    None where the network alone does, as for any other image.

    A saved model holds none of it (neither the painted volumes, their priors, nor where their labels end
    each structure): ``napari-action predict`` gives such a volume the network's mask, and that mask's
    quality score, where napari showed another (a scan nobody painted, its structures cut where the painted
    scan's labels reach: 0.497 in napari, 0.558 in quality.csv). napari's Cohort tab says so on its row.
    """
    if prior is not None and predictor.prior_decay_mm > 0:  # what Predictor.iter_predict mixes in
        return CARRIED_AID if isinstance(prior, CarriedPrior) else PAINTED_AID
    ends = predictor.ending_extents(prior, extents)  # and where it ends each structure
    if predictor.structure_ends != "network" and ends is not None and bool(np.any(ends.first >= 0)):
        return ENDS_AID
    return None


def _aided(updates: Iterable[PredictionUpdate], aid: str | None) -> Iterator[PredictionUpdate]:
    """``updates`` with ``aid`` on the finished one."""
    for update in updates:
        yield dataclasses.replace(update, aided_by=aid) if update.done else update
