"""Interpolation between painted slices, on hand-made shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.interpolation import SliceInterpolator, interpolate_class_slices, interpolate_labels

SIZE = 64


def disc(radius: float, centre=(31.5, 31.5), size: int = SIZE) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def painted_volume(slices: dict[int, np.ndarray], depth: int = 11, axis: int = 2) -> np.ndarray:
    volume = np.zeros((SIZE, SIZE, depth), np.uint8)
    for s, plane in slices.items():
        volume[..., s] = plane
    return np.moveaxis(volume, 2, axis)


def area_radius(mask: np.ndarray) -> float:
    return float(np.sqrt(mask.sum() / np.pi))


def test_a_disc_growing_linearly_grows_linearly():
    volume = painted_volume({0: disc(10) * 5, 10: disc(20) * 5})
    result = interpolate_labels(volume, axis=2)
    radii = [area_radius(result[..., z] == 5) for z in range(11)]
    # Signed distances of concentric discs blend into a disc of the blended radius.
    np.testing.assert_allclose(radii, np.linspace(10, 20, 11), atol=0.6)
    assert set(np.unique(result)) == {0, 5}


def test_painted_slices_are_kept_exactly_and_the_input_is_not_modified():
    volume = painted_volume({2: disc(8) * 1 + (disc(14) & ~disc(8)) * 2, 8: disc(12) * 1})
    before = volume.copy()
    result = interpolate_labels(volume, axis=2)
    np.testing.assert_array_equal(result[..., 2], volume[..., 2])
    np.testing.assert_array_equal(result[..., 8], volume[..., 8])
    np.testing.assert_array_equal(volume, before)
    assert result.dtype == volume.dtype


def test_a_class_on_one_side_only_shrinks_to_nothing_at_the_other():
    volume = painted_volume({0: disc(12) * 1 + disc(6, (10, 10)) * 3, 10: disc(12) * 1})
    result = interpolate_labels(volume, axis=2)
    sizes = [int((result[..., z] == 3).sum()) for z in range(11)]
    assert sizes[0] == int(disc(6, (10, 10)).sum())
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    assert sizes[5] > 0 and sizes[9] <= 5 and sizes[10] == 0
    # The class that is painted on both sides stays the same disc.
    np.testing.assert_array_equal(result[..., 5] == 1, disc(12) & ~(result[..., 5] == 3))


def test_touching_classes_share_a_border_without_overwriting_each_other():
    left = np.zeros((SIZE, SIZE), bool)
    left[16:48, 8:32] = True
    right = np.zeros((SIZE, SIZE), bool)
    right[16:48, 32:56] = True
    plane = left * 1 + right * 2
    result = interpolate_labels(painted_volume({0: plane, 10: plane}), axis=2)
    for z in range(11):
        np.testing.assert_array_equal(result[..., z], plane)


def test_nothing_outside_the_painted_range():
    volume = painted_volume({3: disc(10) * 1, 7: disc(10) * 1}, depth=12)
    result = interpolate_labels(volume, axis=2)
    assert not result[..., :3].any() and not result[..., 8:].any()
    assert all((result[..., z] == 1).sum() == disc(10).sum() for z in range(3, 8))


def test_an_explicitly_empty_slice_counts_as_painted_background():
    volume = painted_volume({0: disc(10) * 1})
    result = interpolate_labels(volume, axis=2, labeled_slices=[10])
    sizes = [int(result[..., z].sum()) for z in range(11)]
    assert sizes[0] > sizes[5] > 0 and sizes[10] == 0


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_any_slicing_axis(axis):
    volume = painted_volume({0: disc(10) * 4, 10: disc(20) * 4}, axis=axis)
    result = interpolate_labels(volume, axis=axis)
    middle = np.take(result, 5, axis=axis)
    assert abs(area_radius(middle == 4) - 15) < 0.6


def test_anisotropic_in_plane_spacing_is_measured_in_millimetres():
    # An ellipse that is a circle in millimetres (spacing 1 x 2 mm) grows like the circle does.
    yy, xx = np.mgrid[:SIZE, :SIZE]
    small = np.hypot(yy - 31.5, (xx - 31.5) * 2) <= 8
    large = np.hypot(yy - 31.5, (xx - 31.5) * 2) <= 24
    result = interpolate_labels(painted_volume({0: small * 1, 10: large * 1}), axis=2, spacing=(1.0, 2.0, 3.0))
    expected = np.hypot(yy - 31.5, (xx - 31.5) * 2) <= 16
    assert np.logical_xor(result[..., 5] == 1, expected).sum() <= 0.05 * expected.sum()


def test_coverage_distance_and_gap_per_slice():
    targets = {2: disc(5).astype(np.int64), 6: disc(5).astype(np.int64)}
    result = interpolate_class_slices(targets, num_slices=10, num_classes=2)
    np.testing.assert_array_equal(result.covered, [0, 0, 1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(result.distance, [2, 1, 0, 1, 2, 1, 0, 1, 2, 3])
    np.testing.assert_array_equal(result.gap, [0, 0, 0, 4, 4, 4, 0, 0, 0, 0])


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ValueError, match="Nothing is painted"):
        interpolate_labels(np.zeros((8, 8, 4), np.uint8), axis=2)
    with pytest.raises(ValueError, match="3D"):
        interpolate_labels(np.zeros((8, 8), np.uint8), axis=1)
    with pytest.raises(ValueError, match="outside"):
        interpolate_class_slices({12: np.zeros((4, 4), np.int64)}, num_slices=10, num_classes=2)


def test_slices_interpolated_on_demand_in_any_order_equal_the_whole_interpolation():
    targets = {2: disc(10).astype(np.int64), 6: 2 * disc(4).astype(np.int64), 9: disc(7, (20.0, 40.0)).astype(np.int64)}
    targets[6][:3] = -1  # ignored pixels count as background
    whole = interpolate_class_slices(targets, 12, 3)
    slices = SliceInterpolator(targets, 12, 3, cached_slices=2)
    for z in [7, 3, 7, 0, 11, 6, 4, 8, 3, 2, 9, 5, 1, 10]:
        np.testing.assert_array_equal(slices.classes_at(z), whole.classes[z])
    assert not slices.classes_at(4).flags.writeable  # shared through the cache: read-only
    for name in ("covered", "distance", "gap"):
        np.testing.assert_array_equal(getattr(slices, name), getattr(whole, name))
    assert whole.classes[4].any() and not whole.classes[11].any()
