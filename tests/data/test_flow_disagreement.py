"""Between two painted thick slices: a structure whose two flows disagree is drawn by its painted shapes."""

from __future__ import annotations

import numpy as np

from napari_action.data.flow_disagreement import PaintedShapes

SIZE = 40


def onehot(*discs: tuple[int, float, tuple[float, float]]) -> np.ndarray:
    """(3, SIZE, SIZE) probabilities: background and classes 1, 2, each given as (class, radius, centre)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    probs = np.zeros((3, SIZE, SIZE), np.float32)
    for c, radius, (cy, cx) in discs:
        probs[c][np.hypot(yy - cy, xx - cx) <= radius] = 1.0
    probs[0] = 1.0 - probs[1:].sum(axis=0)
    return probs


def blend(forward: np.ndarray, backward: np.ndarray, t: float = 0.5) -> np.ndarray:
    return (1 - t) * forward + t * backward


def test_a_structure_the_two_flows_carry_to_different_places_is_drawn_by_its_painted_shapes():
    painted = onehot((1, 8, (20, 20)))
    shapes = PaintedShapes(painted, painted, (0.8, 0.8), agreement=0.3)
    # Carried from either side it landed elsewhere: the blend holds it nowhere above one half.
    forward, backward = onehot((1, 8, (20, 8))), onehot((1, 8, (20, 32)))
    blended = blend(forward, backward)
    shapes.where_flows_disagree(blended, forward, backward, 0.5)
    np.testing.assert_array_equal(blended.argmax(axis=0), painted.argmax(axis=0))
    np.testing.assert_allclose(blended.sum(axis=0), 1.0)


def test_flows_that_agree_are_kept_and_so_is_a_structure_painted_on_one_side_only():
    first = onehot((1, 8, (20, 20)), (2, 4, (6, 6)))
    last = onehot((1, 8, (20, 20)))  # structure 2 ends between the two painted slices
    shapes = PaintedShapes(first, last, (0.8, 0.8), agreement=0.3)
    forward = onehot((1, 8, (20, 23)), (2, 4, (6, 6)))  # structure 1 moved a little: the flows agree
    backward = onehot((1, 8, (20, 19)))
    blended = blend(forward, backward)
    before = blended.copy()
    shapes.where_flows_disagree(blended, forward, backward, 0.5)
    np.testing.assert_array_equal(blended, before)
