"""A training image normalised on demand, a slice or a crop at a time.

The trainer used to keep a float32 normalised copy of every volume (4 bytes per voxel besides
the image itself). :class:`NormalizedVolume` keeps the image as it was given (an array in
memory, a memory map, a zarr or dask array, or a
:class:`~napari_action.io.volume_source.VolumeSource` reading slices from disk) and the four
numbers of the normalisation (:class:`~napari_action.data.intensity.IntensityStatistics`), and
normalises only the slices or crops asked for. The normalisation is elementwise, so a crop holds
the same bits as the same crop of the volume normalised whole
(:func:`~napari_action.data.intensity.normalize_volume`) when the statistics are exact.

Images that do not live in memory are read a whole slice at a time and the last
:data:`CACHED_SLICES` normalised slices are kept: the 2.5D context channels of a crop and the
crops of a batch often share slices, and a zarr chunk is decompressed whole for any slice in it.

This module only needs numpy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np

from napari_action.data.intensity import IntensityStatistics, exact_statistics, intensity_statistics

__all__ = ["CACHED_SLICES", "ArrayLikeReader", "NormalizedVolume", "SliceReader", "is_array_like"]

#: Normalised whole slices kept for images read from disk (16 planes of 512² float32: 16 MiB).
CACHED_SLICES = 16


class SliceReader(Protocol):
    """What :class:`NormalizedVolume` reads lazily: a shape and runs of slices along an axis, that axis first."""

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def read(self, axis: int, start: int, stop: int) -> np.ndarray: ...


def is_array_like(data: object) -> bool:
    """Whether ``data`` is read lazily: a :class:`SliceReader`, or a 3D array-like that is not a numpy array.

    Memory maps are numpy arrays: they are sliced like arrays in memory (the operating system
    pages them in and out).
    """
    if isinstance(data, np.ndarray):
        return False
    if callable(getattr(data, "read", None)) and hasattr(data, "shape"):
        return True
    return hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")


class ArrayLikeReader:
    """A :class:`SliceReader` over an array-like that supports numpy basic slicing (zarr, dask, h5py)."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        index = [slice(None)] * 3
        index[axis] = slice(start, stop)
        return np.moveaxis(np.asarray(self.data[tuple(index)]), axis, 0)


class NormalizedVolume:
    """A 3D image and its normalisation; slices, crops and runs of slices come out normalised, float32.

    Parameters
    ----------
    data : np.ndarray, SliceReader or array-like
        The image as given: a numpy array (or memory map) is sliced directly; anything else is
        read a whole slice at a time (``read(axis, start, stop)`` for a
        :class:`~napari_action.io.volume_source.VolumeSource`, numpy slicing for zarr or dask).
    statistics : IntensityStatistics or None
        The normalisation; ``None`` when ``data`` is already normalised (float32, used as is).

    Use :meth:`exact` for an array in memory and :meth:`sampled` for an image on disk.
    """

    def __init__(self, data: Any, statistics: IntensityStatistics | None) -> None:
        self._lazy = is_array_like(data)
        if self._lazy:
            self._reader: SliceReader = data if callable(getattr(data, "read", None)) else ArrayLikeReader(data)
            self._array = None
        else:
            self._array = np.asarray(data)
            if statistics is None:
                self._array = self._array.astype(np.float32, copy=False)
        if len(self.shape) != 3:
            raise ValueError(f"A training image must be 3D, got shape {self.shape}.")
        self.statistics = statistics
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._pad: float | None = None

    @classmethod
    def exact(cls, volume: np.ndarray, reference: str = "foreground_in_view") -> NormalizedVolume:
        """An array in memory, with statistics from every voxel (same bits as ``normalize_volume``).

        ``reference``: the voxels the moments are taken over (:func:`~napari_action.data.intensity.clip_and_measure`).
        """
        return cls(volume, exact_statistics(volume, reference=reference))

    @classmethod
    def sampled(cls, data: Any, axis: int, reference: str = "foreground_in_view") -> NormalizedVolume:
        """An image read lazily, with statistics from whole slices along ``axis`` (exact up to 16 Mi voxels)."""
        volume = cls(data, None)  # the reader, to take the sample through
        statistics = intensity_statistics(volume._reader, axis, reference=reference)
        if not all(np.isfinite([statistics.low, statistics.high, statistics.mean, statistics.std])):
            raise ValueError("The image holds NaN or infinite values; fill or mask them before training.")
        volume.statistics = statistics
        return volume

    @property
    def is_lazy(self) -> bool:
        """Whether the image is read a slice at a time (a file, zarr or dask) rather than held as an array."""
        return self._lazy

    @property
    def shape(self) -> tuple[int, int, int]:
        """The image's shape, in its own axis order."""
        return tuple(self._reader.shape) if self._lazy else tuple(self._array.shape)

    @property
    def pad(self) -> float:
        """The minimum of the normalised image, used to pad crops (see ``intensity.pad_value``)."""
        if self._pad is None:
            # Already normalised: the minimum itself; else the clipped minimum, normalised.
            self._pad = float(np.min(self._array)) if self.statistics is None else self.statistics.pad
        return self._pad

    def region(self, axis: int, index: int, rows: slice, cols: slice) -> np.ndarray:
        """Normalised ``rows`` x ``cols`` of slice ``index`` along ``axis``, float32 (may be a view: do not modify)."""
        if self._lazy:
            return self._cached_slice(axis, index)[rows, cols]
        taken = [slice(None)] * 3
        taken[axis] = index
        raw = self._array[tuple(taken)][rows, cols]
        return raw if self.statistics is None else self.statistics.apply(raw)

    def block(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Normalised slices ``start:stop`` along ``axis``, that axis first, float32."""
        if self._lazy:
            return self._normalize(self._reader.read(axis, start, stop))
        moved = np.moveaxis(self._array, axis, 0)[start:stop]
        return self._normalize(moved)

    def whole(self) -> np.ndarray:
        """The whole normalised image in its own axis order (a new float32 array: 4 bytes per voxel)."""
        if self._lazy:
            return self.block(0, 0, self.shape[0])  # axis 0 first is the image's own order
        return self._normalize(self._array)

    def _normalize(self, raw: np.ndarray) -> np.ndarray:
        if self.statistics is None:
            return np.array(raw, dtype=np.float32)
        return self.statistics.apply(raw)

    def _cached_slice(self, axis: int, index: int) -> np.ndarray:
        key = (axis, index)
        # The propagation reads slices from several threads: the cache changes under a lock.
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        plane = self._normalize(self._reader.read(axis, index, index + 1))[0]
        with self._cache_lock:
            self._cache[key] = plane
            if len(self._cache) > CACHED_SLICES:
                self._cache.popitem(last=False)
        return plane
