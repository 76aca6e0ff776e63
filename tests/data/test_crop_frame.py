"""Training crops of a volume of another voxel size are read over the same millimetres and resized."""

from __future__ import annotations

import numpy as np

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.crop_frame import CropFrame
from napari_action.data.slice_pool import SlicePool


def disc_slices(shape: tuple[int, int], radius: float, value: float, n_slices: int = 5) -> np.ndarray:
    """``(H, W, n_slices)`` of ``value`` inside a centred disc, 0.0 outside."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    centre = (np.array(shape) - 1) / 2.0
    disc = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
    return np.repeat(disc[..., None], n_slices, axis=2).astype(np.float32) * value


def test_a_frame_at_the_training_size_reads_the_window_as_it_is():
    frame = CropFrame((10, 12))
    slice_2d = np.arange(120, dtype=np.float32).reshape(10, 12)
    crop = frame.read(lambda rows, cols: slice_2d[rows, cols], (-2, 4), 6, fill=-1.0)
    assert frame.window(6) == (6, 6)
    np.testing.assert_array_equal(crop[2:], slice_2d[:4, 4:10])
    assert (crop[:2] == -1.0).all()


def test_a_coarser_frame_reads_a_smaller_window_and_keeps_classes_whole():
    frame = CropFrame((40, 40), scale=(2.0, 4.0))
    assert frame.window(16) == (8, 4)
    classes = np.zeros((40, 40), np.int64)
    classes[:, 20:] = 2
    crop = frame.read(lambda rows, cols: classes[rows, cols], (10, 18), 16, fill=-1, nearest=True)
    assert crop.shape == (16, 16) and crop.dtype == np.int64
    assert set(np.unique(crop)) == {0, 2}  # nearest: no class between 0 and 2 appears
    assert (crop[:, :8] == 0).all() and (crop[:, 8:] == 2).all()  # the edge stays where it was, enlarged
    rng = np.random.default_rng(0)
    for _ in range(50):
        y0, x0 = frame.corner_around(25 * 40 + 3, 16, rng)
        assert y0 <= 25 < y0 + 8 and x0 <= 3 < x0 + 4


def test_the_unpainted_volume_of_another_voxel_size_trains_at_the_painted_size():
    painted = disc_slices((64, 64), radius=12.0, value=1.0)  # 1 mm: a disc of radius 12 pixels
    coarse = disc_slices((32, 32), radius=6.0, value=2.0)  # the same disc stored at 2 mm (told apart by its value)
    labels = np.zeros(painted.shape, np.uint8)
    labels[..., 2] = painted[..., 2] > 0.5
    annotation = SparseAnnotation([labels, None], [painted.shape, coarse.shape], axis=2)
    spacings = [(1.0, 1.0, 3.0), (2.0, 2.0, 3.0)]
    affines = [np.diag([*spacing, 1.0]) for spacing in spacings]
    pool = SlicePool([painted, coarse], annotation, prior=True, spacings=spacings, affines=affines, resize_crops=True)
    assert pool.pixel_mm == (1.0, 1.0)
    rng = np.random.default_rng(1)
    images, prior, weight = pool.sample_unlabeled_with_prior(64, 64, rng, share=1.0, decay=10.0)
    from_coarse = [i for i in range(len(images)) if images[i, 0].max() > 1.5]
    assert len(from_coarse) > 5, "too few crops of the coarse volume were drawn"
    carried = 0
    for i in from_coarse:
        inside = images[i, 0].numpy() > 1.0
        # The disc covers about pi * 12^2 = 452 pixels, as on the painted volume (113 as stored).
        assert abs(inside.sum() - np.pi * 12.0**2) < 40
        prior_disc = prior[i].numpy() == 1
        if prior_disc.any():  # the carried prior lies on the enlarged disc, not on the stored one
            carried += 1
            assert (prior_disc & inside).sum() / prior_disc.sum() > 0.8 and prior_disc.sum() > 300
            assert set(np.unique(prior[i].numpy())) <= {-1, 0, 1}
    assert carried > 0, "the coarse volume got no carried prior"
    as_stored_pool = SlicePool([painted, coarse], annotation, spacings=spacings)  # resize_crops off (the default)
    assert as_stored_pool.pixel_mm == (1.0, 1.0)  # still known: prediction resizes
    crops = as_stored_pool.sample_unlabeled(64, 64, np.random.default_rng(1)).numpy()
    as_stored = [(c[0] > 1.0).sum() for c in crops if c[0].max() > 1.5]
    assert as_stored and max(as_stored) < 150  # as stored: the coarse disc stays small
