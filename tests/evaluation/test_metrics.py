"""Tests for napari_action.evaluation.metrics: known values on tiny hand-made volumes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import ndimage

from napari_action.evaluation.metrics import (
    average_surface_distance,
    dice_per_class,
    evaluate,
    hd95,
    surface_distances,
)


def planes(shape, axis, positions):
    """Binary volume with full one-voxel-thick planes at ``positions`` along ``axis``."""
    mask = np.zeros(shape, dtype=bool)
    index = [slice(None)] * len(shape)
    for p in positions:
        index[axis] = p
        mask[tuple(index)] = True
    return mask


def cube(shape, start, size):
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


# --------------------------------------------------------------------------- Dice
def test_dice_known_values():
    pred = np.array([1, 1, 0, 0, 2, 2, 0, 0])
    truth = np.array([1, 0, 0, 0, 2, 2, 2, 2])
    dice = dice_per_class(pred, truth)
    assert list(dice) == [1, 2]
    assert_allclose(dice[1], 2 * 1 / (2 + 1))
    assert_allclose(dice[2], 2 * 2 / (2 + 4))


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        ([0, 0, 0], [0, 0, 0], math.nan),  # both empty: excluded
        ([3, 0, 0], [0, 0, 0], 0.0),  # false positive on an empty truth (docs/method.md, difference 9: not 1)
        ([0, 0, 0], [3, 3, 0], 0.0),  # missed class
        ([3, 3, 0], [3, 3, 0], 1.0),
    ],
)
def test_dice_empty_class_rules(pred, truth, expected):
    value = dice_per_class(np.array(pred), np.array(truth), class_values=[3])[3]
    if math.isnan(expected):
        assert math.isnan(value)
    else:
        assert value == expected


def test_dice_background_only_when_asked():
    pred = np.array([[0, 1], [1, 1]])
    truth = np.array([[0, 0], [1, 1]])
    assert 0 not in dice_per_class(pred, truth)
    with_background = dice_per_class(pred, truth, class_values=[0, 1])
    assert_allclose(with_background[0], 2 * 1 / (1 + 2))
    assert_allclose(with_background[1], 2 * 2 / (3 + 2))


def test_dice_accepts_whole_floats_and_rejects_fractions():
    truth = np.array([0, 1, 2])
    assert dice_per_class(truth.astype(np.float32), truth) == {1: 1.0, 2: 1.0}
    with pytest.raises(ValueError, match="pred labels must be whole numbers"):
        dice_per_class(np.array([0.0, 1.5, 2.0]), truth)
    with pytest.raises(ValueError, match="same shape"):
        dice_per_class(np.zeros((2, 3), int), np.zeros((3, 2), int))


# --------------------------------------------------------------------------- surface distances
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


# --------------------------------------------------------------------------- evaluate
def test_evaluate_rows_and_means():
    truth = np.zeros((6, 10, 10), np.uint8)
    truth[:, 2:5, 2:5] = 1
    truth[:, 6:9, 6:9] = 2
    pred = truth.copy()
    pred[:, 6:9, 6:9] = 0  # class 2 missed entirely
    pred[0, 0, 0] = 4  # class 4 only predicted
    result = evaluate(pred, truth, (2.0, 1.0, 1.0), class_names={1: "liver", 2: "tumour"})
    assert [r["value"] for r in result.rows] == [1, 2, 4]
    assert result.row(1)["name"] == "liver" and result.row(4)["name"] == "4"
    assert result.row(1)["dice"] == 1.0 and result.row(1)["hd95_mm"] == 0.0
    assert result.row(2)["dice"] == 0.0 and math.isnan(result.row(2)["hd95_mm"])
    assert "not predicted" in result.row(2)["note"]
    assert result.row(4)["dice"] == 0.0 and "false positive" in result.row(4)["note"]
    assert result.row(2)["voxels_truth"] == 54 and result.row(2)["voxels_pred"] == 0
    assert_allclose(result.mean_dice, 1 / 3)
    assert result.mean_hd95 == 0.0  # NaN classes skipped


def test_evaluate_class_absent_everywhere_is_excluded_from_mean():
    truth = np.zeros((3, 4, 4), int)
    truth[1, 1:3, 1:3] = 1
    result = evaluate(truth, truth, class_values=[1, 5])
    assert math.isnan(result.row(5)["dice"])
    assert "excluded" in result.row(5)["note"]
    assert result.mean_dice == 1.0


def test_evaluate_all_nan_means_without_warning():
    empty = np.zeros((3, 3, 3), int)
    with np.errstate(all="raise"):
        result = evaluate(empty, empty, class_values=[1])
    assert math.isnan(result.mean_dice) and math.isnan(result.mean_hd95) and math.isnan(result.mean_asd)


def test_excluded_slices_change_the_scores():
    truth = np.zeros((8, 12, 12), int)
    truth[:, 3:9, 3:9] = 1
    pred = truth.copy()
    pred[2] = 0  # wrong on slice 2 only
    pred[2, 10:12, 0:2] = 1  # ...with a stray blob far away
    full = evaluate(pred, truth, (1.5, 1.0, 1.0))
    assert full.row(1)["dice"] < 1.0 and full.row(1)["hd95_mm"] > 0.0
    kept = evaluate(pred, truth, (1.5, 1.0, 1.0), exclude_slices=[2], axis=0)
    assert kept.row(1)["dice"] == 1.0
    assert kept.row(1)["voxels_truth"] == 7 * 36
    assert kept.excluded_slices == (2,) and kept.axis == 0
    # The hole on slice 2 would make the facing voxels of slices 1 and 3 surface voxels of pred;
    # excluded slices are "don't care", so they must not leak into the kept slices' distances.
    assert kept.row(1)["hd95_mm"] == 0.0 and kept.row(1)["asd_mm"] == 0.0


def test_excluded_slices_ignore_the_prediction_there():
    rng = np.random.default_rng(0)
    truth = np.zeros((10, 12, 12), int)
    truth[2:8, 3:9, 3:9] = 1
    truth[4:9, 1:4, 6:11] = 2
    pred = np.roll(truth, 1, axis=2)
    noisy = pred.copy()
    noisy[[0, 5]] = rng.integers(0, 3, size=(2, 12, 12))
    spacing = (2.0, 0.8, 0.8)
    a = evaluate(pred, truth, spacing, exclude_slices=[0, 5], axis=0).to_dict()
    b = evaluate(noisy, truth, spacing, exclude_slices=[0, 5], axis=0).to_dict()
    assert a == b
    assert a != evaluate(noisy, truth, spacing).to_dict()


def test_excluded_slices_distances_use_full_masks():
    truth = planes((6, 5, 5), 0, [1, 4])
    pred = planes((6, 5, 5), 0, [1, 2])  # plane 4 predicted at 2 (2 slices off)
    spacing = (2.0, 1.0, 1.0)
    # Keep only slice 4: truth plane 4 -> nearest pred surface (slice 2) is 2 * 2 mm away, and pred
    # has no voxel on slice 4 -> pred empty on kept voxels -> NaN, not a distance.
    only_4 = evaluate(pred, truth, spacing, exclude_slices=[0, 1, 2, 3, 5], axis=0)
    assert math.isnan(only_4.row(1)["hd95_mm"]) and only_4.row(1)["dice"] == 0.0
    # Keep slices 2 and 4: pred plane 2 -> truth plane 1 is 2 mm (truth on slice 1 is excluded from
    # scoring but still a target); truth plane 4 -> pred plane 2 is 4 mm.
    some = evaluate(pred, truth, spacing, exclude_slices=[0, 1, 3, 5], axis=-3)
    assert_allclose(some.row(1)["asd_mm"], (2.0 * 25 + 4.0 * 25) / 50)


def test_evaluate_validation():
    vol = np.zeros((4, 4, 4), int)
    with pytest.raises(ValueError, match="axis"):
        evaluate(vol, vol, exclude_slices=[1])
    with pytest.raises(ValueError, match="outside"):
        evaluate(vol, vol, exclude_slices=[4], axis=0)
    with pytest.raises(ValueError, match="every slice"):
        evaluate(vol, vol, exclude_slices=range(4), axis=1)
    with pytest.raises(ValueError, match="3D"):
        evaluate(vol[0], vol[0])
    with pytest.raises(ValueError, match="one value per axis"):
        evaluate(vol, vol, spacing=(1, 1))
    with pytest.raises(ValueError, match="same shape"):
        evaluate(vol, vol[:3])
    with pytest.raises(ValueError, match="pred labels must be integers"):
        evaluate(vol.astype(complex), vol)


def test_to_dict_is_json_safe_with_nan_as_none():
    truth = np.zeros((3, 4, 4), np.int16)
    truth[1, 1:3, 1:3] = 1
    pred = np.zeros_like(truth)
    result = evaluate(pred, truth, (1, 1, 2))
    data = result.to_dict()
    text = json.dumps(data, allow_nan=False)  # raises on NaN
    assert json.loads(text)["rows"][0]["hd95_mm"] is None
    assert data["rows"][0]["dice"] == 0.0 and type(data["rows"][0]["voxels_truth"]) is int
    assert data["mean_hd95_mm"] is None and data["spacing_mm"] == [1.0, 1.0, 2.0]


def test_format_table_lists_names_and_aligns():
    truth = np.zeros((3, 6, 6), int)
    truth[:, 1:3, 1:3] = 1
    truth[:, 4:6, 4:6] = 2
    pred = truth.copy()
    pred[:, 4:6, 4:6] = 0
    table = evaluate(pred, truth, class_names={1: "thalamus", 2: "amygdala"}).format_table()
    lines = table.splitlines()
    assert "thalamus" in table and "amygdala" in table and "n/a" in table
    assert lines[0].startswith("value") and "HD95 [mm]" in lines[0]
    assert lines[-1].split()[0] == "mean"
    assert "1.000" in lines[2] and "0.500" in lines[-1]
    # Right-aligned numeric columns: the Dice column ends at the same position on every line.
    dice_end = lines[0].index("Dice") + len("Dice")
    assert all(line[dice_end - 1] != " " for line in lines[2:])
