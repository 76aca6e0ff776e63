"""Affine registration by mutual information, on a phantom placed elsewhere in the world."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.registration import RegistrationSettings, coarse_image, register_affine
from napari_action.data.samples import make_phantom

QUICK = RegistrationSettings(levels_mm=(6.0, 3.0), iterations=(40, 20), samples=3000)


def rigid(degrees: float, shift_mm: tuple[float, float, float]) -> np.ndarray:
    """A rotation about the world's z axis, then a shift: a 4 x 4 world transform."""
    angle = np.deg2rad(degrees)
    out = np.eye(4)
    out[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    out[:3, 3] = shift_mm
    return out


@pytest.fixture(scope="module")
def phantom():
    subject = make_phantom(1, shape=(64, 64, 16))[0]
    return subject.image, subject.meta.affine


def worst_error_mm(found: np.ndarray, expected: np.ndarray, shape, affine) -> float:
    """The largest distance between where two transforms send the volume's corners (mm)."""
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0]) for j in (0, shape[1]) for k in (0, shape[2])])
    world = corners @ affine.T
    return float(np.max(np.linalg.norm((world @ found.T - world @ expected.T)[:, :3], axis=1)))


def test_a_moved_copy_is_brought_back(phantom):
    image, affine = phantom
    # The same voxels placed elsewhere: a fixed-world point x is the moving-world point T x.
    moved = rigid(6.0, (9.0, -5.0, 4.0))
    found = register_affine(NormalizedVolume.exact(image), affine, NormalizedVolume.exact(image), moved @ affine, QUICK)
    error = worst_error_mm(found.matrix, moved, image.shape, affine)
    start = worst_error_mm(np.eye(4), moved, image.shape, affine)
    assert error < 1.5 < 20.0 < start  # within half a coarse voxel anywhere in the box, from 25 mm off


def test_another_storage_order_changes_nothing_in_the_world(phantom):
    image, affine = phantom
    # The array transposed and flipped, its affine rewritten so each voxel keeps its world position.
    stored = np.ascontiguousarray(np.flip(image.transpose(1, 0, 2), axis=2))
    to_old = np.zeros((4, 4))
    to_old[0, 1] = to_old[1, 0] = to_old[3, 3] = 1.0
    to_old[2, 2], to_old[2, 3] = -1.0, image.shape[2] - 1
    found = register_affine(
        NormalizedVolume.exact(image), affine, NormalizedVolume.exact(stored), affine @ to_old, QUICK
    )
    assert worst_error_mm(found.matrix, np.eye(4), image.shape, affine) < 4.0


def test_unrelated_images_agree_less_than_the_same_anatomy(phantom):
    image, affine = phantom
    noise = np.random.default_rng(0).normal(size=image.shape).astype(np.float32)
    same = register_affine(NormalizedVolume.exact(image), affine, NormalizedVolume.exact(image), affine, QUICK)
    other = register_affine(NormalizedVolume.exact(image), affine, NormalizedVolume.exact(noise), affine, QUICK)
    assert other.similarity < 0.5 * same.similarity


def test_coarse_image_keeps_the_world_position_of_its_blocks(phantom):
    image, affine = phantom
    coarse = coarse_image(NormalizedVolume.exact(image), affine, 6.0)
    # 3 mm voxels in plane pool by 2, the 8 mm slices stay: block (0, 0, 0) is centred on voxel 0.5.
    assert coarse.values.shape == (32, 32, 16)
    np.testing.assert_allclose(coarse.affine @ [0, 0, 0, 1], affine @ [0.5, 0.5, 0, 1])
    assert coarse.values.min() >= 0.0 and coarse.values.max() <= 1.0


def test_one_iteration_count_per_level_is_required(phantom):
    image, affine = phantom
    volume = NormalizedVolume.exact(image)
    with pytest.raises(ValueError, match="one iteration count per level"):
        register_affine(volume, affine, volume, affine, RegistrationSettings(levels_mm=(4.0, 2.0), iterations=(5,)))
