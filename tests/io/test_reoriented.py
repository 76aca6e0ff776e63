"""A volume read in another voxel order: every voxel keeps its value and its place in the world."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_action.io.geometry import VoxelGeometry
from napari_action.io.reoriented import Reorientation, ReorientedSource
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import ArraySlices


def _stored(shape=(4, 5, 6)):
    volume = np.arange(np.prod(shape), dtype=np.int32).reshape(shape)
    affine = np.array([[0.0, 0.0, -2.0, 10.0], [-1.0, 0.0, 0.0, 20.0], [0.0, 3.0, 0.0, -5.0], [0, 0, 0, 1]])
    return volume, VolumeMeta.from_affine(affine, shape)


@pytest.mark.parametrize("axes", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", [(False, False, False), (True, False, True), (False, True, False)])
def test_reading_through_a_reorientation_keeps_every_voxel_and_its_world_position(axes, flips):
    volume, meta = _stored()
    turn = Reorientation(axes, flips)
    source = ReorientedSource(ArraySlices(volume, meta, None), turn)
    whole = turn.from_stored(volume)
    assert source.shape == whole.shape == turn.shape(volume.shape)
    for axis in range(3):
        np.testing.assert_array_equal(source.read(axis, 1, 3), np.moveaxis(whole, axis, 0)[1:3])
    np.testing.assert_array_equal(turn.to_stored(whole), volume)
    for index in [(0, 0, 0), (1, 2, 3), tuple(s - 1 for s in whole.shape)]:
        stored_index = [0, 0, 0]
        for axis, value in enumerate(index):
            stored_axis, stored_value = turn.stored_index(axis, value, whole.shape[axis])
            stored_index[stored_axis] = stored_value
        assert whole[index] == volume[tuple(stored_index)]
        np.testing.assert_allclose(source.meta.affine @ [*index, 1], meta.affine @ [*stored_index, 1])


def test_the_turn_between_two_voxel_orders_and_none_where_there_is_nothing_to_turn():
    ras = VoxelGeometry.from_matrix(np.diag([1.0, 1.0, 1.0, 1.0]))
    lps = VoxelGeometry.from_matrix(np.diag([-1.0, -1.0, 1.0, 1.0]))
    sal = VoxelGeometry.from_matrix(np.array([[0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]]))
    assert Reorientation.between(ras, lps) == Reorientation((0, 1, 2), (True, True, False))
    assert Reorientation.between(ras, sal) == Reorientation((2, 1, 0), (True, False, False))
    assert Reorientation.between(ras, ras) is None
    assert Reorientation.between(VoxelGeometry((1.0,) * 3, (0, 1, 2)), lps) is None  # a model without axis signs
