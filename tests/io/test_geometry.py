"""Voxel geometry: what counts as the same grid and how a difference reads; spacing, directions and their warnings."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.io.geometry import (
    VoxelGeometry,
    describe_grid,
    geometry_warnings,
    grid_difference,
    same_voxel_grid,
)


def _grid(zooms=(0.8, 0.8, 3.0), origin=(-10.0, 5.0, 2.5)) -> np.ndarray:
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = origin
    return affine


def _turned(affine: np.ndarray, degrees: float) -> np.ndarray:
    """The voxel axes turned about the world z axis; the origin stays."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    turned = affine.copy()
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return turned


def test_float32_rounding_of_a_resaved_header_is_the_same_grid():
    affine = _turned(_grid(), 12.0)
    assert same_voxel_grid(affine, affine.astype(np.float32).astype(np.float64))


@pytest.mark.parametrize(
    "other",
    [
        _grid(zooms=(1.6, 1.6, 3.0)),
        _grid(origin=(-10.0, 5.0, 2.51)),
        _turned(_grid(), 0.05),
        np.diag([-0.8, 0.8, 3.0, 1.0]) + np.pad(np.array([[-10.0], [5.0], [2.5]]), ((0, 1), (3, 0))),
    ],
    ids=["voxel-size", "origin-10-microns", "rotation-0.05-degrees", "flipped-axis"],
)  # fmt: skip
def test_any_real_difference_is_another_grid(other):
    assert not same_voxel_grid(_grid(), other)
    assert not same_voxel_grid(other, _grid())


def test_micrometre_voxels_a_voxel_apart_are_another_grid_but_float32_rounding_is_not():
    # A microscope's 0.5 um voxels, its stage 50 mm from the origin: float32 rounds that to 4e-6 mm.
    cells = _grid(zooms=(0.0005, 0.0005, 0.002), origin=(50.0, 20.0, 1.0))
    assert same_voxel_grid(cells, cells.astype(np.float32).astype(np.float64))
    one_voxel_off = cells.copy()
    one_voxel_off[0, 3] += 0.0005
    assert not same_voxel_grid(cells, one_voxel_off)


def test_a_degenerate_axis_never_matches_a_real_one():
    flat = _grid()
    flat[:3, 2] = 0.0
    assert not same_voxel_grid(flat, _grid())


def test_descriptions_name_voxel_size_origin_and_axis_codes():
    assert describe_grid(_grid()) == "voxels 0.8 x 0.8 x 3 mm, origin (-10, 5, 2.5) mm, axes RAS"
    flipped = _grid()
    flipped[0, 0] = -0.8
    assert describe_grid(flipped).endswith("axes LAS")


def test_a_difference_that_rounds_away_is_named_as_a_rotation():
    assert grid_difference(_grid(), _turned(_grid(), 0.05)).endswith("(the axes are rotated differently)")
    shifted = grid_difference(_grid(), _grid(origin=(0.0, 0.0, 0.0)))
    assert "origin (-10, 5, 2.5) mm" in shifted and "origin (0, 0, 0) mm" in shifted and "rotated" not in shifted


def test_voxel_geometry_of_a_permuted_oblique_matrix():
    matrix = np.array([[0.0, 0.0, 2.0, 7.0], [3.0, 0.0, 0.0, 8.0], [0.0, 1.0, 0.1, 9.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = VoxelGeometry.from_matrix(matrix)
    assert geometry.directions == (1, 2, 0)  # array axis 0 runs along world y, 1 along z, 2 along x
    np.testing.assert_allclose(geometry.spacing, (3.0, 1.0, np.hypot(2.0, 0.1)))
    np.testing.assert_allclose(geometry.in_plane(0), (1.0, np.hypot(2.0, 0.1)))
    assert VoxelGeometry.from_dict(geometry.to_dict()) == geometry


def test_geometry_warnings_name_other_spacing_and_other_direction():
    reference = VoxelGeometry((1.0, 1.0, 3.0), (0, 1, 2))
    close = VoxelGeometry((1.1, 0.9, 5.0), (0, 1, 2))  # in-plane within 20 %; the spacing between slices is free
    coarse = VoxelGeometry((2.0, 2.0, 3.0), (0, 1, 2))
    turned = VoxelGeometry((1.0, 1.0, 3.0), (0, 2, 1))  # array axis 2 runs along world y
    targets = [("close", close), ("coarse", coarse), ("turned", turned)]
    messages = geometry_warnings([reference], targets, axis=2)
    assert len(messages) == 2
    assert messages[0].startswith("'coarse' has in-plane spacing 2×2 mm, the training volumes 1×1 mm")
    assert messages[1].startswith("'turned' is sliced along world axis y (coronal slices)")
    assert "z (axial slices)" in messages[1]
    assert geometry_warnings([reference, coarse], [("coarse", coarse)], axis=2) == []  # one matching reference suffices
    assert geometry_warnings([], targets, axis=2) == []  # nothing known about the training volumes


def test_slices_stored_turned_or_mirrored_against_the_training_volumes_are_named():
    reference = VoxelGeometry.from_matrix(np.diag([1.0, 1.0, 5.0, 1.0]))
    assert reference.signs == (1, 1, 1) and reference.voxel_order() == "RAS"
    lps = VoxelGeometry.from_matrix(np.diag([-1.0, -1.0, 5.0, 1.0]))
    assert lps.voxel_order() == "LPS" and VoxelGeometry.from_dict(lps.to_dict()) == lps
    head_first = VoxelGeometry.from_matrix(np.diag([1.0, 1.0, -5.0, 1.0]))  # only the slice order differs
    [message] = geometry_warnings([reference], [("lps", lps), ("head first", head_first)], axis=2)
    assert message.startswith("'lps' stores its slices turned or mirrored against the training volumes")
    assert "(voxel order LPS, the training volumes RAS)" in message
    assert geometry_warnings([reference, lps], [("lps", lps)], axis=2) == []  # one alike reference suffices
    # A model saved before the signs were kept: nothing known, nothing said.
    older = VoxelGeometry.from_dict({"spacing": [1.0, 1.0, 5.0], "directions": [0, 1, 2]})
    assert older.signs is None and geometry_warnings([older], [("lps", lps)], axis=2) == []


def test_planes_map_to_the_array_axis_along_their_world_direction():
    # Array axes: 0 along z (inferior-superior), 1 along x, 2 along y; 2 mm slices.
    matrix = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = VoxelGeometry.from_matrix(matrix)
    assert [geometry.axis_for_plane(p) for p in ("axial", "sagittal", "coronal")] == [0, 1, 2]
    with pytest.raises(ValueError, match="plane must be one of"):
        geometry.axis_for_plane("transverse")
    tilted = VoxelGeometry((1.0, 1.0, 1.0), (0, 0, 2))  # two axes closest to x: no coronal axis
    with pytest.raises(ValueError, match="coronal"):
        tilted.axis_for_plane("coronal")


def test_voxel_geometry_of_a_degenerate_axis_has_zero_spacing():
    flat = np.diag([0.8, 0.0, 3.0, 1.0])  # a 2D image saved with a zero column
    geometry = VoxelGeometry.from_matrix(flat)
    assert geometry.spacing == (0.8, 0.0, 3.0) and geometry.directions == (0, 0, 2)
