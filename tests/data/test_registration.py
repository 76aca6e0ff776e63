"""Affine registration by mutual information: a phantom moved in the world, a head scan onto a stripped brain."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.registration import (
    ImagePyramid,
    RegistrationSettings,
    _distinct_levels,
    _register_from,
    coarse_image,
    register_affine,
    register_pyramids,
)
from napari_action.data.samples import load_colin27, make_phantom
from napari_action.evaluation.metrics import dice_per_class
from tests.helpers.data import mni152_t1

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


def test_of_the_two_starts_the_one_whose_images_agree_better_is_kept(phantom):
    # From 12 mm two warped Colin27 scans came out 1.2-1.3 times too large (similarity 0.03 against
    # 0.13 from 6 mm); from 6 mm a head scan fitted a stripped brain's outline: so both are tried.
    image, affine = phantom
    settings = RegistrationSettings(levels_mm=(12.0, 6.0, 3.0), iterations=(20, 20, 10), samples=3000)
    fixed = ImagePyramid(NormalizedVolume.exact(image), affine)
    moving = ImagePyramid(NormalizedVolume.exact(image), rigid(6.0, (9.0, -5.0, 4.0)) @ affine)
    levels = _distinct_levels(fixed, moving, settings)
    assert len(levels) == 3
    starts = [_register_from(fixed, moving, schedule, settings, "cpu") for schedule in (levels, levels[1:])]
    kept = register_pyramids(fixed, moving, settings)
    assert starts[0].similarity != starts[1].similarity  # two different results to choose from
    best = max(starts, key=lambda result: result.similarity)
    assert kept.similarity == best.similarity
    np.testing.assert_allclose(kept.matrix, best.matrix)


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


def labels_through(labels: np.ndarray, target_to_source: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``labels`` read at the nearest source voxel of every target voxel (0 outside)."""
    voxels = np.indices(shape).reshape(3, -1)
    source = target_to_source[:3, :3] @ voxels + target_to_source[:3, 3:]
    return ndimage.map_coordinates(labels, source, order=0, cval=0).reshape(shape)


@pytest.mark.realdata
def test_a_head_scan_is_found_in_a_skull_stripped_brain(colin27_dir):
    # Colin27 (head, neck, scalp) onto the MNI152 template (brain only), turned and shifted as another
    # scanner would place it. Started at 6 mm the match fitted the brain's outline to the head's (the
    # brain drawn 1.2 times too large, Dice 0.30); the 12 mm level finds the brain.
    image, labels, meta = load_colin27(colin27_dir)
    template = nib.load(mni152_t1())
    target = np.asarray(template.dataobj, dtype=np.float32)
    truth = labels_through(labels, np.linalg.inv(meta.affine) @ template.affine, target.shape)  # both in MNI space
    posed = rigid(8.0, (12.0, -15.0, 20.0)) @ template.affine
    found = register_affine(NormalizedVolume.exact(target), posed, NormalizedVolume.exact(image), meta.affine)
    carried = labels_through(labels, found.fixed_to_moving_voxels(posed, meta.affine), target.shape)
    dice = dice_per_class(carried, truth, range(1, 7))
    assert np.mean(list(dice.values())) > 0.6, dice
    assert min(np.linalg.svd(found.matrix[:3, :3])[1]) > 0.9 and max(np.linalg.svd(found.matrix[:3, :3])[1]) < 1.1
