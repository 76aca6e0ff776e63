"""Label maps written as NIfTI with the geometry of their source volume, atomically.

:func:`save_labels` rebuilds a header from the source's
:class:`~napari_action.io.volume_meta.VolumeMeta`, so saved labels overlay
their source volume exactly in any NIfTI viewer. Writes are atomic: a
temporary file in the target folder is flushed to disk and renamed over the
target, so a failed save never leaves a broken file.
:func:`label_header_bytes` gives the same header to writers that fill the
voxels slice by slice (:mod:`napari_action.io.label_writers`).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_action.io.atomic import write_atomically
from napari_action.io.nifti import NIFTI_INTENT_LABEL, VolumeError, integer_labels, nifti_suffix
from napari_action.io.volume_meta import VolumeMeta
from napari_action.label_values import smallest_label_dtype

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_DESCRIP", "label_header_bytes", "save_labels"]

#: The header's ``descrip`` of labels saved without a line of their own
#: (:func:`~napari_action.io.provenance.mask_descrip` makes one).
DEFAULT_DESCRIP = "napari-action labels"
#: Bytes NIfTI-1 and NIfTI-2 headers keep for ``descrip``.
_DESCRIP_BYTES = 80


def label_header_bytes(meta: VolumeMeta, dtype: np.dtype, descrip: str = DEFAULT_DESCRIP) -> tuple[bytes, int]:
    """The header :func:`save_labels` writes into an uncompressed ``.nii`` file, and its data offset.

    For writers that fill the voxels afterwards, slice by slice: the file is the returned bytes,
    zero-padded up to the offset, followed by the labels in Fortran order.
    """
    hdr = _header_for(meta, np.dtype(dtype), descrip)
    # A single file with no extensions: header, the 4-byte extension flag, voxels (352 / 544 bytes in).
    offset = int(hdr.single_vox_offset)
    hdr.set_data_offset(offset)
    # What nibabel's writer stores for unscaled integer voxels (it leaves NaN, "unset", to the reader).
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    stream = io.BytesIO()
    hdr.write_to(stream)
    block = stream.getvalue()
    return block + bytes(offset - len(block)), offset


def _labels_for_writing(labels: Any, meta: VolumeMeta, path: Path) -> np.ndarray:
    if not isinstance(meta, VolumeMeta):
        raise TypeError(
            f"{path}: save_labels needs the source volume's VolumeMeta (the second value load_volume returns), "
            f"got a {type(meta).__name__}; from an affine alone: VolumeMeta.from_affine(affine, labels.shape)."
        )
    if nifti_suffix(path) is None:
        raise VolumeError(f"{path}: label files must end in .nii.gz or .nii; choose such a name.")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist; create it first.")
    labels = np.asarray(labels)
    if labels.shape != meta.shape:
        raise VolumeError(
            f"{path}: labels have shape {labels.shape} but the source volume "
            f"({meta.path or 'its geometry'}) has shape {meta.shape}; save labels painted on that volume."
        )
    labels = integer_labels(labels, str(path))
    try:
        dtype = smallest_label_dtype(labels)
    except ValueError as error:
        raise VolumeError(f"{path}: {error}") from error
    return np.ascontiguousarray(labels, dtype=dtype)


def _descrip_bytes(descrip: str) -> bytes:
    """``descrip`` as the header holds it: at most 80 bytes, cut at a whole character."""
    return descrip.encode("utf-8")[:_DESCRIP_BYTES].decode("utf-8", "ignore").encode("utf-8")


def _header_for(meta: VolumeMeta, dtype: np.dtype, descrip: str = DEFAULT_DESCRIP) -> nib.Nifti1Header:
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
    hdr["descrip"] = _descrip_bytes(descrip)
    hdr.set_slope_inter(None, None)  # labels are stored unscaled
    return hdr


def _encode(labels: np.ndarray, meta: VolumeMeta, compress: bool, descrip: str) -> bytes:
    hdr = _header_for(meta, labels.dtype, descrip)
    image_class = nib.Nifti2Image if isinstance(hdr, nib.Nifti2Header) else nib.Nifti1Image
    # affine=None keeps the header's qform/sform untouched (nibabel would rewrite them).
    payload = image_class(labels, None, header=hdr).to_bytes()
    # mtime=0 makes the output reproducible byte for byte.
    return gzip.compress(payload, compresslevel=6, mtime=0) if compress else payload


def save_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    meta: VolumeMeta,
    *,
    overwrite: bool = False,
    descrip: str = DEFAULT_DESCRIP,
) -> Path:
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
        Geometry of the source volume, from :func:`~napari_action.io.nifti.load_volume`.
    overwrite : bool
        Replace an existing file; otherwise an existing file raises ``FileExistsError``.
    descrip : str
        The header's description line (what made the labels: :func:`~napari_action.io.provenance.mask_descrip`),
        cut to its 80 bytes.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    TypeError
        ``meta`` is not a :class:`VolumeMeta` (an affine, a nibabel header).
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
    compress = nifti_suffix(path) == ".nii.gz"
    # Encoding happens inside the atomic write, after its check for an existing file.
    write_atomically(path, lambda stream: stream.write(_encode(data, meta, compress, descrip)), overwrite=overwrite)
    logger.info("Saved labels %s (%s, %s)", path, data.shape, data.dtype)
    return path
