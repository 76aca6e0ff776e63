"""Tests for napari_action.label_values: label checks and the smallest label dtype."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.label_values import (
    MAX_CLASSES,
    as_integer_labels,
    check_class_count,
    check_label_dtype,
    smallest_label_dtype,
)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        ([0, 1, 255], np.uint8),
        ([-1, 0, 3], np.int16),  # negative: no unsigned type
        ([0, 256], np.int16),  # > 255
        ([0, 32_767], np.int16),
        ([0, 32_768], np.uint16),
        ([0, 65_535], np.uint16),
        ([0, 65_536], np.int32),  # > 65535
        ([-1, 40_000], np.int32),  # negative and beyond int16
        ([-(2**31), 2**31 - 1], np.int32),
        ([0, 2**31], np.int64),
        ([-(2**63), 2**63 - 1], np.int64),
    ],
)
def test_smallest_label_dtype(values, dtype):
    assert smallest_label_dtype(values) == dtype
    assert smallest_label_dtype(np.asarray(values, dtype=np.int64)) == dtype
    # Every value survives the conversion.
    np.testing.assert_array_equal(np.asarray(values, dtype=dtype).astype(np.int64), values)


def test_smallest_label_dtype_of_arrays_and_empty_input():
    volume = np.zeros((2, 3, 4), np.int64)
    volume[1, 2, 3] = 300
    assert smallest_label_dtype(volume) == np.int16
    assert smallest_label_dtype(np.ones((2, 2), bool)) == np.uint8
    assert smallest_label_dtype(np.array([0.0, 7.0])) == np.uint8
    assert smallest_label_dtype(np.zeros((0, 3), np.int32)) == np.uint8
    assert smallest_label_dtype([]) == np.uint8


def test_smallest_label_dtype_refuses_values_beyond_int64():
    with pytest.raises(ValueError, match=r"0\.\.18446744073709551615 do not fit a 64-bit"):
        smallest_label_dtype(np.array([0, 2**64 - 1], np.uint64))


def test_integer_labels_pass_unchanged_and_bool_becomes_uint8():
    labels = np.array([[0, -3], [7, 300]], np.int32)
    assert as_integer_labels(labels, "labels") is labels
    mask = as_integer_labels(np.array([True, False]), "mask")
    assert mask.dtype == np.uint8 and mask.tolist() == [1, 0]


def test_whole_floats_become_the_smallest_integer_dtype():
    labels = as_integer_labels(np.array([0.0, 3.0, 300.0], np.float32), "labels")
    assert labels.dtype == np.int16 and labels.tolist() == [0, 3, 300]
    assert as_integer_labels(np.array([-2.0, 5.0]), "labels").dtype == np.int16


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            np.array([0.0, 1.5, 2.0]),
            r"scan\.nii: labels must be whole numbers, found 1 of 3 values that are not \(e\.g\. 1\.5\)",
        ),
        (np.array([0.0, np.nan, np.inf]), r"scan\.nii: labels contain NaN or infinite values \(2 of 3\)"),
        (np.array(["a"]), r"scan\.nii: labels must be integers, got dtype <U1"),
        (np.array([1 + 1j]), "must be integers, got dtype complex128"),
    ],
)
def test_non_labels_are_refused_with_the_reason(data, match):
    with pytest.raises(ValueError, match=match):
        as_integer_labels(data, "scan.nii: labels")


def test_negative_values_are_refused_only_when_asked():
    labels = np.array([0, -1, 2], np.int64)
    assert as_integer_labels(labels, "Labels of volume 0").tolist() == [0, -1, 2]
    with pytest.raises(ValueError, match=r"Labels of volume 0 contain negative values \(min -1\)"):
        as_integer_labels(labels, "Labels of volume 0", non_negative=True)
    with pytest.raises(ValueError, match="contain negative values"):
        as_integer_labels(np.array([-4.0, 1.0]), "labels", non_negative=True)


def test_check_label_dtype_accepts_numbers_only():
    for dtype in (bool, np.uint8, np.int64, np.float32):
        check_label_dtype(np.dtype(dtype), "labels")
    with pytest.raises(ValueError, match="labels must be integers, got dtype object"):
        check_label_dtype(np.dtype(object), "labels")


def test_more_classes_than_one_model_learns_are_refused():
    check_class_count(np.arange(MAX_CLASSES + 1), "labels")  # 0 (background) and 255 structures
    with pytest.raises(ValueError, match=r"labels hold 256 different values \(from 1 to 256\), more than the 255"):
        check_class_count(np.arange(1, MAX_CLASSES + 2), "labels")
