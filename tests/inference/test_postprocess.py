"""Largest-connected-component clean-up."""

import numpy as np
import pytest

from napari_action.inference.postprocess import keep_largest_components


def test_keeps_the_largest_pieces_of_each_label():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[1:4, 1:4, 1:4] = 1  # 27 voxels: kept
    labels[7, 7, 7] = 1  # a stray voxel: removed
    labels[6:9, 1:3, 1:3] = 2  # 12 voxels
    labels[1:3, 7:9, 7:9] = 2  # 8 voxels
    original = labels.copy()
    cleaned = keep_largest_components(labels, keep=1)
    assert cleaned[7, 7, 7] == 0 and (cleaned == 1).sum() == 27
    assert (cleaned == 2).sum() == 12
    assert (keep_largest_components(labels, keep=2) == 2).sum() == 20
    np.testing.assert_array_equal(labels, original)


def test_keep_must_be_positive():
    with pytest.raises(ValueError, match="keep"):
        keep_largest_components(np.zeros((2, 2, 2), np.uint8), keep=0)
