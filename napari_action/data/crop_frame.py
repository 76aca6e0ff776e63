"""Where a volume's training crops are read, and how they reach the training pixel size.

Every crop the network trains on is ``crop × crop`` pixels at the painted slices' pixel size. On a
volume stored at that size a crop is read as it is. On a volume of another in-plane voxel size
(another scanner, another protocol: a cohort's unpainted subjects) the window read covers the same
millimetres, ``crop / scale`` pixels each way, and is then resized to ``crop × crop``; prediction
resizes that volume's slices the same way (:mod:`napari_action.data.pixel_size`), so the network
meets every structure at one size in pixels, in training and in prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from napari_action.data.pixel_size import resize_slices

__all__ = ["CropFrame"]

Region = Callable[[slice, slice], np.ndarray]


@dataclass(frozen=True)
class CropFrame:
    """One volume's slice size and its enlargement to the training pixel size.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the volume's slices.
    scale : (float, float) or None
        How much the volume's slices are enlarged (rows, columns) to reach the training pixel
        size (:func:`~napari_action.data.pixel_size.slice_scale`); None: read as they are.
    """

    shape: tuple[int, int]
    scale: tuple[float, float] | None = None

    def window(self, crop: int) -> tuple[int, int]:
        """Rows and columns read for a ``crop``-pixel training crop."""
        if self.scale is None:
            return crop, crop
        return max(1, round(crop / self.scale[0])), max(1, round(crop / self.scale[1]))

    def random_corner(self, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a uniform random window (negative = padded)."""
        return tuple(  # type: ignore[return-value]
            int(rng.integers(min(0, n - size), max(0, n - size) + 1))
            for n, size in zip(self.shape, self.window(crop), strict=True)
        )

    def corner_around(self, flat_pixel: int, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Corner of a window containing ``flat_pixel``, jittered by up to a quarter window."""
        corner = []
        for p, n, size in zip(divmod(flat_pixel, self.shape[1]), self.shape, self.window(crop), strict=True):
            start = p + int(rng.integers(-(size // 4), size // 4 + 1)) - size // 2
            # Clamping to the valid range keeps the pixel inside the window
            # (jitter <= size/4) while avoiding needless padding at the border.
            corner.append(int(np.clip(start, min(0, n - size), max(0, n - size))))
        return corner[0], corner[1]

    def read(
        self, region: Region, corner: tuple[int, int], crop: int, fill: float, *, nearest: bool = False
    ) -> np.ndarray:
        """The ``crop × crop`` training crop of the window at ``corner``, ``fill`` outside the slice.

        ``region(rows, cols)`` returns that part of the slice. Images and confidences are resized
        bilinearly; class ids (``nearest=True``) by the nearest pixel, so no class is invented.
        """
        size = self.window(crop)
        src, dst = self._overlap(corner, size)
        part = region(*src)
        out = np.full(size, fill, dtype=part.dtype)
        out[dst] = part
        return out if size == (crop, crop) else _resized(out, crop, nearest)

    def _overlap(
        self, corner: tuple[int, int], size: tuple[int, int]
    ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """Source slices in the slice and destination slices in the window."""
        src, dst = [], []
        for start, n, length in zip(corner, self.shape, size, strict=True):
            lo, hi = max(start, 0), min(start + length, n)
            src.append(slice(lo, hi))
            dst.append(slice(lo - start, hi - start))
        return (src[0], src[1]), (dst[0], dst[1])


def _resized(window: np.ndarray, crop: int, nearest: bool) -> np.ndarray:
    batch = torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32))[None, None]
    if nearest:
        resized = torch.nn.functional.interpolate(batch, size=(crop, crop), mode="nearest-exact")
    else:
        resized = resize_slices(batch, (crop, crop))
    return resized[0, 0].numpy().astype(window.dtype)
