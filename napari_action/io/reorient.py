"""A NIfTI image written in another voxel order: its axes swapped or flipped, nothing resampled.

napari-action takes every slice of a volume as stored, so scans of one cohort must share a voxel
order (a template stored LPS beside a RAS scan is seen turned half round; docs/usage.md, "Segment a
cohort"). Reordering is exact: every voxel keeps its value and its place in the world, the header's
qform and sform (with their codes), units and intent stay, only the order of the voxels in the file, the
matrices that place them and the fields that name an array axis (``dim_info``'s frequency, phase and
slice axes; the slice timing, read backwards with a reversed slice axis) change.
"""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np

from napari_action.io.atomic import write_atomically
from napari_action.io.geometry import VoxelGeometry
from napari_action.io.nifti import VolumeError, is_scaled, open_nifti_image
from napari_action.io.reoriented import Reorientation

__all__ = ["RAS", "reorient_file"]

# The slice order of each NIfTI slice_code read backwards: sequential, alternating and alternating from the
# second slice, increasing and decreasing.
_REVERSED_SLICE_CODE = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}

#: The voxel order most tools write (nibabel's canonical order): the default target.
RAS = VoxelGeometry.from_matrix(np.eye(4))


def reorient_file(
    image: str | os.PathLike, out: str | os.PathLike, like: VoxelGeometry = RAS, *, overwrite: bool = False
) -> tuple[str, str]:
    """Write ``image`` to ``out`` with its voxels in the voxel order of ``like`` (e.g. the painted scan's).

    Returns the voxel order before and after (``"LPS"``, ``"RAS"``). The voxels keep their stored type; a
    scaled file is written as the float32 values it reads as (exact; re-scaling to its integers would round them).

    Raises
    ------
    VolumeError
        A file that is not a 3D NIfTI volume, or one whose axes do not point along three different world axes.
    FileExistsError
        ``out`` exists and ``overwrite`` is false.
    """
    source = open_nifti_image(image)
    if len(source.shape) > 3 and any(size != 1 for size in source.shape[3:]):
        raise VolumeError(f"{image}: holds {len(source.shape)}D data {source.shape}; reorient takes 3D volumes.")
    stored = VoxelGeometry.from_matrix(source.affine)
    if len(set(stored.directions)) != 3:
        raise VolumeError(
            f"{image}: two of its axes point along one world axis (a strongly oblique scan); it has "
            "no voxel order to change."
        )
    # The same mapping prediction reads scans through (io.reoriented); None: already in that order.
    turn = Reorientation.between(like, stored) or Reorientation((0, 1, 2), (False, False, False))
    voxels = np.asanyarray(source.dataobj)
    voxels = voxels.reshape(voxels.shape[:3])
    result = type(source)(np.ascontiguousarray(turn.from_stored(voxels)), None, header=source.header.copy())
    # Both matrices move with the voxels, each with its own code (FSL keeps them apart).
    _, qcode = source.header.get_qform(coded=True)
    _, scode = source.header.get_sform(coded=True)
    result.header.set_qform(turn.affine(source.header.get_qform(), voxels.shape), code=int(qcode or 0))
    result.header.set_sform(turn.affine(source.header.get_sform(), voxels.shape), code=int(scode or 0))
    _move_acquisition_axes(source.header, result.header, turn, voxels.shape)
    if is_scaled(source):
        result.set_data_dtype(np.float32)
    data = result.to_bytes()
    compressed = str(out).lower().endswith(".gz")
    payload = gzip.compress(data, compresslevel=6, mtime=0) if compressed else data
    write_atomically(out, lambda stream: stream.write(payload), overwrite=overwrite)
    return stored.voxel_order(), VoxelGeometry.from_matrix(result.header.get_best_affine()).voxel_order()


def _move_acquisition_axes(
    source: nib.Nifti1Header, result: nib.Nifti1Header, turn: Reorientation, shape: tuple[int, ...]
) -> None:
    """Name in ``result``'s ``dim_info`` the axes the frequency, phase and slice directions moved to; when the
    slice axis is reversed, reverse the slice timing too (the time each slice was taken goes with it)."""
    moved = [None if axis is None else turn.stored_axes.index(axis) for axis in source.get_dim_info()]
    result.set_dim_info(*moved)
    slice_axis = moved[2]
    if (
        slice_axis is None
        or not turn.reversed_axes[slice_axis]
        or int(source["slice_code"]) not in _REVERSED_SLICE_CODE
    ):
        return
    last = shape[turn.stored_axes[slice_axis]] - 1
    # slice_end 0 means "unset": the timing runs to the last slice, as nibabel and FSL read it.
    start, end = int(source["slice_start"]), int(source["slice_end"]) or last
    result["slice_code"] = _REVERSED_SLICE_CODE[int(source["slice_code"])]
    result["slice_start"], result["slice_end"] = last - end, last - start
