"""Clean-up and mixing of predicted probabilities: largest components, smoothing, the prior, structure extents."""

import numpy as np
import pytest

from napari_action.data.structure_extents import StructureExtents
from napari_action.inference.postprocess import (
    SliceSmoother,
    clear_outside_extents,
    fuse_prior,
    keep_largest_components,
    taper_streamed,
    trim_beyond_extents,
)


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


def _push_all(smoother: SliceSmoother, stack: np.ndarray) -> dict[int, np.ndarray]:
    done = {}
    for index, probs in enumerate(stack):
        done.update(smoother.push(index, probs))
    return done


def test_slice_smoother_matches_a_gaussian_filter_renormalised_at_the_ends():
    from scipy import ndimage

    stack = np.random.default_rng(0).random((20, 3, 4, 5)).astype(np.float32)
    done = _push_all(SliceSmoother(1.5, 20), stack)
    assert sorted(done) == list(range(20))
    expected = ndimage.gaussian_filter1d(stack, 1.5, axis=0, mode="constant", truncate=3.0)
    expected /= ndimage.gaussian_filter1d(np.ones(20), 1.5, mode="constant", truncate=3.0)[:, None, None, None]
    np.testing.assert_allclose(np.stack([done[i] for i in range(20)]), expected, atol=1e-6)


def test_slice_smoother_holds_only_the_kernel_and_passes_through_at_zero_sigma():
    stack = np.random.default_rng(1).random((12, 2, 3, 3)).astype(np.float32)
    smoother = SliceSmoother(1.0, 12)
    for index, probs in enumerate(stack):
        smoother.push(index, probs)
        assert len(smoother._held) <= 2 * smoother.radius + 1
    done = _push_all(SliceSmoother(0.0, 12), stack)
    np.testing.assert_array_equal(np.stack([done[i] for i in range(12)]), stack)


def test_slice_smoother_refuses_slices_out_of_order():
    smoother = SliceSmoother(1.0, 5)
    smoother.push(0, np.zeros((2, 1, 1)))
    with pytest.raises(ValueError, match="in order"):
        smoother.push(2, np.zeros((2, 1, 1)))


def test_fuse_prior_lets_labels_win_on_labeled_slices_and_fades_away():
    probs = np.zeros((3, 1, 2), np.float32)
    probs[2] = 1.0  # the network says class 2 everywhere
    prior = np.array([[1, 0]])
    np.testing.assert_array_equal(fuse_prior(probs, prior, 0, 1.0).argmax(0), prior)
    near = fuse_prior(probs, prior, 1, 1.0)  # share exp(-1) = 0.37 < 0.63: the network still wins
    np.testing.assert_allclose(near[:, 0, 0], [0.0, np.exp(-1), 1 - np.exp(-1)], rtol=1e-6)
    np.testing.assert_array_equal(fuse_prior(probs, prior, 3, 0.0), probs)


def test_fuse_prior_trusts_the_prior_only_as_far_as_its_own_confidence():
    probs = np.stack([np.full((2, 2), 0.8), np.full((2, 2), 0.2)]).astype(np.float32)
    prior = np.ones((2, 2), np.int64)
    confidence = np.array([[1.0, 0.0], [0.5, 0.25]], np.float32)
    fused = fuse_prior(probs, prior, 0, 1.0, confidence)
    np.testing.assert_allclose(fused[1], [[1.0, 0.2], [0.6, 0.4]], atol=1e-6)
    np.testing.assert_allclose(fused.sum(axis=0), 1.0, atol=1e-6)


def test_a_structure_beyond_its_extent_gives_its_probability_to_the_background():
    probs = np.stack([np.full((2, 2), 0.1), np.full((2, 2), 0.6), np.full((2, 2), 0.3)]).astype(np.float32)
    extents = StructureExtents(first=np.array([-1, 0, 5]), last=np.array([-1, 2, 9]))
    bounded = clear_outside_extents(probs, extents, 1)  # class 2 starts at slice 5
    np.testing.assert_allclose(bounded[:, 0, 0], [0.4, 0.6, 0.0], atol=1e-6)
    assert probs[2, 0, 0] == np.float32(0.3)  # the input is not modified
    beyond_both = clear_outside_extents(probs, extents, 12)
    np.testing.assert_array_equal(beyond_both.argmax(axis=0), 0)
    np.testing.assert_allclose(beyond_both.sum(axis=0), 1.0, atol=1e-6)


def test_within_every_extent_or_without_extents_the_probabilities_are_untouched():
    probs = np.full((3, 2, 2), 1 / 3, np.float32)
    extents = StructureExtents(first=np.array([-1, 0, 5]), last=np.array([-1, 9, 9]))
    assert clear_outside_extents(probs, extents, 6) is probs
    assert clear_outside_extents(probs, None, 0) is probs


def _stack_of_discs(areas) -> np.ndarray:
    """Label 5 on the first ``area`` pixels of each 10 x 10 slice (slicing axis first)."""
    labels = np.zeros((len(areas), 10, 10), np.uint8)
    for z, area in enumerate(areas):
        labels[z].reshape(-1)[:area] = 5
    return labels


