"""NIfTI input that keeps the file's geometry, and refuses what it cannot use in plain words.

Arrays keep the **file's voxel order** (i, j, k as stored; nibabel's order); nothing is
resampled or reoriented. The geometry travels next to the array in a
:class:`~napari_action.io.volume_meta.VolumeMeta`, which
:func:`~napari_action.io.nifti_writer.save_labels` writes back unchanged. Everything the
header alone can refute (not 3D, colour voxels, a truncated file, too large for memory) is
refused before the voxels take memory.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from napari_action.io.errors import is_raw_os_error, plain_os_error
from napari_action.io.file_pairs import pair_header, pair_message
from napari_action.io.given_folder import FolderDescription, describe_folder
from napari_action.io.not_nifti import not_nifti_message
from napari_action.io.volume_meta import VolumeMeta, meta_from_header
from napari_action.label_values import as_integer_labels
from napari_action.system_memory import available_memory_bytes

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
#: NIfTI ``intent_code`` for label maps (NIFTI_INTENT_LABEL); written by
#: :func:`~napari_action.io.nifti_writer.save_labels`.
NIFTI_INTENT_LABEL = 1002
NanPolicy = Literal["raise", "zero", "warn"]

# File-name parts that mark label maps in common conventions (BIDS ``dseg``, nnU-Net ``seg``,
# TPTBox ``msk``, atlases such as ``aal``).
_LABEL_NAME_HINTS = ("seg", "label", "mask", "msk", "aal")
# What may follow a hint in a word that still names a label map ("labels", "segmentation", "maskmap").
_HINT_ENDINGS = ("", "s", "ment", "ments", "mentation", "mentations", "map", "maps")
_FEW_VALUES = 32
_MAX_LABEL_VALUES = 256
_WHOLE_CHECK_RUN = 1 << 24  # voxels checked for whole numbers at a time
# nibabel and gzip raise a zoo of exceptions for broken files; all mean "cannot read".
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError)


class VolumeError(ValueError):
    """A volume file or array cannot be used; the message names the file and what to do."""


class NonFiniteVoxelsError(VolumeError):
    """NaN or infinite voxels with ``nan_policy="raise"``.

    The remedy depends on the caller (a Python argument, a command-line flag), so the
    description of the problem is kept apart: :meth:`with_advice` rewords the advice.

    Parameters
    ----------
    problem : str
        What is wrong, naming the file and the count of bad voxels.
    advice : str
        What to do, one or more sentences.
    """

    def __init__(
        self, problem: str, advice: str = "Fix the file, or load it with nan_policy='zero' to replace them by 0."
    ) -> None:
        super().__init__(f"{problem}; napari-action needs finite values. {advice}")
        self.problem = problem

    def with_advice(self, advice: str) -> NonFiniteVoxelsError:
        """The same error giving ``advice`` instead."""
        return NonFiniteVoxelsError(self.problem, advice)


class FolderGivenError(VolumeError):
    """A folder where an image file is expected; a front end rewords the advice (:meth:`with_advice`).

    Parameters
    ----------
    folder : pathlib.Path
        The folder.
    description : FolderDescription
        What the folder holds (naming it) and what to do (:func:`~napari_action.io.given_folder.describe_folder`).
    """

    def __init__(self, folder: Path, description: FolderDescription) -> None:
        super().__init__(f"{description.problem}. {description.advice}")
        self.folder, self.description = folder, description
        self.problem, self.nifti_files = description.problem, description.nifti_files

    def with_advice(self, advice: str) -> FolderGivenError:
        """The same error giving ``advice`` instead."""
        return FolderGivenError(self.folder, self.description._replace(advice=advice))


class NonFiniteVoxelsWarning(UserWarning):
    """NaN or infinite voxels were replaced by 0 (``nan_policy="warn"``)."""


def _raise_if_refused_by_the_os(error: Exception, path: Path) -> None:
    """Re-raise the OS's refusal (no permission, a read error of the disk) in plain words, not as a corrupt file."""
    if is_raw_os_error(error):
        raise plain_os_error(error, path) from error


def nifti_suffix(path: Path) -> str | None:
    """The NIfTI extension ``path`` ends in (``".nii.gz"`` or ``".nii"``, any case), None if neither."""
    return next((ext for ext in NIFTI_EXTENSIONS if path.name.lower().endswith(ext)), None)


