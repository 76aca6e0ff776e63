"""Tests for napari_action.evaluation.metrics: known values on tiny hand-made volumes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_action.evaluation.metrics import dice_per_class, evaluate
from tests.helpers.engine import planes


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
    with pytest.raises(ValueError, match="all 4 slices along axis 1 are excluded"):  # in words the CLI can show
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


def test_distances_of_micrometres_read_in_millimetres_keep_their_digits_in_the_table():
    # A microscope's stack with its header in micrometres (read in mm) printed HD95 0.002 and ASD 0.000.
    truth = np.zeros((6, 12, 12), int)
    truth[1:5, 3:9, 3:9] = 1
    pred = np.zeros_like(truth)
    pred[1:5, 4:9, 3:9] = 1
    result = evaluate(pred, truth, (0.002, 0.0004, 0.0004))
    row = result.to_dict()["rows"][0]
    line = result.format_table().splitlines()[2]
    assert 0 < row["asd_mm"] < 0.001
    assert f"{row['hd95_mm']:.3g}" in line and f"{row['asd_mm']:.3g}" in line and " 0.000 " not in line
    assert "0.909" in line  # Dice keeps its three decimals


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
