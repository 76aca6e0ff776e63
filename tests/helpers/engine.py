"""Tiny synthetic volumes, budgets and files shared by the tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from napari_action.config import ModelConfig, TrainConfig
from napari_action.data.samples import sparse_from_truth

SHAPE = (32, 32, 10)
AXIS = 2
PAINTED = (2, 7)
DISC_CLASS_NAMES = {1: "disc", 2: "ring"}  # the labels of disc_volume
TINY_CLI_STEPS = ["--steps", "3", "--supervised-start", "1"]  # the tiny budget on the command line


def cli_train_args(images, labels, out, method: str = "supervised") -> list[str]:
    """``napari-action train`` arguments for a tiny CPU run on these files."""
    image_args = [arg for image in images for arg in ("--image", str(image))]
    return [
        "train",
        *image_args,
        "--labels",
        str(labels),
        "--method",
        method,
        "--device",
        "cpu",
        *TINY_CLI_STEPS,
        "--out",
        str(out),
    ]


def cli_predict_args(model, image, out_dir) -> list[str]:
    """``napari-action predict`` arguments for one image on the CPU."""
    return ["predict", "--model", str(model), "--image", str(image), "--out-dir", str(out_dir), "--device", "cpu"]


# A network small enough to build in a few milliseconds (the network tests).
TINY_MODEL = ModelConfig(base_width=4, global_dim=16, rep_dim=8)


def tiny_overrides(steps_stage3: int = 6, **more) -> dict:
    """``TrainConfig`` overrides: a few steps on 32x32 crops with a 4-wide U-Net (CPU-friendly).

    This is what the GUI tests hand to ``ActionWidget.config_overrides``;
    :func:`tiny_config` builds a whole configuration from the same settings.
    """
    settings = dict(
        # The paper's stages i and ii, not the cpu preset's supervised start: every ACTION stage runs.
        steps_supervised_start=0,
        steps_stage1=2,
        steps_stage2=2,
        steps_stage3=steps_stage3,
        crop_size=32,
        device="cpu",
        stream_every_steps=2,
        stream_every_seconds=1e9,
        stream_min_fit=0.0,  # tiny runs never fit well: stream at once so that streaming is exercised
        stream_over_preview="everywhere",  # the preview reaches every slice of these tiny volumes
        # float32 on every CPU: tests assert what these tiny trainings learn, and the default (bfloat16
        # where the CPU computes it natively) would make that differ between machines. The bfloat16
        # path has its own tests (tests/training/test_trainer.py).
        cpu_bfloat16=False,
        # The schedules the tests assert stay as written beside unpainted volumes (the cpu preset lengthens
        # stage iii for a cohort; tests/training/test_trainer.py tests that).
        unpainted_crops_per_volume=0,
        model={"base_width": 4, "rep_dim": 16, "global_dim": 32},
        loss={"anco_queries": 8, "anco_negatives": 8, "queue_size": 4},
    )
    settings.update(more)
    return settings


def tiny_config(**overrides) -> TrainConfig:
    """A schedule of 2 + 2 + 3 steps that streams 4 slices every 2 steps (see :func:`tiny_overrides`)."""
    settings = tiny_overrides(steps_stage3=3, stream_slices=4)
    settings.update(overrides)
    return TrainConfig.preset("cpu", **settings)


def disc_volume(seed: int = 0, shape=SHAPE, axis: int = AXIS) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (label 1) inside a dark ring (label 2) on every slice along ``axis``, plus noise.

    Returns
    -------
    image : np.ndarray
        float32 intensities of ``shape``.
    truth : np.ndarray
        uint8 labels of ``shape``, the same on every slice.
    """
    rng = np.random.default_rng(seed)
    plane = [n for a, n in enumerate(shape) if a != axis]
    yy, xx = np.mgrid[: plane[0], : plane[1]]
    radius = np.hypot(yy - plane[0] / 2 + 0.5, xx - plane[1] / 2 + 0.5)
    truth2d = np.where(radius < 6, 1, np.where(radius < 10, 2, 0)).astype(np.uint8)
    truth = np.repeat(np.expand_dims(truth2d, axis), shape[axis], axis=axis)
    image = np.choose(truth, [100.0, 300.0, 40.0]) + rng.normal(0, 10, shape)
    return image.astype(np.float32), truth


def sparse(truth: np.ndarray, slices=PAINTED, axis: int = AXIS) -> np.ndarray:
    """The truth on ``slices`` only, zero elsewhere (a user who painted those slices)."""
    return sparse_from_truth(truth, axis, list(slices))


def write_nifti(path: Path, data: np.ndarray, zooms=(0.8, 0.8, 3.0)) -> Path:
    """Save ``data`` as NIfTI with anisotropic voxels and a shifted origin."""
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.5)
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms(zooms)
    nib.save(image, str(path))
    return path


def out_of_memory_hook(times: int):
    """A forward pre-hook raising torch's own out-of-memory error on its first ``times`` calls.

    CUDA cannot run out of memory on a CPU test machine; this raises the very exception it
    raises, at the point it raises it (the network's forward).
    """
    import torch  # here, so that modules importing these helpers without torch stay light

    left = {"calls": times}

    def hook(module, inputs):
        if left["calls"] > 0:
            left["calls"] -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return hook


def planes(shape, axis, positions):
    """Binary volume with full one-voxel-thick planes at ``positions`` along ``axis``."""
    mask = np.zeros(shape, dtype=bool)
    index = [slice(None)] * len(shape)
    for p in positions:
        index[axis] = p
        mask[tuple(index)] = True
    return mask


def atlas_record(classes: int = 40, found: int = 3):
    """The quality record of a prediction of ``classes`` regions that found only the first ``found``, unsure of them."""
    from napari_action.inference.quality import QualityAccumulator

    labels = np.zeros((8, 8, 6), np.int32)
    for value in range(1, found + 1):
        labels[value, :, :] = value
    record = QualityAccumulator(range(classes + 1), axis=2, voxel_ml=0.001)
    record.add_volume(labels, np.full(labels.shape, 0.8, np.float32))
    return record.finish()