def _open_nifti(path: Path, *, mmap: bool = False) -> nib.Nifti1Image:
    if path.is_dir():  # told by what it holds: advice about DICOM fits a folder of DICOM files only
        raise FolderGivenError(path, describe_folder(path))
    if nifti_suffix(path) is None:
        header = pair_header(path)
        if header is not None:
            raise VolumeError(pair_message(path, header))
        raise VolumeError(not_nifti_message(path))  # told by what it is: dcm2niix fits DICOM only
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Check the path and try again.")
    try:
        img = nib.load(path, mmap=mmap)
    except _READ_ERRORS as exc:
        _raise_if_refused_by_the_os(exc, path)
        raise VolumeError(
            f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc}). The file is corrupt, "
            "truncated or not NIfTI despite its name; re-export or re-download it."
        ) from exc
    if type(img) not in (nib.Nifti1Image, nib.Nifti2Image):
        raise VolumeError(
            f"{path}: is a {type(img).__name__} file, not a NIfTI volume; "
            "napari-action reads NIfTI-1/NIfTI-2 volumes only."
        )
    return img


def open_nifti_image(path: str | os.PathLike) -> nib.Nifti1Image:
    """The nibabel image of a NIfTI file, its data not read; the errors of :func:`load_volume` (:class:`VolumeError`,
    the OS's in plain words) for anything else."""
    return _open_nifti(Path(path))


def is_scaled(img: nib.Nifti1Image) -> bool:
    """Whether the file stores its voxels scaled (``scl_slope``/``scl_inter``): they read as floats."""
    return _is_scaled(img)


def _is_scaled(img: nib.Nifti1Image) -> bool:
    # nibabel moves scl_slope/scl_inter from the loaded header into the array proxy.
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    return slope != 1.0 or inter != 0.0


def _volume_shape(img: nib.Nifti1Image, path: Path) -> tuple[int, int, int]:
    """The 3D shape the header promises; refuse empty, 2D and 4D images before reading voxels."""
    shape = tuple(int(n) for n in img.shape)
    if 0 in shape:
        dims = " x ".join(str(int(n)) for n in img.header["dim"][1 : len(shape) + 1])
        raise VolumeError(
            f"{path}: the header's dim field says the image is {dims} voxels: dimension {shape.index(0) + 1} has "
            "size 0, so the file holds no voxels. The program that wrote it failed; re-export it from the "
            "original data."
        )
    if len(shape) > 3 and all(s == 1 for s in shape[3:]):
        # A 4D file holding one volume is a 3D volume in practice (some tools write x,y,z,1).
        shape = shape[:3]
    if len(shape) < 3:
        raise VolumeError(
            f"{path}: the image is {len(shape)}D (shape {shape}); napari-action needs a 3D "
            "volume. Stack the slices into one 3D NIfTI file first."
        )
    if len(shape) > 3:
        raise VolumeError(
            f"{path}: the image is {len(shape)}D (shape {shape}), a series of "
            f"{int(np.prod(shape[3:]))} volumes; napari-action needs one 3D volume. Extract "
            "one first, e.g. `fslroi in.nii.gz out.nii.gz 0 1` or nibabel's `img.slicer[..., 0]`."
        )
    return shape


def _check_voxel_type(dtype: np.dtype, path: Path) -> None:
    """Refuse colour and complex voxels: neither has one intensity per voxel."""
    if dtype.names is not None:  # nibabel's RGB24 and RGBA32 are records of 8-bit channels
        raise VolumeError(
            f"{path}: the image is in colour ({len(dtype.names)} channels, {', '.join(dtype.names)}, per voxel); "
            "napari-action needs one grey value per voxel. Convert it to one grey channel first (e.g. the "
            "mean of R, G and B, or the one channel that shows the structures) and save that as NIfTI."
        )
    if dtype.kind == "c":
        raise VolumeError(
            f"{path}: the voxels are complex numbers ({dtype.name}), e.g. MRI data with its phase; "
            "napari-action needs real values. Save the magnitude as a float image and load that instead, "
            "e.g. with nibabel: `np.abs(np.asarray(img.dataobj)).astype(np.float32)`."
        )


