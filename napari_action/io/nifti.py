"""NIfTI input and output that keep the file's geometry.

Arrays keep the **file's voxel order** (i, j, k as stored; nibabel's order); nothing is
resampled or reoriented. The geometry travels next to the array in a :class:`VolumeMeta`:
the affine napari uses, the raw qform/sform with their codes, voxel sizes and units, plus the
raw header fields needed to write them back bit for bit (quaternion, ``pixdim`` with qfac).
:func:`save_labels` rebuilds a header from it, so saved labels overlay their source volume
exactly in any NIfTI viewer. Writes are atomic: a temporary file in the target folder is
flushed to disk and renamed over the target, so a failed save never leaves a broken file.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import logging
import os
import types
import warnings
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nibabel as nib
import numpy as np

from napari_action.io.atomic import write_atomically
from napari_action.label_values import as_integer_labels, smallest_label_dtype
from napari_action.system_memory import available_memory_bytes

logger = logging.getLogger(__name__)

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii.gz", ".nii")
#: NIfTI ``intent_code`` for label maps (NIFTI_INTENT_LABEL); written by :func:`save_labels`.
NIFTI_INTENT_LABEL = 1002
NanPolicy = Literal["raise", "zero", "warn"]

# File-name parts that mark label maps in common conventions (BIDS ``dseg``, nnU-Net ``seg``,
# TPTBox ``msk``, atlases such as ``aal``).
_LABEL_NAME_HINTS = ("seg", "label", "mask", "msk", "aal")
_FEW_VALUES = 32
_MAX_LABEL_VALUES = 256
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


class NonFiniteVoxelsWarning(UserWarning):
    """NaN or infinite voxels were replaced by 0 (``nan_policy="warn"``)."""


@dataclass(frozen=True, eq=False)
class VolumeMeta:
    """Geometry and header facts of a 3D NIfTI volume, enough to write labels back.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel-to-world matrix in mm (nibabel's best affine: sform, else qform).
    zooms, shape : tuple
        Voxel sizes (in ``xyzt_units``, normally mm) and array shape, in file voxel order.
    dtype : str
        On-disk data type of the source file (e.g. ``"int16"``).
    qform, sform, qform_code, sform_code : numpy.ndarray, int
        Raw 4x4 matrices and their codes (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
    xyzt_units : int
        Raw NIfTI units byte (2 = mm, 10 = mm + s).
    path : str or None
        File the volume was read from, if any.
    header : Mapping
        JSON-able raw fields that rebuild the header exactly: ``nifti_version``, ``pixdim``
        (qfac first), ``quatern``, ``qoffset``, ``dim_info``, ``intent_code``, ``descrip``.
    """

    affine: np.ndarray
    zooms: tuple[float, float, float]
    shape: tuple[int, int, int]
    dtype: str
    qform: np.ndarray
    qform_code: int
    sform: np.ndarray
    sform_code: int
    xyzt_units: int
    path: str | None = None
    header: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("affine", "qform", "sform"):
            matrix = np.array(getattr(self, name), dtype=np.float64)
            if matrix.shape != (4, 4):
                raise ValueError(f"VolumeMeta.{name} must be 4x4, got shape {matrix.shape}.")
            # Read-only so that a meta shared by several layers cannot change behind their back.
            matrix.flags.writeable = False
            object.__setattr__(self, name, matrix)
        if len(self.shape) != 3 or len(self.zooms) != 3:
            raise ValueError(f"VolumeMeta needs a 3D shape and 3 zooms, got {self.shape}, {self.zooms}.")
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "zooms", tuple(float(z) for z in self.zooms))
        for name in ("qform_code", "sform_code", "xyzt_units"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        object.__setattr__(self, "header", types.MappingProxyType(dict(self.header)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VolumeMeta):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    @property
    def orientation(self) -> str:
        """Axis codes of the affine, e.g. ``"RAS"``: the world direction of each array axis."""
        return "".join(nib.aff2axcodes(self.affine))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (napari layer metadata, session files)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VolumeMeta:
        """Inverse of :meth:`to_dict`; raise ``ValueError`` on missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = set(data) - names, names - set(data) - {"path", "header"}
        if unknown or missing:
            raise ValueError(f"Not a VolumeMeta dict: unknown {sorted(unknown)}, missing {sorted(missing)}.")
        return cls(**dict(data))

    @classmethod
    def from_affine(
        cls, affine: np.ndarray, shape: tuple[int, int, int], *, code: int = 2, dtype: str = "float32"
    ) -> VolumeMeta:
        """Build the meta a NIfTI-1 file with this 4x4 ``affine`` would have (qform = sform).

        ``code`` is the qform/sform code (2 "aligned" for geometry not read from a scanner
        file). The affine is stored as a NIfTI-1 header stores it (float32), so ``meta.affine``
        is exactly what a file saved with this meta reads back.
        """
        if len(shape) != 3:
            raise ValueError(f"VolumeMeta.from_affine needs a 3D shape, got {shape}.")
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(tuple(int(s) for s in shape))
        hdr.set_data_dtype(np.dtype(dtype))
        hdr.set_qform(np.asarray(affine, dtype=np.float64), code=int(code))
        hdr.set_sform(np.asarray(affine, dtype=np.float64), code=int(code))
        hdr.set_xyzt_units(xyz="mm")
        return _meta_from_header(hdr, tuple(shape), path=None, dtype=np.dtype(dtype).name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


def _meta_from_header(hdr: nib.Nifti1Header, shape: tuple, *, path: str | None, dtype: str) -> VolumeMeta:
    raw = {
        "nifti_version": 2 if isinstance(hdr, nib.Nifti2Header) else 1,
        "pixdim": [float(v) for v in hdr["pixdim"]],
        "quatern": [float(hdr[k]) for k in ("quatern_b", "quatern_c", "quatern_d")],
        "qoffset": [float(hdr[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")],
        "dim_info": int(hdr["dim_info"]),
        "intent_code": int(hdr["intent_code"]),
        "descrip": bytes(hdr["descrip"].item()).split(b"\x00")[0].decode("latin-1"),
    }
    return VolumeMeta(
        affine=hdr.get_best_affine(),
        zooms=tuple(float(z) for z in hdr.get_zooms()[:3]),
        shape=shape,
        dtype=dtype,
        qform=hdr.get_qform(),
        qform_code=int(hdr["qform_code"]),
        sform=hdr.get_sform(),
        sform_code=int(hdr["sform_code"]),
        xyzt_units=int(hdr["xyzt_units"]),
        path=path,
        header=raw,
    )


def _nifti_suffix(path: Path) -> str | None:
    return next((ext for ext in NIFTI_EXTENSIONS if path.name.lower().endswith(ext)), None)


def _open_nifti(path: Path, *, mmap: bool = False) -> nib.Nifti1Image:
    if _nifti_suffix(path) is None:
        raise VolumeError(
            f"{path}: not a NIfTI file (expected a name ending in .nii or .nii.gz). "
            "Convert it to NIfTI first, e.g. with dcm2niix for DICOM series."
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file. Check the path and try again.")
    try:
        img = nib.load(path, mmap=mmap)
    except _READ_ERRORS as exc:
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
    if _nifti_suffix(path) != ".nii":
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


def _memory_message(path: Path, shape: tuple[int, ...], needed: int, available: int | None) -> str:
    have = f"{_gigabytes(available)} available" if available is not None else "more than is free now"
    return (
        f"{path}: the image is too large for this machine's memory: its {shape} voxels need "
        f"{_gigabytes(needed)}, {have}. Crop or downsample it, or use a machine with more memory."
    )


def _check_memory(img: nib.Nifti1Image, shape: tuple[int, ...], path: Path) -> None:
    """Refuse a volume whose array cannot fit in the memory available now (instead of a MemoryError)."""
    needed, available = _voxel_bytes(img, shape), available_memory_bytes()
    if available is not None and needed > available:
        raise VolumeError(_memory_message(path, shape, needed, available))


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
        raise VolumeError(_memory_message(path, shape, _voxel_bytes(img, shape), None)) from None
    except _READ_ERRORS as exc:
        raise VolumeError(
            f"{path}: the voxel data cannot be read ({type(exc).__name__}: {exc}). The file is "
            "truncated or corrupt; re-export or re-download it."
        ) from exc


def _handle_nonfinite(data: np.ndarray, path: Path, nan_policy: NanPolicy) -> np.ndarray:
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
        Geometry and header facts; pass it to :func:`save_labels`.

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
    data = _handle_nonfinite(_read_voxels(img, shape, path), path, nan_policy)
    meta = _meta_from_header(img.header, data.shape, path=str(path), dtype=img.get_data_dtype().name)
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
    if _nifti_suffix(path) == ".nii.gz":
        raise VolumeError(f"{path}: compressed; only uncompressed .nii files can be read slice by slice.")
    img = _open_nifti(path, mmap=True)
    shape = _volume_shape(img, path)
    _check_voxel_type(img.get_data_dtype(), path)
    _check_file_holds_voxels(img, shape, path)
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    layout = VoxelLayout(int(img.dataobj.offset), img.get_data_dtype(), shape, float(slope), float(inter))
    meta = _meta_from_header(img.header, shape, path=str(path), dtype=img.get_data_dtype().name)
    return layout, meta


def label_header_bytes(meta: VolumeMeta, dtype: np.dtype) -> tuple[bytes, int]:
    """The header :func:`save_labels` writes into an uncompressed ``.nii`` file, and its data offset.

    For writers that fill the voxels afterwards, slice by slice: the file is the returned bytes,
    zero-padded up to the offset, followed by the labels in Fortran order.
    """
    hdr = _header_for(meta, np.dtype(dtype))
    # A single file with no extensions: header, the 4-byte extension flag, voxels (352 / 544 bytes in).
    offset = int(hdr.single_vox_offset)
    hdr.set_data_offset(offset)
    # What nibabel's writer stores for unscaled integer voxels (it leaves NaN, "unset", to the reader).
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    stream = io.BytesIO()
    hdr.write_to(stream)
    block = stream.getvalue()
    return block + bytes(offset - len(block)), offset


def _as_integer_labels(data: np.ndarray, source: str) -> np.ndarray:
    """Return ``data`` as an integer array, or raise :class:`VolumeError` naming the file."""
    try:
        return as_integer_labels(data, f"{source}: labels")
    except ValueError as error:
        raise VolumeError(str(error)) from error


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
        raise error.with_advice("Set those voxels to 0 (not painted) or to their class in the labels file.") from None
    return _as_integer_labels(data, str(path)), meta


def is_label_file(path: str | os.PathLike, data: np.ndarray, meta: VolumeMeta | None = None) -> bool:
    """Guess whether a loaded NIfTI volume is a label map rather than an intensity image.

    Integer data counts as labels when the header says so (label ``intent_code``), the file
    name contains seg/label/mask/msk/aal, or it holds few distinct values: at most 32, or at most
    256 that are sparse in their range (label codes have gaps; an 8-bit image fills its range).
    Scaled files load as float and therefore never count as labels.
    """
    if data.dtype != bool and not np.issubdtype(data.dtype, np.integer):
        return False
    if meta is not None and meta.header.get("intent_code") == NIFTI_INTENT_LABEL:
        return True
    if any(hint in Path(path).name.lower() for hint in _LABEL_NAME_HINTS):
        return True
    flat = data.reshape(-1)
    # A strided sample rules out intensity images cheaply before the full pass.
    if np.unique(flat[:: max(1, flat.size // 1_000_000)]).size > _MAX_LABEL_VALUES:
        return False
    values = np.unique(flat)
    if values.size <= _FEW_VALUES:
        return True
    value_range = int(values[-1]) - int(values[0]) + 1
    return values.size <= _MAX_LABEL_VALUES and values.size / value_range < 0.5


def _labels_for_writing(labels: Any, meta: VolumeMeta, path: Path) -> np.ndarray:
    if _nifti_suffix(path) is None:
        raise VolumeError(f"{path}: label files must end in .nii.gz or .nii; choose such a name.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist; create it first.")
    labels = np.asarray(labels)
    if labels.shape != meta.shape:
        raise VolumeError(
            f"{path}: labels have shape {labels.shape} but the source volume "
            f"({meta.path or 'its geometry'}) has shape {meta.shape}; save labels painted on that volume."
        )
    labels = _as_integer_labels(labels, str(path))
    try:
        dtype = smallest_label_dtype(labels)
    except ValueError as error:
        raise VolumeError(f"{path}: {error}") from error
    return np.ascontiguousarray(labels, dtype=dtype)


def _header_for(meta: VolumeMeta, dtype: np.dtype) -> nib.Nifti1Header:
    raw = meta.header
    hdr = nib.Nifti2Header() if raw.get("nifti_version") == 2 else nib.Nifti1Header()
    hdr.set_data_shape(meta.shape)
    hdr.set_data_dtype(dtype)
    if {"pixdim", "quatern", "qoffset"} <= set(raw):
        # Raw fields reproduce the source qform exactly; recomputing the quaternion from the
        # 4x4 matrix could change the last float32 bit.
        hdr["pixdim"] = raw["pixdim"]
        hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = raw["quatern"]
        hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = raw["qoffset"]
        hdr["qform_code"] = meta.qform_code
    else:
        hdr.set_qform(meta.qform, code=meta.qform_code)
        hdr.set_zooms(meta.zooms)
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = meta.sform[:3]
    hdr["sform_code"] = meta.sform_code
    hdr["xyzt_units"] = meta.xyzt_units
    hdr["dim_info"] = int(raw.get("dim_info", 0))
    hdr["intent_code"] = NIFTI_INTENT_LABEL
    hdr["descrip"] = b"napari-action labels"
    hdr.set_slope_inter(None, None)  # labels are stored unscaled
    return hdr


def _encode(labels: np.ndarray, meta: VolumeMeta, compress: bool) -> bytes:
    hdr = _header_for(meta, labels.dtype)
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    # affine=None keeps the header's qform/sform untouched (nibabel would rewrite them).
    payload = image_class(labels, None, header=hdr).to_bytes()
    # mtime=0 makes the output reproducible byte for byte.
    return gzip.compress(payload, compresslevel=6, mtime=0) if compress else payload


def save_labels(path: str | os.PathLike, labels: np.ndarray, meta: VolumeMeta, *, overwrite: bool = False) -> Path:
    """Write a label map as NIfTI with the geometry of its source volume, atomically.

    The file holds the smallest integer dtype that fits the labels, no intensity scaling,
    the source qform/sform with their codes, zooms and units, and the label intent code.

    Parameters
    ----------
    path : str or os.PathLike
        Target ending in ``.nii.gz`` (compressed) or ``.nii``.
    labels : array-like
        Integer (or whole-number float, or bool) array of shape ``meta.shape``.
    meta : VolumeMeta
        Geometry of the source volume, from :func:`load_volume`.
    overwrite : bool
        Replace an existing file; otherwise an existing file raises ``FileExistsError``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    VolumeError
        Wrong shape, non-integer labels or a name without a NIfTI extension.
    FileExistsError
        ``path`` exists and ``overwrite`` is False (front ends ask first: ``--overwrite``
        on the command line, a question in the widget).
    FileNotFoundError
        The folder of ``path`` does not exist.
    PermissionError
        The folder is not writable; the message names it and says what to do.
    OSError
        The disk is full (or the file too large) or another write failure. In every
        case an existing file at ``path`` is unchanged and no temporary file is left.
    """
    path = Path(path)
    data = _labels_for_writing(labels, meta, path)
    compress = _nifti_suffix(path) == ".nii.gz"
    # Encoding happens inside the atomic write, after its check for an existing file.
    write_atomically(path, lambda stream: stream.write(_encode(data, meta, compress)), overwrite=overwrite)
    logger.info("Saved labels %s (%s, %s)", path, data.shape, data.dtype)
    return path
