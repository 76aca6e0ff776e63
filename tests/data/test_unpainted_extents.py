"""Structure extents on a volume nobody painted: the painted volume's propagation registered onto it."""

from __future__ import annotations

import numpy as np

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import build_priors, structure_extents
from napari_action.data.unpainted_extents import UnpaintedExtents
from tests.data.test_propagation import painted, winding_tube

SHIFT = 5  # slices the unpainted copy's anatomy sits further along the slicing axis


def _two_volumes():
    """The winding tube painted on one slice, and an unpainted copy whose tube sits ``SHIFT`` slices later."""
    image, truth = winding_tube(depth=48, start=10, stop=34)
    moved = np.roll(image, SHIFT, axis=0)
    moved[:SHIFT] = image[0]  # background slices come in at the start
    volumes = [NormalizedVolume(image, None), NormalizedVolume(moved, None)]
    annotation = SparseAnnotation([painted(truth, [22]), None], [image.shape] * 2, axis=0)
    return volumes, annotation


def test_the_unpainted_volume_gets_the_painted_extents_where_its_anatomy_is():
    volumes, annotation = _two_volumes()
    priors = build_priors(annotation, volumes, "propagation")
    bounds = UnpaintedExtents(volumes, [np.eye(4)] * 2)
    own = structure_extents(priors[0])
    carried = bounds.extents(1, annotation, priors)
    assert abs(carried.first[1] - (own.first[1] + SHIFT)) <= 1
    assert abs(carried.last[1] - (own.last[1] + SHIFT)) <= 1
    assert bounds.extents(1, annotation, priors) is carried  # kept until the painted priors change
    assert bounds.extents(0, annotation, priors) is None  # a painted volume is bounded by its own prior


def test_without_a_painted_prior_nothing_is_bounded():
    # Scribbles (or a volume whose prior is not yet known) give no painted prior to register.
    volumes, annotation = _two_volumes()
    assert UnpaintedExtents(volumes, [np.eye(4)] * 2).extents(1, annotation, {}) is None