def test_beyond_its_extent_a_structure_is_kept_while_it_narrows_and_ended_where_it_grows():
    values = np.array([0, 5])
    extents = StructureExtents(first=np.array([-1, 3]), last=np.array([-1, 5]))
    #            below the extent | extent   | above: narrows, then grows (something else)
    areas = [30, 20, 10, 40, 40, 40, 30, 20, 21, 60, 50]
    tapered = _stack_of_discs(areas)
    trim_beyond_extents(tapered, extents, values, "taper")
    # Below: 10 -> 20 -> 30 going outwards is growth from slice 1 on; 21 is within the slack of 20.
    np.testing.assert_array_equal(np.count_nonzero(tapered, axis=(1, 2)), [0, 0, 10, 40, 40, 40, 30, 20, 21, 0, 0])
    cut = _stack_of_discs(areas)
    trim_beyond_extents(cut, extents, values, "cut")
    np.testing.assert_array_equal(np.count_nonzero(cut, axis=(1, 2)), [0, 0, 0, 40, 40, 40, 0, 0, 0, 0, 0])


def test_streamed_slices_keep_a_structure_only_where_the_walk_from_its_extent_shows_it_narrowing():
    values = np.array([0, 5])
    extents = StructureExtents(first=np.array([-1, 3]), last=np.array([-1, 5]))
    nan = np.nan
    # Areas streamed so far (NaN: not yet): above the extent it narrows to slice 8, then grows at 9;
    # below it, slice 2 was never streamed.
    areas = [30, 20, nan, 40, 40, 40, 30, 20, 21, 60, 50]
    known = np.stack([np.zeros(len(areas)), areas], axis=1)
    chunk = _stack_of_discs([30, 20, 21, 60])  # slices 0-1 and 8-9 of the volume streamed now
    below, above = chunk[:2].copy(), chunk[2:].copy()
    taper_streamed(below, 0, known, extents, values)
    taper_streamed(above, 8, known, extents, values)
    np.testing.assert_array_equal(np.count_nonzero(below, axis=(1, 2)), [0, 0])  # the gap at slice 2 ends it
    np.testing.assert_array_equal(np.count_nonzero(above, axis=(1, 2)), [21, 0])  # 20 -> 21 in the slack, 60 grew
    whole = _stack_of_discs([30, 20, 10, 40, 40, 40, 30, 20, 21, 60, 50])
    expected = whole.copy()
    trim_beyond_extents(expected, extents, values, "taper")
    areas = np.count_nonzero(whole, axis=(1, 2))[:, None] * np.array([[0, 1]])
    taper_streamed(whole, 0, areas.astype(float), extents, values)  # everything known: the whole-volume taper
    np.testing.assert_array_equal(whole, expected)


def _heart_base(depth: int = 8) -> np.ndarray:
    """Slicing axis first: a cavity (3) walled by muscle (2) on slices 2-7; on slices 0-1, above the base, the
    network ran the cavity on into a larger pool with no muscle around it."""
    labels = np.zeros((depth, 24, 24), np.uint8)
    for z in range(2, depth):
        labels[z, 4:20, 4:20] = 2
        labels[z, 8:16, 8:16] = 3
    labels[:2, 3:21, 3:21] = 3
    return labels


def test_cut_ends_a_walled_structure_where_its_wall_ends_and_taper_does_not():
    values = np.array([0, 1, 2, 3])
    extents = StructureExtents.of_slices(((z, s) for z, s in enumerate(_heart_base()) if z >= 2), num_classes=4)
    # The cavity's extent starts a slice late (a registration off by one): its wall, not the extent, ends it.
    extents = StructureExtents(np.array([-1, -1, 1, 3]), np.array([-1, -1, 7, 7]), extents.walls)
    cut = _heart_base()
    trim_beyond_extents(cut, extents, values, "cut")
    np.testing.assert_array_equal(cut[:2], 0)  # the run-on is gone, though within the extent on slice 1
    np.testing.assert_array_equal(cut[2:], _heart_base()[2:])
    # Taper looks at areas only: within the extent it leaves the run-on.
    whole = StructureExtents(np.array([-1, -1, 0, 0]), np.array([-1, -1, 7, 7]), extents.walls)
    tapered = _heart_base()
    trim_beyond_extents(tapered, whole, values, "taper")
    np.testing.assert_array_equal(tapered, _heart_base())


def test_trimming_leaves_classes_without_extent_and_refuses_unknown_rules():
    labels = _stack_of_discs([10, 10, 10])
    unknown = StructureExtents(first=np.array([-1, -1]), last=np.array([-1, -1]))
    trim_beyond_extents(labels, unknown, np.array([0, 5]), "cut")
    assert np.count_nonzero(labels) == 30
    with pytest.raises(ValueError, match="taper"):
        trim_beyond_extents(labels, unknown, np.array([0, 5]), "sometimes")
