"""Tests for napari_action.data.slicing_axis: the axis the slices were painted along (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.slicing_axis import axis_mismatch_advice, infer_axis

CUBE = (24, 24, 24)


def painted_on(axis: int, slices: tuple[int, ...]) -> np.ndarray:
    """A cube with a square painted on each of ``slices`` along ``axis``."""
    labels = np.zeros(CUBE, dtype=np.uint16)
    for s in slices:
        index = [slice(2, 9)] * 3
        index[axis] = s
        labels[tuple(index)] = 3
    return labels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_infer_axis_finds_painted_axis(axis):
    assert infer_axis([painted_on(axis, slices=(1, 4, 7))]) == axis


def test_infer_axis_pools_volumes_and_skips_none():
    assert infer_axis([None, painted_on(1, slices=(3,)), np.zeros(CUBE)]) == 1


def test_infer_axis_ties_and_empty():
    single = np.zeros((5, 5, 5), dtype=np.uint8)
    single[2, 2, 2] = 1
    assert infer_axis([single]) == 2
    assert infer_axis([single], fallback=0) == 0
    assert infer_axis([single], fallback=-3) == 0
    assert infer_axis([np.zeros((4, 4, 4))], fallback=1) == 1
    with pytest.raises(ValueError, match="no painted voxels"):
        infer_axis([np.zeros((4, 4, 4)), None])


def test_infer_axis_ignores_untied_fallback():
    assert infer_axis([painted_on(0, slices=(1,))], fallback=2) == 0


def test_infer_axis_rejects_mixed_dimensions():
    with pytest.raises(ValueError, match="same number of dimensions"):
        infer_axis([np.ones((2, 2, 2)), np.ones((2, 2))])


def test_paint_along_another_axis_than_the_forced_one_is_pointed_out():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[:, :, 3] = 1  # two slices painted along axis 2
    labels[2:8, 2:8, 9] = 2
    advice = axis_mismatch_advice([labels, None], axis=0)
    assert advice.startswith("The painted slices lie along axis 2, but training slices along axis 0")
    assert "each of the 10 slices along axis 0" in advice
    assert axis_mismatch_advice([labels], axis=2) is None
    dense = np.ones((10, 12, 14), np.uint8)  # a fully labeled volume has no painted axis
    assert axis_mismatch_advice([dense], axis=0) is None
