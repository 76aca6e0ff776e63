"""Geometry and header facts of a 3D NIfTI volume: :class:`VolumeMeta`.

The array keeps the file's voxel order; the geometry travels next to it: the
affine napari uses, the raw qform/sform with their codes, voxel sizes and
units, plus the raw header fields needed to write them back bit for bit
(quaternion, ``pixdim`` with qfac). A ``VolumeMeta`` is JSON-able (napari
layer metadata, session files) and read-only, so several layers can share one.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np

__all__ = ["VolumeMeta", "meta_from_header"]


@dataclass(frozen=True, eq=False)
class VolumeMeta:
    """Geometry and header facts of a 3D NIfTI volume, enough to write labels back.

    Parameters
    ----------
    affine : numpy.ndarray
        4x4 voxel-to-world matrix in mm (nibabel's best affine: sform, else qform), converted to mm
        from the header's spatial unit (metres, micrometres) as ITK does; unknown units count as mm.
    zooms, shape : tuple
        Voxel sizes in mm (converted like ``affine``) and array shape, in file voxel order.
    dtype : str
        On-disk data type of the source file (e.g. ``"int16"``).
    qform, sform, qform_code, sform_code : numpy.ndarray, int
        Raw 4x4 matrices, in the header's unit, and their codes (0 unknown, 1 scanner, 2 aligned, 3 Talairach, 4 MNI).
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
        hdr.set_data_dtype(_header_dtype(dtype))
        hdr.set_qform(np.asarray(affine, dtype=np.float64), code=int(code))
        hdr.set_sform(np.asarray(affine, dtype=np.float64), code=int(code))
        hdr.set_xyzt_units(xyz="mm")
        return meta_from_header(hdr, tuple(shape), path=None, dtype=np.dtype(dtype).name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {key: _jsonable(item) for key, item in value.items()}
    return value


#: Millimetres in one of NIfTI's spatial units. ITK converts the same way; an unknown unit counts as mm there too.
_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 0.001}


def mm_per_unit(hdr: nib.Nifti1Header) -> float:
    """Millimetres in one unit of the header's ``xyzt_units`` (1 for mm and for an unknown unit)."""
    spatial, _ = hdr.get_xyzt_units()
    return _MM_PER_UNIT.get(spatial, 1.0)


def _header_dtype(dtype: Any) -> np.dtype:
    """``dtype``, or the type NIfTI-1 stores such data as where it names none: bool as uint8, float16 as float32.

    napari shows an Image layer of any numpy type (a thresholded mask is bool, a microscopy export may be
    float16), and its geometry is built through a header; nibabel refuses a type NIfTI-1 cannot name, which
    made Train, Export and the geometry checks fail on such a layer with "data dtype "bool" not supported".
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return np.dtype(np.uint8)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    if dtype.kind == "f" and dtype.itemsize > 8:
        return np.dtype(np.float64)
    return dtype


def meta_from_header(hdr: nib.Nifti1Header, shape: tuple, *, path: str | None, dtype: str) -> VolumeMeta:
    """The :class:`VolumeMeta` of a NIfTI-1 or -2 header, with the raw fields that rebuild it exactly.

    ``shape`` and ``dtype`` are passed in because the caller knows them better than the header: a 4D file
    holding one volume is 3D, and ``dtype`` is the stored type before any scaling. ``affine`` and ``zooms``
    are in mm whatever the header's unit: everything downstream (spacing, volumes in mL, surface distances,
    the training pixel size, napari's world) reads them as mm. The raw qform and sform keep the file's unit.
    """
    mm = mm_per_unit(hdr)
    affine = hdr.get_best_affine()
    affine[:3] *= mm
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
        affine=affine,
        zooms=tuple(float(z) * mm for z in hdr.get_zooms()[:3]),
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
