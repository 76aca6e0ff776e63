"""Tests for napari_action.data.slice_pool: normalisation and slice pools (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.intensity import normalize_volume, otsu_threshold, pad_value
from napari_action.data.slice_pool import SlicePool


# ------------------------------------------------------------- normalisation
def test_normalize_volume_clips_and_standardises_its_foreground():
    volume = np.arange(1000, dtype=np.float64).reshape(10, 10, 10)
    volume[0, 0, 0] = 1e6  # an outlier the percentile clip must remove
    original = volume.copy()
    out = normalize_volume(volume, clip=(1.0, 99.0))
    assert out.dtype == np.float32 and out.shape == volume.shape
    np.testing.assert_array_equal(volume, original)
    lo, hi = np.percentile(original, [1.0, 99.0])
    clipped = np.clip(original.astype(np.float32), lo, hi)
    foreground = clipped > otsu_threshold(clipped)
    assert 0.4 < foreground.mean() < 0.6  # a flat histogram splits in the middle
    np.testing.assert_allclose([out[foreground].mean(), out[foreground].std()], [0.0, 1.0], atol=1e-5)
    whole = normalize_volume(volume, clip=(1.0, 99.0), reference="whole")
    np.testing.assert_allclose(whole, (clipped - clipped.mean()) / clipped.std(), atol=1e-5)


def test_normalize_constant_and_integer_volumes():
    np.testing.assert_array_equal(normalize_volume(np.full((3, 4, 5), 1234.5)), 0.0)
    out = normalize_volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), clip=None, reference="whole")
    np.testing.assert_allclose([out.mean(), out.std()], [0.0, 1.0], atol=1e-5)


def test_normalize_rejects_nan_and_bad_clip():
    volume = np.ones((4, 4, 4))
    volume[0, 0, :3] = np.nan
    with pytest.raises(ValueError, match="3 NaN"):
        normalize_volume(volume)
    with pytest.raises(ValueError, match="clip"):
        normalize_volume(np.ones((2, 2, 2)), clip=(60, 40))


# ---------------------------------------------------------------- slice pool
def ramp_volume(shape=(6, 20, 24)) -> np.ndarray:
    """Each voxel's value is its slice index along axis 1, so channels are checkable."""
    return np.broadcast_to(np.arange(shape[1], dtype=np.float32)[None, :, None], shape).copy()


def make_pool(context: int = 1, crop_labels: bool = False) -> tuple[SlicePool, np.ndarray]:
    volume = ramp_volume()
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[:, 0, :] = 1  # edge slice of axis 1
    labels[1:3, 10, 2:4] = 2  # a tiny structure on slice 10
    return SlicePool([volume], SparseAnnotation([labels], [volume.shape], axis=1), context=context), volume


def test_pool_lists_and_channels_with_edge_replication():
    pool, volume = make_pool(context=2)
    assert pool.labeled == [(0, 0), (0, 10)]
    assert len(pool.unlabeled) == 18 and (0, 10) not in pool.unlabeled
    image = pool.image(0, 0)
    assert image.shape == (5, 6, 24) and image.dtype == np.float32
    np.testing.assert_array_equal(image[:, 0, 0], [0, 0, 0, 1, 2])  # replicated below 0
    np.testing.assert_array_equal(pool.image(0, 19)[:, 0, 0], [17, 18, 19, 19, 19])
    np.testing.assert_array_equal(pool.image(0, 10)[:, 3, 5], [8, 9, 10, 11, 12])
    assert not np.shares_memory(image, volume)


def test_pool_reads_a_normalised_volume_without_copying_it():
    pool, volume = make_pool(context=0)
    volume[:, 5, :] = 42.0  # seen by the pool: it holds the array itself, not a copy
    np.testing.assert_array_equal(pool.image(0, 5), 42.0)


def test_small_slices_are_padded_with_ignore():
    pool, volume = make_pool(context=0)
    images, targets = pool.sample_labeled(4, 32, np.random.default_rng(0))
    assert images.shape == (4, 1, 32, 32) and targets.shape == (4, 32, 32)
    assert images.dtype == torch.float32 and targets.dtype == torch.int64
    for image, target in zip(images, targets, strict=True):
        valid = target >= 0
        assert valid.sum() == 6 * 24  # the whole slice, nothing else
        assert (target == -1).sum() == 32 * 32 - 6 * 24
        np.testing.assert_array_equal(image[0][~valid], pad_value(volume))


def test_foreground_crops_contain_foreground():
    pool, _ = make_pool()
    rng = np.random.default_rng(1)
    classes = set()
    for _ in range(10):
        _, targets = pool.sample_labeled(4, 4, rng, foreground_prob=1.0)
        for target in targets:
            assert (target > 0).any()
            classes |= set(target[target > 0].tolist())
    assert classes == {1, 2}  # class-balanced: the tiny class is found too


def _slices_drawn(pool: SlicePool, draws: int, share: float = 0.25) -> np.ndarray:
    """Slice index of each random (not foreground-centred) labeled crop."""
    rng = np.random.default_rng(3)
    return np.array([pool.labeled[pool._pick_labeled_slice(rng, share)][1] for _ in range(draws)])


def test_background_only_slices_take_at_most_a_quarter_of_random_crops():
    volume = ramp_volume()
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[1:3, 10, 2:4] = 2  # one painted slice with anatomy ...
    empty = [0, 2, 4, 6, 8, 12, 14, 16, 18]  # ... and nine marked as empty
    annotation = SparseAnnotation([labels], [volume.shape], axis=1, labeled_slices={0: [10, *empty]})
    pool = SlicePool([volume], annotation)
    drawn = _slices_drawn(pool, 4000)
    assert set(drawn) == {10, *empty}  # empty slices still teach "nothing here"
    # Uniform drawing would give them 90 %; the cap is 25 %.
    assert np.mean(drawn != 10) == pytest.approx(0.25, abs=0.03)
    assert set(_slices_drawn(pool, 500, share=0.0)) == {10}
    _, targets = pool.sample_labeled(64, 8, np.random.default_rng(0), background_share=0.0)
    assert (targets > 0).any()  # every random crop now comes from the painted slice
    with pytest.raises(ValueError, match="background_share"):
        pool.sample_labeled(1, 8, np.random.default_rng(0), background_share=1.5)


