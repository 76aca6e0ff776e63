"""Tests for napari_action.data.normalized_volume: images normalised crop by crop, in memory or on disk."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.intensity import exact_statistics, normalize_volume, pad_value
from napari_action.data.normalized_volume import CACHED_SLICES, NormalizedVolume, is_array_like
from napari_action.data.slice_pool import SlicePool
from napari_action.io.volume_source import open_volume_source
from tests.helpers.engine import disc_volume, sparse, write_nifti


def awkward_volumes() -> list[np.ndarray]:
    """Float64 with outliers, int16 in Fortran order, float32 with a constant block: the dtypes images come in."""
    rng = np.random.default_rng(3)
    noisy = rng.normal(50.0, 20.0, (9, 17, 13))
    noisy[0, 0, :4] = [1e5, -1e5, 3e4, 7.25]
    integers = np.asfortranarray(rng.integers(-1000, 3000, (11, 7, 15)).astype(np.int16))
    flat = rng.gamma(2.0, 3.0, (6, 10, 8)).astype(np.float32)
    flat[:, :5] = 4.0
    return [noisy, integers, flat]


@pytest.mark.parametrize("index", range(3))
def test_exact_pieces_are_the_bits_of_the_whole_normalised_volume(index):
    volume = awkward_volumes()[index]
    reference = normalize_volume(volume)
    normalized = NormalizedVolume.exact(volume)
    np.testing.assert_array_equal(normalized.whole(), reference)
    assert normalized.pad == pad_value(reference)
    for axis in range(3):
        moved = np.moveaxis(reference, axis, 0)
        np.testing.assert_array_equal(normalized.block(axis, 1, 4), moved[1:4])
        rows, cols = slice(1, 5), slice(2, None)
        np.testing.assert_array_equal(normalized.region(axis, 2, rows, cols), moved[2][rows, cols])


def test_a_pool_over_raw_images_samples_the_bits_of_a_pool_over_normalised_copies():
    image, truth = disc_volume(0)
    raw = (image * 7.3 - 11).astype(np.float64)  # not float32: the normalisation converts it
    labels = sparse(truth)
    annotation = SparseAnnotation([labels], [raw.shape], axis=2)
    before = SlicePool([normalize_volume(raw)], annotation, context=1, prior=True)  # how the trainer did it
    after = SlicePool([NormalizedVolume.exact(raw)], annotation, context=1, prior=True)
    draws = [np.random.default_rng(5), np.random.default_rng(5)]
    old, new = (
        [
            *pool.sample_labeled(6, 40, rng, foreground_prob=0.5),
            pool.sample_unlabeled(6, 24, rng),
            *pool.sample_unlabeled_with_prior(6, 24, rng, share=0.7, decay=4.0),
            pool.image(0, 4),
        ]
        for pool, rng in zip((before, after), draws, strict=True)
    )
    for expected, found in zip(old, new, strict=True):
        np.testing.assert_array_equal(np.asarray(found), np.asarray(expected))
    assert after.pad_value(0) == before.pad_value(0)


class CountingReader:
    """A slice source over an array that records which slices were read (a VolumeSource's interface)."""

    def __init__(self, volume: np.ndarray) -> None:
        self.volume = volume
        self.reads: list[tuple[int, int, int]] = []

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.volume.shape

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        self.reads.append((axis, start, stop))
        return np.moveaxis(self.volume, axis, 0)[start:stop].copy()


def test_a_lazy_image_is_read_a_slice_at_a_time_and_recent_slices_are_kept():
    volume = awkward_volumes()[1]
    reader = CountingReader(volume)
    normalized = NormalizedVolume(reader, exact_statistics(volume))
    reference = np.moveaxis(normalize_volume(volume), 2, 0)
    np.testing.assert_array_equal(normalized.region(2, 3, slice(2, 6), slice(0, 4)), reference[3, 2:6, :4])
    np.testing.assert_array_equal(normalized.region(2, 3, slice(None), slice(None)), reference[3])
    assert reader.reads == [(2, 3, 4)]  # the second crop of slice 3 came from the cache


def test_only_the_last_slices_read_are_kept():
    reader = CountingReader(np.arange(4 * 5 * (CACHED_SLICES + 2), dtype=np.int16).reshape(4, 5, -1))
    normalized = NormalizedVolume(reader, exact_statistics(reader.volume))
    whole = slice(None)
    for index in range(CACHED_SLICES + 1):  # one more than is kept: slice 0 goes
        normalized.region(2, index, whole, whole)
    normalized.region(2, CACHED_SLICES, whole, whole)
    assert len(reader.reads) == CACHED_SLICES + 1
    normalized.region(2, 0, whole, whole)
    assert reader.reads[-1] == (2, 0, 1)


def test_sampled_statistics_of_a_small_nifti_equal_the_in_memory_ones(tmp_path):
    volume = awkward_volumes()[1]
    source = open_volume_source(write_nifti(tmp_path / "image.nii", volume))
    assert is_array_like(source) and not is_array_like(volume)
    normalized = NormalizedVolume.sampled(source, axis=1)
    assert normalized.statistics.exact
    # Integer intensities: percentiles and mean are exact in any order, the std up to rounding.
    np.testing.assert_allclose(normalized.whole(), normalize_volume(volume), rtol=0, atol=1e-6)


def test_a_zarr_array_is_normalised_without_being_loaded(tmp_path):
    volume = awkward_volumes()[0].astype(np.float32)
    array = zarr.create_array(str(tmp_path / "image.zarr"), shape=volume.shape, chunks=(3, 17, 13), dtype="f4")
    array[:] = volume
    normalized = NormalizedVolume.sampled(zarr.open_array(str(tmp_path / "image.zarr"), mode="r"), axis=0)
    np.testing.assert_allclose(normalized.block(0, 2, 5), normalize_volume(volume)[2:5], rtol=0, atol=1e-6)


def test_an_image_with_nan_voxels_is_refused():
    volume = np.ones((4, 5, 6), np.float32)
    volume[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NormalizedVolume.sampled(CountingReader(volume), axis=0)
