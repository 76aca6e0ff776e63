"""The appearance weight between painted slices: counted only for structures the image shows."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_action.data.appearance_blend import AppearanceBlend, class_contrast
from napari_action.data.propagation import PropagationSettings, propagate_labels

SIZE = 40


def disc(radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.hypot(yy - SIZE / 2, xx - SIZE / 2) <= radius


def textured_volume(depth: int, disc_contrast: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A disc (label 1) on the first third of the slices, in a smooth texture that changes where it ends.

    The disc differs from a ring around it by ``disc_contrast`` (0: it looks like its surroundings).
    """
    rng = np.random.default_rng(seed)
    before, after = (40.0 * ndimage.gaussian_filter(rng.normal(0.0, 1.0, (SIZE, SIZE)), 2.0) for _ in range(2))
    mask, ring = disc(6), disc(9) & ~disc(6)
    before[mask] += disc_contrast - (before[mask].mean() - before[ring].mean())
    truth = np.zeros((depth, SIZE, SIZE), np.uint8)
    truth[: depth // 3][:, mask] = 1
    image = np.where(np.arange(depth)[:, None, None] < depth // 3, before, after) + rng.normal(0, 1, truth.shape)
    return (100.0 + image).astype(np.float32), truth


def onehot(mask: np.ndarray) -> np.ndarray:
    return np.stack([~mask, mask]).astype(np.float32)


def test_contrast_is_measured_against_a_ring_and_small_structures_say_nothing():
    image = np.zeros((SIZE, SIZE), np.float32)
    image[disc(6)] = 2.0
    assert class_contrast(image, disc(6)) == 2.0
    assert class_contrast(image, disc(0.5)) is None  # a pixel or two: too small to tell


def test_visibility_ramps_with_contrast_and_background_never_counts():
    mask = disc(6)
    for brightness, expected in ((0.0, 0.0), (0.1, 0.5), (0.5, 1.0)):
        image = np.where(mask, brightness, 0.0).astype(np.float32)
        blend = AppearanceBlend((image, image), (onehot(mask), onehot(mask)), 0.1, 3.0, contrast=0.1)
        assert blend.visibility[0] == 0.0
        np.testing.assert_allclose(blend.visibility[1], expected, atol=1e-6)


def test_where_the_sides_agree_or_the_structure_is_unseen_the_weight_is_by_distance():
    mask = disc(6)
    painted = np.where(mask, 3.0, 0.0).astype(np.float32)
    blend = AppearanceBlend((painted, painted), (onehot(mask), onehot(mask)), 0.1, 3.0, contrast=0.1)
    elsewhere = np.zeros_like(painted)
    same = (onehot(mask), onehot(mask))
    weight = blend.first_weight(elsewhere, (painted, elsewhere), same, t=0.3)
    np.testing.assert_allclose(weight, 0.7)  # no dispute: the distance weight


def test_a_structure_that_looks_like_its_surroundings_is_blended_by_distance_alone():
    depth = 21
    ends = (0, depth - 1)
    for contrast, unchanged in ((0.0, True), (60.0, False)):
        image, truth = textured_volume(depth, contrast)
        sparse = np.zeros_like(truth)
        sparse[0] = truth[0]
        result = propagate_labels(image, sparse, axis=0, labeled_slices=ends)
        by_distance = propagate_labels(
            image, sparse, axis=0, labeled_slices=ends, settings=PropagationSettings(appearance_tolerance=0.0)
        )
        assert np.array_equal(result, by_distance) == unchanged
        if unchanged:  # it is the contrast gate that keeps it: counted anyway, the texture's change decides
            ungated = PropagationSettings(appearance_contrast=0.0)
            assert not np.array_equal(propagate_labels(image, sparse, 0, None, ends, ungated), by_distance)
    # The bright disc ends where the image shows it does (slice 7), not half way.
    assert not result[depth // 3 :].any() and result[: depth // 3].all(axis=0)[disc(4)].all()
