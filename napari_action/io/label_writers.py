"""Label volumes written slice by slice, so that a prediction never needs its whole output in memory.

Every writer takes slices in order along one axis (:meth:`LabelWriter.write`), then
:meth:`~LabelWriter.commit` puts the finished file in place, or :meth:`~LabelWriter.discard`
removes what was written: like :func:`~napari_action.io.atomic.write_atomically`, whoever
reads the target sees the old file or the new one, never half.

* ``.nii``: :class:`NiftiLabelWriter` preallocates a temporary file (header, then the
  voxels) and writes each run of slices through a memory map at the data offset; the
  file is renamed into place at the end. Memory: one run of slices.
* ``.zarr``: :class:`ZarrLabelWriter` writes an array chunked along the slicing axis
  (whole planes, :data:`ZARR_CHUNK_SLICES` slices per chunk) with the source geometry in
  its attributes, into a temporary folder renamed into place at the end.
* ``.nii.gz``: :class:`MemoryLabelWriter` holds the whole label volume (1 byte per voxel for
  up to 255 classes, 2 or 4 for wider label values; far less than float probabilities)
  and compresses it at the end (gzip streams cannot be written out of order).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from napari_action.io.atomic import explained_errors, new_file_mode, remove_stale_parts, replace
from napari_action.io.nifti import VolumeError
from napari_action.io.nifti_writer import DEFAULT_DESCRIP, label_header_bytes, save_labels
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import ZARR_SUFFIX, is_zarr_store_name, zarr_attrs

#: Output formats and the suffix of their files.
OUTPUT_FORMATS = {"nii.gz": ".nii.gz", "nii": ".nii", "zarr": ZARR_SUFFIX}
#: Slices per zarr chunk along the slicing axis (whole planes each).
ZARR_CHUNK_SLICES = 16
# Slices gathered before a .nii writer maps its file: fewer, larger writes.
_NIFTI_RUN = 16
# Bytes of zeros written at a time where the disk space of a .nii cannot be claimed by the OS.
_ZERO_BLOCK = 16 * 2**20
_PART = ".part"


class LabelWriter(Protocol):
    """Takes a label volume slice by slice along one axis and puts the finished file in place."""

    target: Path

    def write(self, index: int, labels: np.ndarray) -> None:
        """Slice ``index`` (in order, from 0) along the writer's axis."""

    def commit(self) -> Path:
        """Finish the file and move it into place; return its path."""

    def discard(self) -> None:
        """Remove everything written (after a failure)."""


def open_label_writer(
    target: str | os.PathLike,
    meta: VolumeMeta,
    dtype: np.dtype,
    axis: int,
    *,
    overwrite: bool = False,
    descrip: str = DEFAULT_DESCRIP,
) -> LabelWriter:
    """The writer for ``target``'s format (``.nii``, ``.zarr``, else ``.nii.gz``).

    Parameters
    ----------
    target : str or os.PathLike
        The file: ``.nii``, ``.nii.gz``, or a folder ending in ``.zarr``.
    meta : VolumeMeta
        Geometry of the source volume, written with the labels.
    dtype : numpy.dtype
        Label type (``.nii.gz`` stores the smallest type that holds the values written).
    axis : int
        The axis along which slices arrive.
    overwrite : bool
        Replace an existing ``target``.
    descrip : str
        The NIfTI header's description line (what made the labels); a zarr store has no such field.

    Raises
    ------
    FileExistsError
        ``target`` exists and ``overwrite`` is False (checked now and again at :meth:`~LabelWriter.commit`).
    """
    target = Path(target)
    _refuse_existing(target, overwrite)
    if is_zarr_store_name(target):
        return ZarrLabelWriter(target, meta, dtype, axis, overwrite=overwrite)
    if target.name.lower().endswith(".nii"):
        return NiftiLabelWriter(target, meta, dtype, axis, overwrite=overwrite, descrip=descrip)
    return MemoryLabelWriter(target, meta, dtype, axis, overwrite=overwrite, descrip=descrip)


def write_label_volume(
    target: str | os.PathLike,
    labels: np.ndarray,
    meta: VolumeMeta,
    axis: int,
    *,
    overwrite: bool = False,
    descrip: str = DEFAULT_DESCRIP,
) -> Path:
    """Write a whole label volume in ``target``'s format (after post-processing that needed all of it)."""
    writer = open_label_writer(target, meta, labels.dtype, axis, overwrite=overwrite, descrip=descrip)
    try:
        for index, plane in enumerate(np.moveaxis(labels, axis, 0)):
            writer.write(index, plane)
        return writer.commit()
    except BaseException:
        writer.discard()
        raise


def _refuse_existing(target: Path, overwrite: bool) -> None:
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} already exists; choose another name or pass overwrite=True to replace it.")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"{target}: the folder {target.parent} does not exist; create it first.")


def _check_order(expected: int, index: int) -> None:
    if index != expected:
        raise ValueError(f"Label slices must arrive in order; expected {expected}, got {index}.")


