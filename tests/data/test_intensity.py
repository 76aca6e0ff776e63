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


def ct_slab(padding: float, shape=(6, 96, 96), seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """An axial CT slab in HU: air around a soft-tissue body with a bone disc, and ``padding`` outside a
    circular field of view (a quarter of the voxels, as dcm2niix writes a scanner's square images)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape[1:]) - (np.array(shape[1:]) - 1)[:, None, None] / 2
    body = (rows / 36.0) ** 2 + (cols / 44.0) ** 2 <= 1.0
    plane = np.where(body, 40.0, -1000.0)
    plane[(rows - 12) ** 2 + cols**2 <= 100] = 700.0  # a vertebral body
    image = np.repeat(plane[None], shape[0], axis=0) + rng.normal(0, 15, shape)
    image = np.maximum(image, -1024.0)  # the scanner's floor: air never reads below -1024 HU
    image[:, rows**2 + cols**2 > (shape[1] / 2) ** 2] = padding
    return image.astype(np.float32), np.repeat(body[None], shape[0], axis=0)


@pytest.mark.parametrize("padding", [-2048.0, -3024.0])
def test_a_ct_padded_outside_its_field_of_view_normalises_as_one_padded_with_air(padding):
    # Scanners pad outside the field of view with -1024, -2048 or -3024 HU. Counted as intensities, -3024
    # set the lower clip bound and Otsu split the padding from air and body together: the same spine sat
    # 0.9, 0.4 or 0.6 standard deviations above the mean by its padding value alone, its air at -1.4 or -6.2.
    air_padded, body = ct_slab(-1024.0)
    padded, _ = ct_slab(padding)
    reference = normalize_volume(air_padded)
    normalised = normalize_volume(padded)
    assert np.abs(normalised[body] - reference[body]).max() < 0.05
    assert normalised.min() == pytest.approx(reference.min(), abs=0.05)  # the padding reads as air
    assert exact_statistics(padded).pad == pytest.approx(exact_statistics(air_padded).pad, abs=0.05)
    assert np.abs(normalize_volume(padded, reference="foreground")[body] - reference[body]).max() > 0.3  # before


def test_zeros_next_to_the_anatomy_are_no_fill_value():
    # A skull-stripped brain's zeros (its darkest tissue close above them) and a mask's two values are
    # normalised as the foreground reference always did.
    image, _ = anatomy()
    assert np.array_equal(normalize_volume(image), normalize_volume(image, reference="foreground"))
    mask = np.zeros((4, 16, 16), np.float32)
    mask[:, 4:12, 4:12] = 1.0
    assert np.array_equal(normalize_volume(mask), normalize_volume(mask, reference="foreground"))


def test_the_reference_is_a_checked_setting():
    assert TrainConfig().intensity_reference == "foreground_in_view"
    with pytest.raises(ValueError, match="intensity_reference"):
        TrainConfig(intensity_reference="median").validate()
    with pytest.raises(ValueError, match="reference"):
        normalize_volume(np.ones((2, 2, 2)), reference="median")
