"""A NIfTI image written in another voxel order: its axes swapped or flipped, nothing resampled.

napari-action takes every slice of a volume as stored, so scans of one cohort must share a voxel
order (a template stored LPS beside a RAS scan is seen turned half round; docs/usage.md, "Segment a
cohort"). Reordering is exact: every voxel keeps its value and its place in the world, the header's
qform and sform (with their codes), units and intent stay, only the order of the voxels in the file and
the matrices that place them change.
"""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes, inv_ornt_aff, io_orientation, ornt_transform

from napari_action.io.atomic import write_atomically
from napari_action.io.nifti import VolumeError, is_scaled, open_nifti_image

__all__ = ["voxel_order", "reorient_file"]


def voxel_order(affine: np.ndarray) -> str:
    """The world direction each array axis points to, e.g. ``"RAS"`` or ``"LPS"``."""
    return "".join(aff2axcodes(np.asarray(affine)))


def reorient_file(
    image: str | os.PathLike, out: str | os.PathLike, order: str = "RAS", *, overwrite: bool = False
) -> tuple[str, str]:
    """Write ``image`` to ``out`` with its voxels in ``order`` (three letters, one of R/L, A/P, S/I each).

    Returns the voxel order before and after. The voxels keep their stored type; a scaled file is
    written as the float32 values it reads as (exact; re-scaling to its integers would round them).

    Raises
    ------
    VolumeError
        A file that is not a 3D NIfTI volume, or an ``order`` that is not three axis letters.
    FileExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    source = open_nifti_image(image)
    if len(source.shape) > 3 and any(size != 1 for size in source.shape[3:]):
        raise VolumeError(f"{image}: holds {len(source.shape)}D data {source.shape}; reorient takes 3D volumes.")
    target = _orientation_of(order)
    transform = ornt_transform(io_orientation(source.affine), target)
    voxels = np.asanyarray(source.dataobj)
    voxels = voxels.reshape(voxels.shape[:3])
    reordered = nib.orientations.apply_orientation(voxels, transform)
    header = source.header.copy()
    # Both matrices move with the voxels, each with its own code (FSL keeps them apart).
    moved = inv_ornt_aff(transform, voxels.shape)
    _, qcode = source.header.get_qform(coded=True)
    _, scode = source.header.get_sform(coded=True)
    result = type(source)(reordered, None, header=header)
    result.header.set_qform(source.header.get_qform() @ moved, code=int(qcode or 0))
    result.header.set_sform(source.header.get_sform() @ moved, code=int(scode or 0))
    if is_scaled(source):
        result.set_data_dtype(np.float32)
    data = result.to_bytes()
    compressed = str(out).lower().endswith(".gz")
    payload = gzip.compress(data, compresslevel=6, mtime=0) if compressed else data
    write_atomically(out, lambda stream: stream.write(payload), overwrite=overwrite)
    return voxel_order(source.affine), voxel_order(result.header.get_best_affine())


def _orientation_of(order: str) -> np.ndarray:
    codes = tuple(order.upper())
    try:
        orientation = nib.orientations.axcodes2ornt(codes)
    except ValueError:
        orientation = None
    if len(codes) != 3 or orientation is None or np.isnan(orientation).any():
        raise VolumeError(f"{order!r} is no voxel order: give three letters, one of R/L, A/P and S/I each (RAS).")
    return orientation