class _SliceWriter:
    """What every writer keeps: the target, the source geometry, the slicing axis, whether to replace a file."""

    def __init__(self, target: Path, meta: VolumeMeta, axis: int, overwrite: bool) -> None:
        self.target, self.meta, self.axis, self.overwrite = Path(target), meta, axis, overwrite


class _RunWriter(_SliceWriter):
    """A writer that gathers slices into runs and stores each run at once: fewer, larger writes.

    Subclasses store a run with :meth:`_store_run`; :meth:`_flush` stores what is pending.
    """

    def __init__(self, target: Path, meta: VolumeMeta, dtype: np.dtype, axis: int, overwrite: bool, run: int) -> None:
        super().__init__(target, meta, axis, overwrite)
        self.dtype = np.dtype(dtype)
        self._run = run
        self._pending: list[np.ndarray] = []
        self._first = 0  # index of the first pending slice

    def write(self, index: int, labels: np.ndarray) -> None:
        """Slice ``index`` along the writer's axis (stored with the rest of its run)."""
        _check_order(self._first + len(self._pending), index)
        self._pending.append(np.asarray(labels, self.dtype))
        if len(self._pending) >= self._run:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        self._store_run(self._first, np.stack(self._pending))
        self._first += len(self._pending)
        self._pending = []

    def _store_run(self, start: int, run: np.ndarray) -> None:
        """Store ``run`` (slices first) as slices ``start:start + len(run)`` along the writer's axis."""
        raise NotImplementedError


class MemoryLabelWriter(_SliceWriter):
    """Gathers the label volume in memory and saves it with :func:`~napari_action.io.nifti_writer.save_labels`.

    The parameters are those of :func:`open_label_writer`; ``target`` is a ``.nii.gz`` (or
    ``.nii``) file, and :func:`save_labels` stores the smallest type that holds the values written.
    """

    def __init__(
        self,
        target: Path,
        meta: VolumeMeta,
        dtype: np.dtype,
        axis: int,
        *,
        overwrite: bool = False,
        descrip: str = DEFAULT_DESCRIP,
    ) -> None:
        super().__init__(target, meta, axis, overwrite)
        self.descrip = descrip
        self.labels = np.zeros(meta.shape, dtype)
        self._next = 0

    def write(self, index: int, labels: np.ndarray) -> None:
        """Slice ``index`` along the writer's axis."""
        _check_order(self._next, index)
        np.moveaxis(self.labels, self.axis, 0)[index] = labels
        self._next += 1

    def commit(self) -> Path:
        """Compress and save the labels, atomically."""
        return save_labels(self.target, self.labels, self.meta, overwrite=self.overwrite, descrip=self.descrip)

    def discard(self) -> None:
        """Nothing was written to disk."""


class NiftiLabelWriter(_RunWriter):
    """Writes an uncompressed ``.nii`` label file run by run through a memory map.

    The temporary file (``.<name>.<random>.part`` in the target's folder, which
    :func:`~napari_action.io.atomic.remove_stale_parts` cleans up after a crash) holds the
    header :func:`~napari_action.io.nifti_writer.save_labels` would write, followed by
    zero-filled voxels, their disk space claimed at once (:func:`claim_disk_space`). The result is
    byte for byte what ``save_labels`` writes for the same labels and type.

    The parameters are those of :func:`open_label_writer`; ``target`` is a ``.nii`` file and
    ``dtype`` the type stored in it. Slices reach the file a run (``_NIFTI_RUN`` slices) at a time.
    """

    def __init__(
        self,
        target: Path,
        meta: VolumeMeta,
        dtype: np.dtype,
        axis: int,
        *,
        overwrite: bool = False,
        descrip: str = DEFAULT_DESCRIP,
    ) -> None:
        super().__init__(target, meta, dtype, axis, overwrite, run=_NIFTI_RUN)
        header, self.offset = label_header_bytes(meta, self.dtype, descrip)
        size = self.offset + int(np.prod(meta.shape)) * self.dtype.itemsize
        with explained_errors(self.target, existed=self.target.exists()):
            handle, name = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=_PART, dir=self.target.parent)
            self.temporary = Path(name)
            try:
                with os.fdopen(handle, "wb") as stream:
                    stream.write(header)
                    claim_disk_space(stream, len(header), size)
            except BaseException:
                self.discard()  # no writer comes back to be discarded by the caller
                raise

    def _store_run(self, start: int, run: np.ndarray) -> None:
        with explained_errors(self.target, existed=self.target.exists()):
            # Mapped per run and unmapped at once: the pages written leave this process's memory.
            mapped = np.memmap(self.temporary, self.dtype, "r+", self.offset, self.meta.shape, order="F")
            try:
                np.moveaxis(mapped, self.axis, 0)[start : start + len(run)] = run
                mapped.flush()
            finally:
                del mapped

    def commit(self) -> Path:
        """Write the last slices, flush the file to disk and rename it over the target."""
        self._flush()
        if self._first != self.meta.shape[self.axis]:
            raise VolumeError(f"{self.target}: {self._first} of {self.meta.shape[self.axis]} slices were written.")
        existed = self.target.exists()
        with explained_errors(self.target, existed=existed):
            _refuse_existing(self.target, self.overwrite)
            with open(self.temporary, "rb+") as stream:
                os.fsync(stream.fileno())
            os.chmod(self.temporary, new_file_mode(self.target))
            replace(self.temporary, self.target)
        remove_stale_parts(self.target)
        return self.target

    def discard(self) -> None:
        """Remove the temporary file."""
        with contextlib.suppress(OSError):
            self.temporary.unlink()


