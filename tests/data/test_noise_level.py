"""Tests for napari_action.data.noise_level: the noise of a volume, and how much to add to painted crops."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.noise_level import noise_level, noise_to_add
from napari_action.data.normalized_volume import NormalizedVolume


def anatomy_with_noise(noise: float, seed: int = 0, shape=(64, 64, 12)) -> np.ndarray:
    """Smooth shapes with sharp edges (what the estimate must see past) plus Gaussian noise of sd ``noise``."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    plane = np.where(np.hypot(yy - 30, xx - 34) < 14, 2.0, 0.0) + 0.02 * xx + np.where(yy > 50, -1.0, 0.0)
    rng = np.random.default_rng(seed)
    return (plane[..., None] + rng.normal(0.0, noise, shape)).astype(np.float32)


@pytest.mark.parametrize("noise", [0.05, 0.2, 0.4])
def test_the_noise_of_a_volume_is_found_past_its_edges(noise):
    image = anatomy_with_noise(noise)
    volume = NormalizedVolume.exact(image)
    in_z_units = noise / float(volume.statistics.std)
    assert noise_level(volume, axis=2) == pytest.approx(in_z_units, rel=0.15)


def test_noise_is_added_only_to_reach_a_clearly_noisier_volume():
    assert noise_to_add([0.11, 0.12, 0.13], painted=[0]) == 0.0  # alike: the demo's hearts
    assert noise_to_add([0.11, 0.34, 0.15], painted=[0]) == pytest.approx(np.sqrt(0.34**2 - 0.11**2))
    assert noise_to_add([0.30, 0.10], painted=[0]) == 0.0  # the painted scan is the noisy one
    assert noise_to_add([0.11, 0.34, 0.30], painted=[0, 2]) == pytest.approx(np.sqrt(0.34**2 - 0.11**2))
    assert noise_to_add([0.0, 0.02], painted=[0]) == 0.0  # a clean synthetic image next to an almost clean one
    assert noise_to_add([0.2, 0.4], painted=[]) == 0.0
