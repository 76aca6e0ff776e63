"""Crops from the planes orthogonal to the painted slices.

A 2D network that only sees the painted plane never learns how a structure
continues from one slice to the next. The two orthogonal planes show exactly
that: a plane through a volume perpendicular to the painted slices crosses
every painted slice along one line, so it carries a few fully labeled lines
(one per painted slice) and, between them, the shape of each structure across
slices. Training on such crops (supervised on the labeled lines only, the rest
ignored) and averaging the predictions of the three orientations gives the
network through-plane context at the cost of a 2D network.

Coordinates: volumes are axis-first views ``(S, H, W)`` with the painted
slices along ``S``. Plane orientation ``q`` is the axis of that view held
fixed: ``q = 0`` is a painted-axis slice ``(H, W)``, ``q = 1`` a plane
``(S, W)`` at one row, ``q = 2`` a plane ``(S, H)`` at one column. In every
orthogonal plane the painted-slice axis runs down the rows.
"""

from __future__ import annotations

import numpy as np

from napari_action.data.annotations import IGNORE_INDEX, SparseAnnotation

__all__ = ["OrthogonalPlanes", "sparse_target_volume"]


def sparse_target_volume(annotation: SparseAnnotation, volume_index: int) -> np.ndarray:
    """Axis-first class-id targets of one volume: labeled slices filled, the rest ``-1``."""
    shape = (annotation.num_slices(volume_index), *annotation.slice_shape(volume_index))
    dtype = np.int8 if annotation.num_classes < 127 else np.int16
    volume = np.full(shape, IGNORE_INDEX, dtype)
    for s in annotation.labeled_slices(volume_index):
        volume[s] = annotation.target(volume_index, s)
    return volume


class OrthogonalPlanes:
    """Image and target crops of one volume in the three plane orientations.

    Parameters
    ----------
    view : np.ndarray
        Normalised volume, axis-first ``(S, H, W)`` (painted slices along ``S``).
    targets : np.ndarray
        Same shape: class ids on labeled slices, ``-1`` elsewhere.
    pad : float
        Image value outside the volume.
    context : int
        2.5D context: neighbouring planes (same orientation) as channels.
    """

    def __init__(self, view: np.ndarray, targets: np.ndarray, pad: float, context: int = 0):
        if view.shape != targets.shape:
            raise ValueError(f"Targets {targets.shape} do not match the volume {view.shape}.")
        self._images = [np.moveaxis(view, q, 0) for q in range(3)]
        self._targets = [np.moveaxis(targets, q, 0) for q in range(3)]
        self._pad = pad
        self._context = int(context)
        self.shape = view.shape

    def plane_shape(self, q: int) -> tuple[int, int]:
        """``(rows, columns)`` of a plane of orientation ``q``."""
        return self._images[q].shape[1:]

    def through(self, q: int, s: int, y: int, x: int) -> tuple[int, tuple[int, int]]:
        """Index of the plane of orientation ``q`` through voxel ``(s, y, x)``, and the voxel in it."""
        return ((s, (y, x)), (y, (s, x)), (x, (s, y)))[q]

    def image(self, q: int, index: int, corner: tuple[int, int], crop: int) -> np.ndarray:
        """``(C, crop, crop)`` float32 crop of plane ``index`` (channels: neighbouring planes)."""
        stack = self._images[q]
        offsets = np.arange(-self._context, self._context + 1)
        channels = np.clip(index + offsets, 0, stack.shape[0] - 1)
        out = np.full((channels.size, crop, crop), self._pad, np.float32)
        src, dst = overlap(stack.shape[1:], corner, crop)
        for c, plane in enumerate(channels):
            out[(c, *dst)] = stack[plane][src]
        return out

    def target(self, q: int, index: int, corner: tuple[int, int], crop: int) -> np.ndarray:
        """``(crop, crop)`` int64 target crop, ``-1`` where unlabeled or outside."""
        out = np.full((crop, crop), IGNORE_INDEX, np.int64)
        src, dst = overlap(self._targets[q].shape[1:], corner, crop)
        out[dst] = self._targets[q][index][src]
        return out


def overlap(shape: tuple[int, int], corner: tuple[int, int], crop: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Source slices in a 2D array and destination slices in a ``crop``-sized window at ``corner``."""
    src, dst = [], []
    for start, n in zip(corner, shape, strict=True):
        lo, hi = max(start, 0), min(start + crop, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    return tuple(src), tuple(dst)


def window_around(
    point: tuple[int, int], shape: tuple[int, int], crop: int, rng: np.random.Generator
) -> tuple[int, int]:
    """Corner of a crop containing ``point``, jittered by up to a quarter crop, clamped to the plane."""
    corner = []
    for p, n in zip(point, shape, strict=True):
        start = p + int(rng.integers(-(crop // 4), crop // 4 + 1)) - crop // 2
        corner.append(int(np.clip(start, min(0, n - crop), max(0, n - crop))))
    return corner[0], corner[1]


def random_window(shape: tuple[int, int], crop: int, rng: np.random.Generator) -> tuple[int, int]:
    """Corner of a uniformly random crop (negative = padded)."""
    return tuple(int(rng.integers(min(0, n - crop), max(0, n - crop) + 1)) for n in shape)
