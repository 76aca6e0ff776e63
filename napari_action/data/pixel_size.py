"""Slices of another voxel size, seen at the pixel size the network was trained at.

A 2D network learns structures at the size in pixels they have on its training slices. A scan
from another scanner or protocol stores the same anatomy at another in-plane voxel size: at
1.5 mm where training had 1 mm, every structure is a third smaller in pixels and a network trained
on 1 mm misreads it (Colin27, 3 painted slices: mean Dice 0.759 at 1 mm, 0.631 on the same brain
stored at 1.5 mm; docs/benchmarks.md, "Scans of another voxel size"). Prediction therefore resizes
each slice to the training pixel size, predicts, and resizes the probabilities back onto the
slice's own grid, so the labels still lie voxel for voxel on the source image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.propagation import slicing_spacing

__all__ = [
    "MAX_SCALED_PIXELS",
    "PIXEL_MM_KEY",
    "RESAMPLE_TOLERANCE",
    "painted_pixel_mm",
    "resize_slices",
    "scaled_size",
    "slice_scale",
]

#: Where a checkpoint keeps the in-plane pixel size its network was trained at (``Checkpoint.extra``).
PIXEL_MM_KEY = "pixel_mm"
#: Relative difference in pixel size left as it is: training zooms its crops by ±10 %, so the network
#: has seen structures that much larger and smaller, and resizing would only blur the slice.
RESAMPLE_TOLERANCE = 0.05
#: Pixels of a slice enlarged to the training pixel size beyond which prediction refuses (a 4096² slice).
MAX_SCALED_PIXELS = 4096 * 4096


def slice_scale(
    spacing: Sequence[float] | None, pixel_mm: Sequence[float] | None, axis: int
) -> tuple[float, float] | None:
    """How much to enlarge a slice (rows, columns) so that its pixels have the training size ``pixel_mm``;
    None when either size is unknown or they differ by less than :data:`RESAMPLE_TOLERANCE`."""
    if spacing is None or pixel_mm is None:
        return None
    scale = np.asarray(slicing_spacing(spacing, axis)[1:]) / np.asarray(pixel_mm, dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        return None
    if np.all(np.abs(scale - 1.0) < RESAMPLE_TOLERANCE):
        return None
    return float(scale[0]), float(scale[1])


def resize_slices(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, C, H, W)`` resized to ``size`` bilinearly; shrinking averages first, so fine detail does not alias.

    Probabilities stay probabilities: each output pixel is a weighted mean of input pixels.
    """
    shrinking = size[0] < batch.shape[-2] or size[1] < batch.shape[-1]
    return torch.nn.functional.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def scaled_size(size: tuple[int, int], scale: tuple[float, float]) -> tuple[int, int]:
    """The size of a ``size`` slice enlarged by ``scale`` (at least one pixel each way).

    Raises
    ------
    ValueError
        When the enlarged slice would be huge: pixel sizes that far apart are a header's error (a unit, a
        zoom) or a model meant for other images, and the resize would end in an allocation failure.
    """
    scaled = max(1, round(size[0] * scale[0])), max(1, round(size[1] * scale[1]))
    if scaled[0] * scaled[1] > max(MAX_SCALED_PIXELS, 4 * size[0] * size[1]):
        raise ValueError(
            f"This image's pixels are {scale[0]:.3g} × {scale[1]:.3g} times the size of those the model was trained "
            f"on: seeing its {size[0]} × {size[1]} slices at the training pixel size would take slices of "
            f"{scaled[0]} × {scaled[1]} pixels. Check the voxel sizes in the image's header (their unit too), "
            "or train a model on images of this resolution."
        )
    return scaled


def painted_pixel_mm(annotation: SparseAnnotation, spacings: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """The in-plane voxel size of the painted slices (mm; the mean over painted volumes), at which the
    network learns its structures; None before any paint."""
    painted = annotation.painted_volumes
    if not painted:
        return None
    sizes = np.array([slicing_spacing(spacings[v], annotation.axis)[1:] for v in painted])
    return tuple(float(x) for x in sizes.mean(axis=0))  # type: ignore[return-value]
