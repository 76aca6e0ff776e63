"""Tests for napari_action.evaluation.surface_distance: distances in mm on tiny hand-made masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import ndimage

from napari_action.evaluation.surface_distance import average_surface_distance, hd95, surface_distances
from tests.helpers.engine import planes


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("offset", [1, 3])
def test_parallel_planes_distance_is_offset_times_spacing(axis, offset):
    spacing = (2.5, 0.7, 1.3)
    shape = (9, 8, 7)
    pred = planes(shape, axis, [2])
    truth = planes(shape, axis, [2 + offset])
    expected = offset * spacing[axis]
    distances = surface_distances(pred, truth, spacing)
    assert distances.size == 2 * pred.sum()  # thin planes: every voxel is on the surface
    assert_allclose(distances, expected)
    assert_allclose(hd95(pred, truth, spacing), expected)
    assert_allclose(average_surface_distance(pred, truth, spacing), expected)


def test_offset_cubes_hausdorff_is_offset_times_spacing():
    spacing = (3.0, 0.5, 1.0)
    pred = cube((16, 16, 16), (3, 4, 4), 6)
    truth = cube((16, 16, 16), (5, 4, 4), 6)  # shifted by 2 voxels along axis 0
    distances = surface_distances(pred, truth, spacing)
    assert_allclose(distances.max(), 2 * 3.0)
    assert distances.min() == 0.0  # shared side faces
    assert 0 < hd95(pred, truth, spacing) <= 6.0


def test_cube_inside_cube_distances_in_mm():
    spacing = (2.0, 1.0, 1.0)
    outer = cube((14, 14, 14), (2, 2, 2), 10)
    inner = cube((14, 14, 14), (4, 4, 4), 6)  # 2-voxel margin on every side
    distances = surface_distances(outer, inner, spacing)
    # Face centres are 2 voxels apart: 2 mm in-plane, 4 mm along axis 0; corners sqrt(4^2 + 2^2 + 2^2).
    assert_allclose(distances.min(), 2.0)
    assert_allclose(distances.max(), math.sqrt(16 + 4 + 4))


def test_hd95_conventions_pooled_vs_max():
    shape = (10, 10, 10)
    pred = planes(shape, 0, [3])
    truth = planes(shape, 0, [3])
    truth[7, :2, :4] = True  # 8-voxel patch 4 voxels away: 8/108 of truth->pred, 8/208 pooled
    spacing = (1.5, 1.0, 1.0)
    assert hd95(pred, truth, spacing) == 0.0
    assert_allclose(hd95(pred, truth, spacing, convention="max"), 4 * 1.5)
    assert_allclose(average_surface_distance(pred, truth, spacing), 8 * 4 * 1.5 / 208)
    with pytest.raises(ValueError, match="convention"):
        hd95(pred, truth, spacing, convention="median")


def test_surface_distances_empty_masks_give_nan():
    empty = np.zeros((5, 5, 5), bool)
    full = cube((5, 5, 5), (1, 1, 1), 2)
    assert surface_distances(empty, full, (1, 1, 1)).size == 0
    for a, b in [(empty, empty), (empty, full), (full, empty)]:
        assert math.isnan(hd95(a, b, (1, 1, 1)))
        assert math.isnan(average_surface_distance(a, b, (1, 1, 1)))


def test_bounding_box_crop_matches_the_definition_at_the_volume_border():
    spacing = (1.0, 2.0, 0.5)
    pred = cube((8, 8, 8), (0, 0, 0), 5)  # touches three volume faces
    truth = cube((8, 8, 8), (0, 1, 2), 5)
    structure = ndimage.generate_binary_structure(3, 1)

    def surface(m):
        return m & ~ndimage.binary_erosion(m, structure, border_value=0)

    sp, st = surface(pred), surface(truth)
    reference = np.concatenate(
        [
            ndimage.distance_transform_edt(~st, sampling=spacing)[sp],
            ndimage.distance_transform_edt(~sp, sampling=spacing)[st],
        ]
    )
    assert_allclose(np.sort(surface_distances(pred, truth, spacing)), np.sort(reference))


@pytest.mark.parametrize(
    ("spacing", "match"),
    [((1, 1), "one value per axis"), ((1, 0, 1), "positive"), ((1, -2, 1), "positive"), ("abc", "sequence")],
)
def test_surface_distances_rejects_bad_spacing(spacing, match):
    mask = cube((4, 4, 4), (1, 1, 1), 2)
    with pytest.raises(ValueError, match=match):
        surface_distances(mask, mask, spacing)
