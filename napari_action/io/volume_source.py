"""Volumes read slice by slice, so that prediction never holds a whole volume larger than memory.

A :class:`VolumeSource` hands out runs of slices along any axis, axis first, with the
geometry of the file (:class:`~napari_action.io.nifti.VolumeMeta`). Three kinds:

* :class:`NiftiSlices`, an uncompressed ``.nii``: each read maps the file (``numpy.memmap``
  at the NIfTI data offset), copies the slices and unmaps it again, so the pages read
  never pile up in the process's memory. NIfTI stores voxels with the first axis
  fastest: slices along the last axis are contiguous and cheap; along the first axis
  every read touches the whole file (the page cache absorbs it, but it is slow).
* :class:`ZarrSlices`, a zarr array (e.g. from ``napari-action convert``): only the
  chunks holding the slices are read; chunk it along the slicing axis.
* :class:`ArraySlices`, an array in memory: a ``.nii.gz`` file, which cannot be read in
  pieces (gzip cannot seek; every jump back decompresses from the start), is loaded whole,
  in its stored type (2 bytes per voxel for int16), never as a float32 copy.

Geometry in a zarr store
------------------------
A zarr array written by napari-action carries ``attrs["napari_action"] =
{"volume_meta": VolumeMeta.to_dict(), "format_version": 1, "kind": "image" | "labels"}``: affine,
qform/sform and their codes, voxel sizes and the raw header fields, enough for labels written from it
to overlay the source NIfTI exactly, and whether it holds a scan or a label map (stores written
before ``kind`` existed lack it: :func:`stored_kind`). A zarr array without these attributes gets
1 mm voxels at the origin, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from napari_action.io.nifti import (
    NonFiniteVoxelsError,
    VolumeError,
    VoxelLayout,
    inspect_uncompressed,
    load_volume,
)
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.zarr_folder import store_without_array_message, unreadable_metadata_message

logger = logging.getLogger(__name__)

#: Key of the napari-action attributes of a zarr array.
ZARR_ATTRS_KEY = "napari_action"
ZARR_FORMAT_VERSION = 1
ZARR_SUFFIX = ".zarr"
#: What a store holds, as its ``kind`` attribute says.
ZARR_KINDS = ("image", "labels")


class VolumeSource(Protocol):
    """Slices of a 3D volume, read on demand."""

    path: Path
    meta: VolumeMeta

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape, in file voxel order."""

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along ``axis``, that axis first; stored type (scaled files: float32)."""


def is_zarr_store_name(path: Path) -> bool:
    """Whether ``path`` is named as a zarr store (the ending decides in every command, not the folder's content)."""
    return path.name.lower().endswith(ZARR_SUFFIX)


def open_volume_source(path: str | os.PathLike, *, nan_to_zero: bool = False) -> VolumeSource:
    """The source that reads ``path`` with the least memory: ``.nii`` and ``.zarr`` lazily, ``.nii.gz`` whole.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii``, ``.nii.gz`` file or a ``.zarr`` array store.
    nan_to_zero : bool
        Replace NaN and infinite voxels by 0; otherwise they raise
        :class:`~napari_action.io.nifti.NonFiniteVoxelsError` (lazy sources: when the slices
        holding them are read).

    Raises
    ------
    VolumeError
        As :func:`~napari_action.io.nifti.load_volume`, or a zarr store that is no 3D array of real numbers.
    """
    path = Path(path)
    if is_zarr_store_name(path):
        return ZarrSlices(path, nan_to_zero=nan_to_zero)
    if path.name.lower().endswith(".nii"):
        return NiftiSlices(path, nan_to_zero=nan_to_zero)
    volume, meta = load_volume(path, nan_policy="zero" if nan_to_zero else "raise")
    return ArraySlices(volume, meta, path)


def is_lazy(source: VolumeSource) -> bool:
    """Whether ``source`` reads slices from disk on demand (rather than holding the volume)."""
    return not isinstance(source, ArraySlices)


def _take(data: Any, axis: int, start: int, stop: int) -> np.ndarray:
    index = [slice(None)] * 3
    index[axis] = slice(start, stop)
    return np.moveaxis(np.asarray(data[tuple(index)]), axis, 0)


def _finite_or_zero(block: np.ndarray, path: Path, axis: int, start: int, nan_to_zero: bool) -> np.ndarray:
    """Check slices for NaN and infinite voxels as they are read (a lazy volume is never seen whole)."""
    if block.dtype.kind != "f":
        return block
    bad = ~np.isfinite(block)
    if not bad.any():
        return block
    if not nan_to_zero:
        where = f"slices {start}-{start + block.shape[0] - 1} along axis {axis}"
        raise NonFiniteVoxelsError(f"{path}: {int(bad.sum())} voxels of {where} are NaN or infinite")
    block = block.copy() if not block.flags.writeable else block
    block[bad] = 0
    return block


class ArraySlices:
    """Slices of a volume held in memory.

    Parameters
    ----------
    volume : numpy.ndarray
        The 3D volume.
    meta : VolumeMeta
        Its geometry.
    path : pathlib.Path, optional
        Where it came from (for messages).
    """

    def __init__(self, volume: np.ndarray, meta: VolumeMeta, path: Path | None = None) -> None:
        if volume.ndim != 3:
            raise VolumeError(f"{path or 'the volume'}: expected a 3D volume, got shape {volume.shape}.")
        self.volume = volume
        self.meta = meta
        self.path = Path(path) if path is not None else Path(meta.path or "volume")

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape."""
        return tuple(self.volume.shape)

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along ``axis``, that axis first (a view)."""
        return _take(self.volume, axis, start, stop)


class NiftiSlices:
    """Slices of an uncompressed NIfTI file, read through a memory map opened for each read.

    Parameters
    ----------
    path : pathlib.Path
        A ``.nii`` file; its header is checked at once (:func:`~napari_action.io.nifti.inspect_uncompressed`).
    nan_to_zero : bool
        Replace NaN and infinite voxels by 0 instead of raising when they are read.
    """

    def __init__(self, path: Path, *, nan_to_zero: bool = False) -> None:
        self.path = Path(path)
        self.layout: VoxelLayout
        self.layout, self.meta = inspect_uncompressed(self.path)
        self.nan_to_zero = nan_to_zero

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape."""
        return self.layout.shape

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along ``axis``, that axis first, in native byte order (scaled: float32)."""
        layout = self.layout
        # A fresh map per read: unmapping afterwards drops the pages read from this process's
        # resident memory (a long-lived map keeps every page it ever touched counted there).
        mapped = np.memmap(self.path, layout.dtype, "r", layout.offset, layout.shape, order="F")
        try:
            block = np.array(_take(mapped, axis, start, stop), dtype=layout.dtype.newbyteorder("="))
        finally:
            del mapped
        if layout.scaled:
            block = block.astype(np.float32) * np.float32(layout.slope) + np.float32(layout.inter)
        return _finite_or_zero(block, self.path, axis, start, self.nan_to_zero)


class ZarrSlices:
    """Slices of a 3D zarr array; geometry from its ``napari_action`` attributes.

    Parameters
    ----------
    path : pathlib.Path
        The store (a folder ending in ``.zarr``).
    nan_to_zero : bool
        Replace NaN and infinite voxels by 0 instead of raising when they are read.
    """

    def __init__(self, path: Path, *, nan_to_zero: bool = False) -> None:
        self.path = Path(path)
        self.array = _open_zarr_array(self.path)
        self.meta = meta_from_zarr_attrs(dict(self.array.attrs), self.array.shape, self.array.dtype, self.path)
        self.nan_to_zero = nan_to_zero

    @property
    def shape(self) -> tuple[int, int, int]:
        """The volume's shape."""
        return tuple(self.array.shape)

    def read(self, axis: int, start: int, stop: int) -> np.ndarray:
        """Slices ``start:stop`` along ``axis``, that axis first; a damaged chunk is a :class:`VolumeError`."""
        try:
            block = _take(self.array, axis, start, stop)
        except (MemoryError, OSError):  # no fault of the store; the OS's errors are worded by the front ends
            raise
        except Exception as error:  # zarr's codecs raise RuntimeError, ValueError, ... for a chunk they cannot decode
            raise damaged_chunk_error(self.path, error) from error
        return _finite_or_zero(block, self.path, axis, start, self.nan_to_zero)


def damaged_chunk_error(path: Path, error: Exception) -> VolumeError:
    """The error for a chunk of the zarr store at ``path`` that zarr could not decode (``error``)."""
    return VolumeError(
        f"{path}: a chunk of the zarr store cannot be read ({type(error).__name__}: {error}); the store is "
        "damaged or incomplete: write it again (napari-action convert, or predict --output-format zarr)."
    )


def _open_zarr_array(path: Path) -> Any:
    import zarr  # ~0.3 s to import: only when a zarr store is read

    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such zarr store (a folder). Check the path and try again.")
    refusal = store_without_array_message(path)  # empty, other files, a group, metadata not JSON
    if refusal is not None:
        raise VolumeError(refusal)
    try:
        array = zarr.open_array(str(path), mode="r")
    except OSError:  # no fault of the store; the OS's errors are worded by the front ends
        raise
    except Exception as error:  # zarr raises KeyError, ValueError, ... for metadata it cannot make an array of
        raise VolumeError(unreadable_metadata_message(path)) from error
    if array.ndim != 3 or 0 in array.shape:
        raise VolumeError(f"{path}: the zarr array has shape {array.shape}; napari-action needs one 3D volume.")
    if array.dtype.kind not in "biuf":
        raise VolumeError(f"{path}: the zarr array holds {array.dtype} values; napari-action needs real numbers.")
    return array


def zarr_attrs(meta: VolumeMeta, kind: str = "image") -> dict[str, Any]:
    """The attributes that carry ``meta`` and ``kind`` (one of :data:`ZARR_KINDS`) in a zarr array."""
    if kind not in ZARR_KINDS:
        raise ValueError(f"kind must be one of {ZARR_KINDS}, got {kind!r}")
    return {ZARR_ATTRS_KEY: {"format_version": ZARR_FORMAT_VERSION, "volume_meta": meta.to_dict(), "kind": kind}}


def stored_kind(attrs: dict[str, Any]) -> str | None:
    """``"image"`` or ``"labels"`` as a store's attributes say; None where they do not (older stores)."""
    kind = attrs.get(ZARR_ATTRS_KEY, {}).get("kind")
    return kind if kind in ZARR_KINDS else None


def napari_action_store_attrs(path: str | os.PathLike) -> dict[str, Any] | None:
    """The attributes of a zarr array store napari-action wrote, read from its metadata alone; else None.

    Cheap (one small JSON file, no zarr import), so a file-open dialog can ask it of any folder.
    Covers zarr format 3 (``zarr.json``, what napari-action writes) and 2 (``.zarray`` with ``.zattrs``).
    """
    folder = Path(path)
    attributes = _json_file(folder / "zarr.json")
    if attributes is not None:
        if attributes.get("node_type") != "array":
            return None
        attributes = attributes.get("attributes")
    elif _json_file(folder / ".zarray") is not None:
        attributes = _json_file(folder / ".zattrs")
    if not isinstance(attributes, dict) or not isinstance(attributes.get(ZARR_ATTRS_KEY), dict):
        return None
    return attributes


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None


def meta_from_zarr_attrs(
    attrs: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype, path: Path | None = None
) -> VolumeMeta:
    """The geometry stored by :func:`zarr_attrs`, or 1 mm voxels at the origin (with a warning) without it.

    Raises
    ------
    VolumeError
        The stored geometry belongs to another shape, or cannot be read.
    """
    stored = attrs.get(ZARR_ATTRS_KEY, {}).get("volume_meta")
    if stored is None:
        logger.warning("%s: no napari-action geometry in the zarr attributes; assuming 1 mm voxels.", path)
        return VolumeMeta.from_affine(np.eye(4), tuple(shape), dtype=np.dtype(dtype).name)
    try:
        meta = VolumeMeta.from_dict(stored)
    except (ValueError, TypeError) as error:
        raise VolumeError(f"{path}: the napari-action geometry in the zarr attributes is damaged: {error}") from error
    if tuple(meta.shape) != tuple(shape):
        raise VolumeError(f"{path}: the zarr array has shape {tuple(shape)} but its geometry says {meta.shape}.")
    return meta
