"""Tests for napari_action.checks: whole numbers and axis indices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.checks import as_int, normalize_axis


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3), (np.int16(-4), -4), (np.uint64(7), 7), (2.0, 2), (np.float32(5.0), 5), ("6", 6), (2**60 + 1, 2**60 + 1)],
)
def test_as_int_accepts_whole_numbers(value, expected):
    result = as_int(value, "k")
    assert result == expected and type(result) is int


@pytest.mark.parametrize("value", [1.5, np.float64(np.nan), float("inf"), "two", None, [1]])
def test_as_int_refuses_the_rest_naming_the_value(value):
    with pytest.raises(ValueError, match="min_distance must be an integer"):
        as_int(value, "min_distance")


@pytest.mark.parametrize(
    ("axis", "ndim", "expected"), [(0, 3, 0), (2, 3, 2), (-1, 3, 2), (-3, 3, 0), (np.int64(1), 2, 1)]
)
def test_normalize_axis_counts_negative_axes_from_the_end(axis, ndim, expected):
    assert normalize_axis(axis, ndim) == expected


@pytest.mark.parametrize(
    ("axis", "match"), [(3, "axis 3 is out of range for 3 dimensions"), (-4, "out of range"), (1.5, "integer")]
)
def test_normalize_axis_refuses_axes_outside_the_array(axis, match):
    with pytest.raises(ValueError, match=match):
        normalize_axis(axis, 3)
