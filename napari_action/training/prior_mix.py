"""How much of a volume's prior a prediction mixes in: all of its own, a share of one carried from another volume."""

from __future__ import annotations

from napari_action.data.carried_prior import CarriedPrior
from napari_action.data.priors import SlicePrior

__all__ = ["CARRIED_SHARE", "prior_share"]

#: How much of its confidence a prior carried from another volume keeps when it is mixed into that
#: volume's prediction. There is no painted slice there to be near, so it is mixed in on every
#: slice: at full confidence it decided every voxel (ACTION's result was the carried labels). A
#: quarter was the best share over three cohorts (a quarter / all of it: warped copies of one brain
#: 0.671 / 0.657, independent hearts 0.731 / 0.640, a second brain 0.637 / 0.612; docs/benchmarks.md,
#: "How much of the carried prior a prediction mixes in").
CARRIED_SHARE = 0.25


def prior_share(prior: SlicePrior | None) -> float:
    """How much of ``prior``'s confidence a prediction mixes in: all of a volume's own,
    :data:`CARRIED_SHARE` of one carried from another volume.

    A prior carried by registration (``TrainConfig.unpainted_prior``) teaches the network at its full
    confidence (the teacher's vote, confident slices as labels) and is the preview on that volume;
    only the prediction's mix counts it for less: the whole-volume prediction and the slices
    streamed while training runs alike.
    """
    return CARRIED_SHARE if isinstance(prior, CarriedPrior) else 1.0
