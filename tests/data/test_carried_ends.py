"""The small rules of :mod:`napari_action.data.carried_ends`: what counts as thick slices, and the fade."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.carried_ends import THICK_SLICES, fade, has_thick_slices, painted_radius, thickness_ratio


@pytest.mark.parametrize(
    ("spacing", "axis", "ratio"),
    [
        ((8.0, 1.5, 1.5), 0, 8.0 / 1.5),
        ((1.5, 1.5, 8.0), 2, 8.0 / 1.5),
        ((1.5, 8.0, 1.5), 2, 1.0),  # thick along another axis: these slices are not thick
        ((6.5, 0.78, 0.5), 0, 6.5 / 0.5),  # the finest in-plane side counts
        ((2.0, 4.0, 4.0), 0, 0.5),  # slices thinner than their pixels: the slicing axis is not in-plane
    ],
)
def test_thickness_ratio_compares_the_slicing_axis_with_the_finest_in_plane_pixel(spacing, axis, ratio):
    assert thickness_ratio(spacing, axis) == pytest.approx(ratio)


def test_thick_slices_start_at_the_threshold():
    assert has_thick_slices((THICK_SLICES, 1.0, 1.0), 0)
    assert not has_thick_slices((THICK_SLICES - 0.01, 1.0, 1.0), 0)
    assert not has_thick_slices((1.0, 1.0, 1.0), 1)


def test_a_structure_keeps_half_its_weight_at_its_half_way_distance_and_background_takes_the_rest():
    probs = np.zeros((3, 4, 4), np.float32)
    probs[1, :2] = 1.0
    probs[2, 2:] = 1.0
    half_way = np.array([0.0, 4.0, 0.0])  # class 2 has no radius: it is gone at any distance
    faded = fade(probs, 4.0, half_way)
    np.testing.assert_allclose(faded[1, :2], 0.5)
    assert not faded[2].any()
    np.testing.assert_allclose(faded.sum(axis=0), 1.0)
    np.testing.assert_allclose(fade(probs, 0.0, half_way)[1], probs[1])


def test_painted_radius_is_that_of_a_disc_of_the_painted_area_in_mm():
    probs = np.zeros((3, 10, 10), np.float32)
    probs[1, :5, :5] = 1.0  # 25 pixels of 2 x 2 mm: 100 mm^2
    radius = painted_radius(probs, (2.0, 2.0))
    assert radius[1] == pytest.approx(np.sqrt(100.0 / np.pi))
    assert radius[0] == 0.0 and radius[2] == 0.0