def _check_file_holds_voxels(img: nib.Nifti1Image, shape: tuple[int, ...], path: Path) -> None:
    """Refuse an uncompressed file shorter than its header says, before allocating its voxels.

    A compressed file's length says nothing about its content, so ``.nii.gz`` is left to the reader.
    """
    if nifti_suffix(path) != ".nii":
        return
    dtype = img.get_data_dtype()
    end = int(img.dataobj.offset) + int(np.prod(shape)) * dtype.itemsize
    size = path.stat().st_size
    if size < end:
        raise VolumeError(
            f"{path}: the voxel data cannot be read: the header describes {shape} voxels of {dtype.name} that "
            f"end at byte {end:,}, but the file holds only {size:,} bytes. The file is truncated (an "
            "interrupted copy, download or export); re-export or re-download it."
        )


def _voxel_bytes(img: nib.Nifti1Image, shape: tuple[int, ...]) -> int:
    """Bytes of the array :func:`load_volume` returns (scaled files become float32)."""
    itemsize = np.dtype(np.float32).itemsize if _is_scaled(img) else img.get_data_dtype().itemsize
    return int(np.prod(shape)) * itemsize


def _gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:,.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e6:,.0f} MB"


def memory_message(path: Path, shape: tuple[int, ...], needed: int, available: int | None) -> str:
    """What to tell when the volume ``path`` needs ``needed`` bytes and ``available`` are free (None: unknown)."""
    have = f"{_gigabytes(available)} available" if available is not None else "more than is free now"
    return (
        f"{path}: the image is too large for this machine's memory: its {shape} voxels need "
        f"{_gigabytes(needed)}, {have}. Crop or downsample it, or use a machine with more memory."
    )


def _check_memory(img: nib.Nifti1Image, shape: tuple[int, ...], path: Path) -> None:
    """Refuse a volume whose array cannot fit in the memory available now (instead of a MemoryError)."""
    needed, available = _voxel_bytes(img, shape), available_memory_bytes()
    if available is not None and needed > available:
        raise VolumeError(memory_message(path, shape, needed, available))


def _read_voxels(img: nib.Nifti1Image, shape: tuple[int, int, int], path: Path) -> np.ndarray:
    try:
        # Scaled integers become float32; unscaled data keeps its stored type so that
        # label maps stay integer and voxels round-trip bit for bit.
        data = img.get_fdata(dtype=np.float32) if _is_scaled(img) else np.asarray(img.dataobj)
        data = data.reshape(shape)
        return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))
    except MemoryError:
        # The check before reading saw enough memory, but the reader needed more, or something
        # else took it meanwhile.
        raise VolumeError(memory_message(path, shape, _voxel_bytes(img, shape), None)) from None
    except _READ_ERRORS as exc:
        _raise_if_refused_by_the_os(exc, path)
        raise VolumeError(
            f"{path}: the voxel data cannot be read ({type(exc).__name__}: {exc}). The file is "
            "truncated or corrupt; re-export or re-download it."
        ) from exc


def handle_nonfinite(data: np.ndarray, path: Path, nan_policy: NanPolicy) -> np.ndarray:
    """Apply ``nan_policy`` (see :func:`load_volume`) to the NaN and infinite voxels of ``data``, in place."""
    if nan_policy not in ("raise", "zero", "warn"):
        raise ValueError(f"nan_policy must be 'raise', 'zero' or 'warn', got {nan_policy!r}.")
    if not np.issubdtype(data.dtype, np.floating):
        return data
    bad = ~np.isfinite(data)
    count = int(bad.sum())
    if count == 0:
        return data
    message = f"{path}: {count} of {data.size} voxels are NaN or infinite"
    if nan_policy == "raise":
        raise NonFiniteVoxelsError(message)
    data[bad] = 0
    logger.warning("%s; replaced them by 0.", message)
    if nan_policy == "warn":
        warnings.warn(f"{message}; replaced them by 0.", NonFiniteVoxelsWarning, stacklevel=3)
    return data


