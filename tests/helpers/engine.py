"""Tiny synthetic volumes and budgets shared by the engine tests."""

from __future__ import annotations

import numpy as np

from napari_action.config import TrainConfig
from napari_action.data.samples import sparse_from_truth

SHAPE = (32, 32, 10)
AXIS = 2
PAINTED = (2, 7)


def tiny_config(**overrides) -> TrainConfig:
    """A schedule of a few steps on 32x32 crops with a 4-wide U-Net (CPU-friendly)."""
    base = dict(
        steps_stage1=2,
        steps_stage2=2,
        steps_stage3=3,
        crop_size=32,
        model={"base_width": 4, "rep_dim": 16, "global_dim": 32},
        loss={"anco_queries": 8, "anco_negatives": 8, "queue_size": 4},
        stream_every_steps=2,
        stream_every_seconds=1e9,
        stream_slices=4,
        device="cpu",
    )
    base.update(overrides)
    return TrainConfig.preset("cpu", **base)


def disc_volume(seed: int = 0, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (label 1) inside a dark ring (label 2) on every slice, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radius = np.hypot(yy - shape[0] / 2 + 0.5, xx - shape[1] / 2 + 0.5)
    truth2d = np.where(radius < 6, 1, np.where(radius < 10, 2, 0)).astype(np.uint8)
    truth = np.repeat(truth2d[..., None], shape[2], axis=2)
    image = np.choose(truth, [100.0, 300.0, 40.0]) + rng.normal(0, 10, shape)
    return image.astype(np.float32), truth


def sparse(truth: np.ndarray, slices=PAINTED, axis: int = AXIS) -> np.ndarray:
    """The truth on ``slices`` only, zero elsewhere (a user who painted those slices)."""
    return sparse_from_truth(truth, axis, list(slices))