def claim_disk_space(stream: BinaryIO, start: int, end: int) -> None:
    """Give the open file bytes ``start:end`` on disk now, zero-filled, so that a full disk fails here.

    A sparse file (``truncate``) takes its disk blocks only when the memory map writes each page, and a
    page the disk has no room for kills the process with SIGBUS: no error to catch, no message, napari
    gone. ``posix_fallocate`` claims the blocks at once (ENOSPC now); where the OS lacks it (macOS,
    Windows) or the file system refuses it, zeros are written instead.
    """
    stream.flush()
    allocate = getattr(os, "posix_fallocate", None)
    if allocate is not None:
        try:
            allocate(stream.fileno(), start, end - start)
            return
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
    stream.seek(start)
    for offset in range(start, end, _ZERO_BLOCK):
        stream.write(bytes(min(_ZERO_BLOCK, end - offset)))
    stream.flush()


class ZarrLabelWriter(_RunWriter):
    """Writes labels into a zarr array chunked along the slicing axis, with the source geometry.

    Slices are gathered into whole chunks (:data:`ZARR_CHUNK_SLICES` slices) before they are
    written, so every chunk is encoded once. The array is built in a temporary folder next to
    the target and renamed into place at the end; an existing target is replaced only then.

    The parameters are those of :func:`open_label_writer`; ``target`` is a folder ending in
    ``.zarr``, ``meta`` goes into its attributes (:func:`~napari_action.io.volume_source.zarr_attrs`)
    and ``axis`` is the chunking axis.
    """

    def __init__(self, target: Path, meta: VolumeMeta, dtype: np.dtype, axis: int, *, overwrite: bool = False) -> None:
        import zarr  # ~0.3 s to import: only when a zarr store is written

        super().__init__(target, meta, dtype, axis, overwrite, run=ZARR_CHUNK_SLICES)
        with explained_errors(self.target, existed=self.target.exists()):
            folder = tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=_PART, dir=self.target.parent)
            self.temporary = Path(folder)
            try:
                self.array = zarr.create_array(
                    folder,
                    shape=meta.shape,
                    chunks=chunks_along(meta.shape, axis, ZARR_CHUNK_SLICES),
                    dtype=self.dtype,
                    fill_value=0,
                    attributes=zarr_attrs(meta, kind="labels"),
                    overwrite=True,
                )
            except BaseException:
                self.discard()  # no writer comes back to be discarded by the caller
                raise

    def _store_run(self, start: int, run: np.ndarray) -> None:
        # A run is one whole chunk (the last may be shorter): every chunk is encoded once.
        index = [slice(None)] * 3
        index[self.axis] = slice(start, start + len(run))
        # zarr's own error names no file: a full disk is worded after the target.
        with explained_errors(self.target, existed=self.target.exists()):
            self.array[tuple(index)] = np.moveaxis(run, 0, self.axis)

    def commit(self) -> Path:
        """Write the last chunk and rename the store into place (replacing the old one, if allowed)."""
        self._flush()
        with explained_errors(self.target, existed=self.target.exists()):
            _refuse_existing(self.target, self.overwrite)
            if self.target.exists():
                # A folder cannot be renamed over a non-empty one: move the old store aside first.
                switch_folder_in(self.temporary, self.target)
            else:
                replace(self.temporary, self.target)
        remove_stale_parts(self.target)  # the stores of a killed run (a cancelled job) are left otherwise
        return self.target

    def discard(self) -> None:
        """Remove the temporary store."""
        shutil.rmtree(self.temporary, ignore_errors=True)


def switch_folder_in(new: Path, target: Path) -> None:
    """Rename the folder ``new`` to the existing folder ``target``: the old one is moved aside, then removed.

    A folder cannot be renamed over a non-empty one. If ``new`` cannot be moved in (on Windows: a
    file in it is still open), the old folder goes back to ``target``.
    """
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", suffix=_PART, dir=target.parent))
    replace(target, aside / target.name, named=target)
    try:
        replace(new, target)
    except BaseException:
        with contextlib.suppress(OSError):  # never hide the error that stopped the switch
            os.replace(aside / target.name, target)
            os.rmdir(aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def chunks_along(shape: tuple[int, int, int], axis: int, slices: int) -> tuple[int, int, int]:
    """Chunks of whole planes, ``slices`` thick along ``axis``."""
    return tuple(min(slices, n) if a == axis else n for a, n in enumerate(shape))
