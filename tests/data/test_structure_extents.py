"""Where each structure starts and ends along the slicing axis, from its propagation."""

from __future__ import annotations

import numpy as np

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import PropagationPrior, build_priors, structure_extents
from napari_action.data.structure_extents import StructureExtents
from tests.data.test_propagation import painted, winding_tube


def test_extents_are_the_first_and_last_slice_of_each_class_in_any_order():
    slices = [
        (7, np.array([[0, 2], [2, 0]])),
        (3, np.array([[1, 0], [0, 0]])),
        (5, np.array([[1, 2], [0, 0]])),
    ]
    extents = StructureExtents.of_slices(slices, num_classes=4)
    np.testing.assert_array_equal(extents.first, [-1, 3, 5, -1])
    np.testing.assert_array_equal(extents.last, [-1, 5, 7, -1])


def test_outside_flags_only_known_structures_beyond_their_ends():
    extents = StructureExtents(first=np.array([-1, 3, 5, -1]), last=np.array([-1, 5, 7, -1]))
    np.testing.assert_array_equal(extents.outside(4), [False, False, True, False])
    np.testing.assert_array_equal(extents.outside(8), [False, True, True, False])
    # Background and a class the prior places nowhere are never bounded.
    assert not extents.outside(0)[[0, 3]].any()


def test_a_propagation_prior_gives_the_slices_its_structure_reaches():
    image, truth = winding_tube(depth=41, start=8, stop=33)
    annotation = SparseAnnotation([painted(truth, [20])], [image.shape], axis=0)
    (prior,) = build_priors(annotation, [NormalizedVolume(image, None)], "propagation").values()
    assert isinstance(prior, PropagationPrior)
    extents = structure_extents(prior)
    reached = [z for z in range(41) if (prior.classes_at(z) == 1).any()]
    assert (extents.first[1], extents.last[1]) == (min(reached), max(reached))
    # The painted cross-section stops the tube well before the volume's ends.
    assert 0 < extents.first[1] < 20 < extents.last[1] < 40


def test_only_a_propagation_bounds_structures():
    image, truth = winding_tube()
    annotation = SparseAnnotation([painted(truth, [4, 16])], [image.shape], axis=0)
    (interpolated,) = build_priors(annotation, [NormalizedVolume(image, None)], "interpolation").values()
    assert structure_extents(interpolated) is None
    assert structure_extents(None) is None


def _cavity_in_wall(size: int = 20, wall: int = 4) -> np.ndarray:
    """Class 2 in the middle of a slice, walled on every side by class 1; class 3 beside it, against background."""
    classes = np.zeros((size, 2 * size), np.int64)
    classes[2 : size - 2, 2 : size - 2] = 1
    classes[2 + wall : size - 2 - wall, 2 + wall : size - 2 - wall] = 2
    classes[5:15, size + 5 : size + 15] = 3
    return classes


def test_the_slices_say_which_structure_walls_another():
    extents = StructureExtents.of_slices([(4, _cavity_in_wall()), (5, _cavity_in_wall())], num_classes=4)
    # The cavity's whole border touches its wall; the wall and the structure beside it touch background.
    assert extents.walls == ((2, 1, 1.0),)