def load_volume(path: str | os.PathLike, *, nan_policy: NanPolicy = "raise") -> tuple[np.ndarray, VolumeMeta]:
    """Read a 3D NIfTI volume in file voxel order, with its geometry.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file (NIfTI-1 or -2). A 4D file holding one volume is 3D.
    nan_policy : {"raise", "zero", "warn"}
        NaN or infinite voxels: raise :class:`VolumeError` (default), replace them by 0 and log
        a warning (``"zero"``), or also emit a :class:`NonFiniteVoxelsWarning` (``"warn"``,
        which napari shows to the user).

    Returns
    -------
    data : numpy.ndarray
        Native byte order; unscaled files keep their stored dtype, files with
        ``scl_slope``/``scl_inter`` scaling give scaled float32.
    meta : VolumeMeta
        Geometry and header facts; pass it to :func:`~napari_action.io.nifti_writer.save_labels`.

    Raises
    ------
    VolumeError
        Not NIfTI, unreadable/truncated, not 3D (including a dimension of size 0), colour or
        complex voxels, or more voxels than the available memory holds.
    NonFiniteVoxelsError
        Non-finite voxels with ``"raise"`` (a :class:`VolumeError`).
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    img = _open_nifti(path)
    # Everything the header alone can refute is refused before the voxels take memory.
    shape = _volume_shape(img, path)
    _check_voxel_type(img.get_data_dtype(), path)
    _check_file_holds_voxels(img, shape, path)
    _check_memory(img, shape, path)
    data = handle_nonfinite(_read_voxels(img, shape, path), path, nan_policy)
    meta = meta_from_header(img.header, data.shape, path=str(path), dtype=img.get_data_dtype().name)
    logger.debug("Loaded %s: shape %s, dtype %s, zooms %s", path, data.shape, data.dtype, meta.zooms)
    return data, meta


@dataclass(frozen=True)
class VoxelLayout:
    """Where the voxels of an uncompressed NIfTI file lie, to read them in pieces without loading the file.

    Parameters
    ----------
    offset : int
        Byte offset of the first voxel (``vox_offset``).
    dtype : numpy.dtype
        Stored type, with the file's byte order.
    shape : tuple of int
        3D shape; voxels are stored in Fortran order (first axis fastest).
    slope, inter : float
        Intensity scaling (``scl_slope``, ``scl_inter``); 1 and 0 when the file is unscaled.
    """

    offset: int
    dtype: np.dtype
    shape: tuple[int, int, int]
    slope: float = 1.0
    inter: float = 0.0

    @property
    def scaled(self) -> bool:
        """Whether values must be scaled (and then become float32, as :func:`load_volume` gives them)."""
        return self.slope != 1.0 or self.inter != 0.0


def inspect_uncompressed(path: str | os.PathLike) -> tuple[VoxelLayout, VolumeMeta]:
    """Check an uncompressed ``.nii`` file as :func:`load_volume` does, without reading its voxels.

    Everything the header can refute is refused here (not NIfTI, not 3D, colour or complex
    voxels, a file shorter than its header says); NaN voxels can only be found while reading.

    Returns
    -------
    layout : VoxelLayout
        Where the voxels lie.
    meta : VolumeMeta
        Geometry, as :func:`load_volume` returns it.

    Raises
    ------
    VolumeError
        As :func:`load_volume`, or for a ``.nii.gz`` file (compressed voxels cannot be read in pieces).
    """
    path = Path(path)
    if nifti_suffix(path) == ".nii.gz":
        raise VolumeError(f"{path}: compressed; only uncompressed .nii files can be read slice by slice.")
    img = _open_nifti(path, mmap=True)
    shape = _volume_shape(img, path)
    _check_voxel_type(img.get_data_dtype(), path)
    _check_file_holds_voxels(img, shape, path)
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    layout = VoxelLayout(int(img.dataobj.offset), img.get_data_dtype(), shape, float(slope), float(inter))
    meta = meta_from_header(img.header, shape, path=str(path), dtype=img.get_data_dtype().name)
    return layout, meta


def integer_labels(data: np.ndarray, source: str) -> np.ndarray:
    """Return ``data`` as an integer array, or raise :class:`VolumeError` naming the file."""
    try:
        return as_integer_labels(data, f"{source}: labels")
    except ValueError as error:
        raise VolumeError(str(error)) from error


#: What to do about NaN voxels in a label map: only its author knows their class.
LABEL_NAN_ADVICE = "Set those voxels to 0 (not painted) or to their class in the labels file."


def load_labels(path: str | os.PathLike) -> tuple[np.ndarray, VolumeMeta]:
    """Read a 3D NIfTI label map like :func:`load_volume`; whole-number floats become integers.

    Raises
    ------
    VolumeError
        As :func:`load_volume`, or when voxels are not whole numbers.
    """
    try:
        data, meta = load_volume(path)
    except NonFiniteVoxelsError as error:
        # Guessing a label for NaN voxels is not ours to do: only the file's author can fix them.
        raise error.with_advice(LABEL_NAN_ADVICE) from None
    return integer_labels(data, str(path)), meta


def named_as_labels(path: str | os.PathLike) -> bool:
    """Whether a file's name calls it a label map: a word of it is, ends in or is the plural of a hint.

    ``brainmask``, ``aseg``, ``labels`` and ``segmentation`` count; ``masked`` (an image with a mask
    applied) does not. In a BIDS name (``key-value`` entities joined by ``_``, then a suffix) only the suffix
    says what the file holds: ``sub-ct_label-22_ct`` is a CT scan of vertebra 22, ``..._msk`` its mask.
    """
    name = Path(path).name.lower()
    extension = nifti_suffix(Path(name))
    stem = name[: -len(extension)] if extension else name
    *entities, suffix = stem.split("_")
    said = suffix if entities and all("-" in entity for entity in entities) else stem
    return any(_is_hint_word(word) for word in re.findall(r"[a-z]+", said))


def _is_hint_word(word: str) -> bool:
    return any(
        word.endswith(hint) or (word.startswith(hint) and word[len(hint) :] in _HINT_ENDINGS)
        for hint in _LABEL_NAME_HINTS
    )


def is_label_file(path: str | os.PathLike, data: np.ndarray, meta: VolumeMeta | None = None) -> bool:
    """Guess whether a loaded NIfTI volume is a label map rather than an intensity image.

    Integer data counts as labels when the header says so (label ``intent_code``), the file
    name calls it one (:func:`named_as_labels`: seg, label, mask, msk, aal), or it holds few distinct
    values: at most 32, or at most 256 that are sparse in their range (label codes have gaps; an 8-bit
    image fills its range). Float data (FSL's and ANTs' masks are float32 by default) counts by the same
    rules when every voxel is a whole number and there are at most 256 distinct values, whatever the
    header or name say: a scan stored as float (scaled files load as float) has far more.
    """
    floats = data.dtype.kind == "f"
    if not floats and data.dtype != bool and not np.issubdtype(data.dtype, np.integer):
        return False
    if floats and not _whole_numbers_only(data):
        return False
    said = (meta is not None and meta.header.get("intent_code") == NIFTI_INTENT_LABEL) or named_as_labels(path)
    if said and not floats:
        return True
    flat = _voxels_in_memory_order(data)
    # A strided sample rules out intensity images cheaply before the full pass.
    if np.unique(flat[:: max(1, flat.size // 1_000_000)]).size > _MAX_LABEL_VALUES:
        return False
    values = np.unique(flat)
    if values.size > _MAX_LABEL_VALUES:
        return False
    if said or values.size <= _FEW_VALUES:
        return True
    value_range = int(values[-1]) - int(values[0]) + 1
    return values.size / value_range < 0.5


def _voxels_in_memory_order(data: np.ndarray) -> np.ndarray:
    """Every voxel in one dimension, a view of a contiguous array: what nibabel loads is in Fortran order,
    and ``reshape(-1)`` (C order) copied the whole scan (200 MB and half a second for a 512 x 512 x 400 CT)
    only to count its values."""
    return data.ravel(order="K")


def _whole_numbers_only(data: np.ndarray) -> bool:
    """Whether every voxel of a float array is a finite whole number (a strided sample first, to refute scans fast)."""
    flat = _voxels_in_memory_order(data)
    # The sample, then the voxels a run at a time: rounding a whole large scan at once would double its memory.
    runs = [flat[:: max(1, flat.size // 1_000_000)]]
    runs += (flat[start : start + _WHOLE_CHECK_RUN] for start in range(0, flat.size, _WHOLE_CHECK_RUN))
    return all(np.isfinite(run).all() and (run == np.round(run)).all() for run in runs)
