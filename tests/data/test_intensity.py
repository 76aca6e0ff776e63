"""The foreground normalisation: an anatomy's z-scores do not depend on the background around it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_action.config import TrainConfig
from napari_action.data.intensity import MIN_SPREAD_OF_RANGE, exact_statistics, normalize_volume, otsu_threshold


def anatomy(shape=(24, 40, 40), seed: int = 0) -> np.ndarray:
    """Smooth grey-level texture (tissues) inside an ellipsoid, zero outside (a skull-stripped scan)."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=shape), 2.0)
    texture = 120.0 + 40.0 * texture / texture.std() + rng.normal(0, 3, shape)
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    inside = ((grid / (np.array(shape)[:, None, None, None] * 0.45)) ** 2).sum(0) <= 1.0
    return np.where(inside, texture, 0.0).astype(np.float32), inside


def test_a_wider_field_of_view_leaves_the_anatomy_where_it_was():
    image, inside = anatomy()
    # The same scan with three times the empty space around it (another field of view, a stripped skull).
    wide = np.pad(image, [(n, n) for n in image.shape])
    core = tuple(slice(n, 2 * n) for n in image.shape)

    def shift(reference: str) -> np.ndarray:
        narrow = normalize_volume(image, reference=reference)[inside]
        return np.abs(normalize_volume(wide, reference=reference)[core][inside] - narrow)

    assert shift("foreground").max() < 0.05
    assert shift("whole").mean() > 1.0  # what whole-volume moments did to it


def test_otsu_splits_two_populations_between_them():
    rng = np.random.default_rng(1)
    low, high = rng.normal(10, 2, 5000).astype(np.float32), rng.normal(50, 5, 1000).astype(np.float32)
    threshold = otsu_threshold(np.concatenate([low, high]))
    assert low.max() <= threshold < high.min()  # any split in the gap is as good; it is in the gap
    assert otsu_threshold(np.full(10, 3.0, np.float32)) is None


def test_a_uniform_bright_object_does_not_blow_its_noise_up():
    # A bright disc of one grey on a background: the disc alone is the foreground, its spread only noise.
    rng = np.random.default_rng(2)
    image = np.full((8, 32, 32), 100.0) + rng.normal(0, 2, (8, 32, 32))
    image[:, 10:20, 10:20] += 200.0
    statistics = exact_statistics(image)
    assert statistics.std == pytest.approx(MIN_SPREAD_OF_RANGE * (statistics.high - statistics.low))


def test_the_reference_is_a_checked_setting():
    assert TrainConfig().intensity_reference == "foreground"
    with pytest.raises(ValueError, match="intensity_reference"):
        TrainConfig(intensity_reference="median").validate()
    with pytest.raises(ValueError, match="reference"):
        normalize_volume(np.ones((2, 2, 2)), reference="median")