def test_few_background_only_slices_keep_their_uniform_share():
    volume = ramp_volume()
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[:, [3, 5, 7, 9], :] = 1
    annotation = SparseAnnotation([labels], [volume.shape], axis=1, labeled_slices={0: [3, 5, 7, 9, 11]})
    drawn = _slices_drawn(SlicePool([volume], annotation), 4000)
    assert np.mean(drawn == 11) == pytest.approx(0.2, abs=0.03)


def test_scribble_crops_always_hold_supervision():
    volume = np.zeros((3, 64, 64), dtype=np.float32)
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[1, 50, 7] = 2  # a single background scribble pixel
    annotation = SparseAnnotation([labels], [volume.shape], axis=0, mode="scribble", background_value=2)
    pool = SlicePool([volume], annotation)
    _, targets = pool.sample_labeled(16, 16, np.random.default_rng(0))
    assert ((targets == 0).sum(dim=(1, 2)) == 1).all()
    assert pool.unlabeled == [(0, 0), (0, 1), (0, 2)]


def test_crops_match_image_and_target():
    pool, _ = make_pool(context=1)
    images, targets = pool.sample_labeled(6, 4, np.random.default_rng(2), foreground_prob=0.5)
    assert images.shape == (6, 3, 4, 4)
    for image, target in zip(images, targets, strict=True):
        slice_index = int(image[1, 0, 0])  # ramp: the value is the slice index
        assert slice_index in (0, 10)
        np.testing.assert_array_equal(image[0], max(slice_index - 1, 0))
        if slice_index == 0:
            assert (target == 1).all()


def test_sampling_is_deterministic_with_seed():
    pool, _ = make_pool()
    a = pool.sample_labeled(3, 8, np.random.default_rng(5), 0.5)
    b = pool.sample_labeled(3, 8, np.random.default_rng(5), 0.5)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        pool.sample_unlabeled(3, 8, np.random.default_rng(5)),
        pool.sample_unlabeled(3, 8, np.random.default_rng(5)),
    )


def test_update_annotation_rebuilds_pools():
    pool, volume = make_pool()
    labels = np.zeros(volume.shape, dtype=np.uint8)
    labels[:, 5, :] = 4
    pool.update_annotation(SparseAnnotation([labels], [volume.shape], axis=1))
    assert pool.labeled == [(0, 5)]
    _, targets = pool.sample_labeled(2, 4, np.random.default_rng(0), 1.0)
    assert (targets == 1).all()
    with pytest.raises(ValueError, match="do not match"):
        pool.update_annotation(SparseAnnotation([labels[:3]], [labels[:3].shape]))


def test_sampling_errors():
    pool, volume = make_pool()
    with pytest.raises(ValueError, match="foreground_prob"):
        pool.sample_labeled(1, 8, np.random.default_rng(0), 1.5)
    with pytest.raises(ValueError, match="batch"):
        pool.sample_unlabeled(0, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="3D"):
        SlicePool([volume[0]], pool.annotation)
    with pytest.raises(ValueError, match="context"):
        SlicePool([volume], pool.annotation, context=-1)


# ------------------------------------------------------------- the propagated slices as labeled data
def _tube_pool(prior_source: str = "propagation") -> tuple[SlicePool, np.ndarray]:
    from tests.data.test_propagation import painted, winding_tube

    image, truth = winding_tube(depth=24)
    annotation = SparseAnnotation([painted(truth, (4, 19))], [image.shape], axis=0)
    return SlicePool([normalize_volume(image)], annotation, prior=True, prior_source=prior_source), truth


def test_propagated_slices_are_taught_where_the_prior_is_sure():
    pool, truth = _tube_pool()
    rng = np.random.default_rng(0)
    images, targets = pool.sample_labeled(16, 48, rng, foreground_prob=0.5, prior_share=1.0, prior_confidence=0.9)
    assert images.shape == (16, 1, 48, 48)
    # Every crop comes from an unlabeled slice the prior covers, beyond the painted range included.
    assert {s for _, s in pool.between} >= {0, 1, 2, 3, 10, 20, 21}
    assert (targets == 1).any() and (targets == -1).any()  # uncertain borders are ignored
    assert (targets >= 0).float().mean() > 0.8
    # What is taught (the prior where it is sure) agrees with the truth nearly everywhere.
    prior = pool.priors[0]
    for _, s in pool.between:
        sure = prior.confidence_at(s) >= 0.9
        assert (prior.classes_at(s)[sure] == truth[s][sure]).mean() > 0.97
    stricter = pool.sample_labeled(16, 48, rng, prior_share=1.0, prior_confidence=1.0)[1]
    assert (stricter == -1).float().mean() > (targets == -1).float().mean()


def test_no_prior_share_samples_only_the_painted_slices():
    pool, truth = _tube_pool("interpolation")
    rng = np.random.default_rng(1)
    _, targets = pool.sample_labeled(8, 48, rng, prior_share=0.0)
    assert set(np.unique(targets.numpy())) <= {0, 1}
    with pytest.raises(ValueError, match="prior_share"):
        pool.sample_labeled(2, 48, rng, prior_share=1.5)
    # Interpolation covers only the slices between the painted ones.
    assert {s for _, s in pool.between} == set(range(5, 19))
