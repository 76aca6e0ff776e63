"""npe2 reader: NIfTI volumes as napari layers that keep their scanner geometry.

Geometry: each layer gets the volume's full ``affine`` (which already holds the voxel spacing)
and **no separate** ``scale``, so napari's world coordinates are scanner millimetres, volumes on
different grids overlay correctly, and the writer restores the source header from
``metadata["napari_action"]`` (a :meth:`VolumeMeta.to_dict`). Arrays stay in file voxel order.

napari limits (0.9): its 2D view slices along array axes. An oblique affine (small rotations)
works, but napari warns "Non-orthogonal slicing" and shows slices without the out-of-plane
rotation. An affine that *permutes* axes (e.g. a P-I-R or sagittal file) makes napari's slicing
fail (singular matrix), so such files get :func:`display_affine`: voxel sizes and origin of the
file, axes in voxel order, plus a :class:`DisplayGeometryWarning`. Saved labels keep the file's
geometry either way.

Files that look like label maps (see :func:`napari_action.io.nifti.is_label_file`) open as Labels.
Errors are raised as :class:`~napari_action.io.nifti.VolumeError`, which napari shows as a notification.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_action.io.nifti import is_label_file, load_volume, nifti_suffix
from napari_action.io.volume_meta import VolumeMeta

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]
LayerData = tuple[np.ndarray, dict[str, Any], str]


class DisplayGeometryWarning(UserWarning):
    """A volume is shown in voxel order because napari cannot slice its affine."""


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_nifti` when every path is a ``.nii``/``.nii.gz`` file, else None."""
    paths = _as_list(path)
    if paths and all(_stem(p) is not None for p in paths):
        return read_nifti
    return None


def read_nifti(path: PathOrPaths) -> list[LayerData]:
    """Read one or several NIfTI files into napari layer data tuples."""
    return [_layer_data(Path(p)) for p in _as_list(path)]


def is_axis_permuted(meta: VolumeMeta) -> bool:
    """True when array axis ``i`` does not point (roughly) along scanner axis ``i``."""
    return bool((nib.io_orientation(meta.affine)[:, 0] != np.arange(3)).any())


def display_affine(meta: VolumeMeta) -> np.ndarray:
    """The affine napari gets: ``meta.affine``, or a voxel-aligned one if it permutes axes."""
    if not is_axis_permuted(meta):
        return np.array(meta.affine)
    aligned = np.diag([*meta.zooms, 1.0])
    aligned[:3, 3] = meta.affine[:3, 3]  # voxel (0, 0, 0) stays where the file puts it
    return aligned


def layer_kwargs(meta: VolumeMeta, name: str, **extra: Any) -> dict[str, Any]:
    """Layer keyword arguments that place a volume in world mm and carry its geometry."""
    metadata = {"napari_action": meta.to_dict(), **extra.pop("metadata", {})}
    return {"name": name, "affine": display_affine(meta), "metadata": metadata, **extra}


def _layer_data(path: Path) -> LayerData:
    # "warn" replaces NaNs by 0 and tells the user through napari's warning notifications;
    # raising would leave no way to open such a file from the GUI.
    data, meta = load_volume(path, nan_policy="warn")
    if is_axis_permuted(meta):
        warnings.warn(
            f"{path}: its array axes are permuted against the scanner axes (orientation "
            f"{meta.orientation}), which napari cannot slice; it is shown in voxel order with its "
            "voxel sizes, not in scanner coordinates. Labels saved by napari-action keep the file's "
            "geometry.",
            DisplayGeometryWarning,
            stacklevel=2,
        )
    kind = "labels" if is_label_file(path, data, meta) else "image"
    return data, layer_kwargs(meta, _stem(path) or path.name), kind


def _as_list(path: PathOrPaths) -> list[str | os.PathLike]:
    return [path] if isinstance(path, str | os.PathLike) else list(path)


def _stem(path: str | os.PathLike) -> str | None:
    """File name without its NIfTI extension, or None for other files."""
    name = Path(path).name
    extension = nifti_suffix(Path(name))
    return name[: -len(extension)] if extension and len(name) > len(extension) else None
