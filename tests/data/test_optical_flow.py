"""The propagation's own iterative Lucas-Kanade: scikit-image's flows, at a fraction of the cost."""

import numpy as np
import pytest
from scipy import ndimage
from skimage.registration import optical_flow_ilk

from napari_action.data.optical_flow import lucas_kanade_flow


def _textured(shape, seed=0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=shape)
    return ndimage.gaussian_filter(noise, 2.5).astype(np.float32)


def _deformed(image: np.ndarray) -> np.ndarray:
    """The image moved by a smooth, non-uniform displacement of up to about two pixels."""
    rows, cols = np.indices(image.shape, dtype=np.float32)
    shift_rows = 1.5 * np.sin(cols / 17.0)
    shift_cols = 2.0 * np.cos(rows / 23.0)
    return ndimage.map_coordinates(image, [rows + shift_rows, cols + shift_cols], order=1, mode="nearest")


@pytest.mark.parametrize(("shape", "radius", "warps"), [((70, 90), 4, 3), ((181, 217), 4, 3), ((64, 150), 7, 2)])
def test_same_flow_as_scikit_image(shape, radius, warps):
    # Same pyramid, warps and windows: only the per-pixel 2 x 2 solve differs (closed form against LAPACK).
    reference = _textured(shape)
    moving = _deformed(reference)
    ours = lucas_kanade_flow(reference, moving, radius=radius, warps=warps)
    theirs = optical_flow_ilk(reference, moving, radius=radius, num_warp=warps)
    assert ours.dtype == np.float32
    assert ours.shape == (2, *shape)
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_recovers_a_translation():
    reference = _textured((96, 96), seed=3)
    moving = np.roll(reference, (2, -1), axis=(0, 1))
    flow = lucas_kanade_flow(reference, moving)
    inner = (slice(None), slice(16, -16), slice(16, -16))
    np.testing.assert_allclose(np.median(flow[inner], axis=(1, 2)), [2.0, -1.0], atol=0.05)


def test_flat_images_have_no_motion():
    # Every window's system is singular: no texture, no motion (not NaN).
    flat = np.full((40, 50), 3.0, dtype=np.float32)
    flow = lucas_kanade_flow(flat, flat)
    assert np.array_equal(flow, np.zeros((2, 40, 50), np.float32))


def test_images_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        lucas_kanade_flow(np.zeros((10, 12)), np.zeros((12, 10)))
