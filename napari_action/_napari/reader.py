"""npe2 reader: NIfTI volumes and napari-action zarr stores as napari layers that keep their scanner geometry.

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

Files that look like label maps (see :func:`napari_action.io.nifti.is_label_file`) open as Labels, in
integers (a mask of whole-number floats, as FSL and ANTs write them, too).
A file that cannot be used (4D, a damaged header, ...) raises :class:`~napari_action.io.nifti.VolumeError`
in :func:`read_nifti` and :func:`read_zarr`; the functions napari calls (:func:`open_nifti`,
:func:`open_zarr`) show its message as an error notification instead and give napari no layer for
that file, so that napari opens the other files of a File > Open selection (a raised error stopped it
at the bad file, leaving the files after it unopened, and offered to read every selected file with
another reader).

Zarr stores: the reader claims only folders that napari-action wrote (``napari-action convert``,
``predict --output-format zarr``; their attributes carry the geometry and whether they hold a scan or
labels, see :mod:`napari_action.io.volume_source`); other zarr folders are left to other readers. A
label store is read into memory, since a Labels layer is painted on (one larger than the free memory
is refused with a message saying so). A scan stays on disk (napari
and training read it a slice at a time) unless it takes under a quarter of the memory free now,
where it is read whole for fast slicing along every axis. A session store (``*.action.zarr``) is
refused with the way to open it.

A mask with a colour table beside it under its own name (``scan_action.ctbl`` beside
``scan_action.nii.gz``, as Export writes; 3D Slicer, FreeSurfer or ITK-SNAP tables too) opens with its
classes' names and colours (:mod:`napari_action._napari.label_table_layer`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_action._napari.label_table_layer import table_layer_kwargs
from napari_action.data.intensity import display_window
from napari_action.io.file_pairs import pair_header
from napari_action.io.label_map import refuse_if_larger_than_memory
from napari_action.io.nifti import (
    VolumeError,
    handle_nonfinite,
    integer_labels,
    is_label_file,
    load_volume,
    memory_message,
    nifti_suffix,
)
from napari_action.io.session_store import is_session_store
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import (
    ZARR_SUFFIX,
    ZarrSlices,
    damaged_chunk_error,
    is_zarr_store_name,
    napari_action_store_attrs,
    stored_kind,
)
from napari_action.system_memory import available_memory_bytes

PathOrPaths = str | os.PathLike | Sequence[str | os.PathLike]
LayerData = tuple[np.ndarray, dict[str, Any], str]


class DisplayGeometryWarning(UserWarning):
    """A volume is shown in voxel order because napari cannot slice its affine."""


#: Where the memory free now is unknown, scans up to this size are read whole.
_IN_MEMORY_FALLBACK_BYTES = 2 * 1024**3


def napari_get_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """The reader for ``path``: :func:`read_nifti` for ``.nii``/``.nii.gz`` files, :func:`read_zarr` for
    zarr stores napari-action wrote, one that explains how to open a session store; else None."""
    paths = _as_list(path)
    if not paths:
        return None
    # A .hdr/.img pair is claimed to be refused in words: napari's own reader would open the .img with its
    # axes reversed and no geometry, and a mask painted on it would not overlay the scan anywhere else.
    if all(_stem(p) is not None or pair_header(p) is not None for p in paths):
        return open_nifti
    if all(napari_action_store_attrs(p) is not None for p in paths):
        return open_zarr
    if len(paths) == 1 and is_session_store(paths[0]):
        return refuse_session_store
    return None


def read_nifti(path: PathOrPaths) -> list[LayerData]:
    """Read one or several NIfTI files into napari layer data tuples."""
    return [_layer_data(Path(p)) for p in _as_list(path)]


def read_zarr(path: PathOrPaths) -> list[LayerData]:
    """Read one or several zarr stores written by napari-action into napari layer data tuples."""
    return [_zarr_layer_data(Path(p)) for p in _as_list(path)]


#: napari's sign that a reader handled a file that gives no layer; napari goes on with the next file.
_NO_LAYER = [(None,)]


def open_nifti(path: PathOrPaths) -> list[LayerData]:
    """:func:`read_nifti` for napari: a file that cannot be used is named in an error notification and skipped."""
    return _each_usable(path, _layer_data)


def open_zarr(path: PathOrPaths) -> list[LayerData]:
    """:func:`read_zarr` for napari: a store that cannot be used is named in an error notification and skipped."""
    return _each_usable(path, _zarr_layer_data)


def _each_usable(path: PathOrPaths, read_one: Callable[[Path], LayerData]) -> list[LayerData]:
    from napari.utils.notifications import show_error

    layers = []
    for p in _as_list(path):
        try:
            layers.append(read_one(Path(p)))
        except VolumeError as exc:  # its message names the file and says what to do
            show_error(str(exc))
    return layers or _NO_LAYER


def refuse_session_store(path: PathOrPaths) -> list[LayerData]:
    """A session store holds a whole session, which only the widget can restore: say how."""
    raise VolumeError(
        f"{_as_list(path)[0]} is a napari-action session. Open it with 'Open session…' in the ACTION widget "
        "(Plugins > napari-action > ACTION: Train from sparse labels), which restores its images, labels and model."
    )


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
    _warn_if_permuted(path, meta)
    if not is_label_file(path, data, meta):
        return data, layer_kwargs(meta, _stem(path) or path.name, **opening_contrast(data)), "image"
    # A Labels layer holds integers; masks from FSL and ANTs come as whole-number floats.
    labels = integer_labels(data, str(path))
    return labels, layer_kwargs(meta, _stem(path) or path.name, **_class_table(path, "labels")), "labels"


def _zarr_layer_data(path: Path) -> LayerData:
    data, meta, kind = read_store(path)
    _warn_if_permuted(path, meta)
    name = path.name[: -len(ZARR_SUFFIX)] if is_zarr_store_name(path) else path.name
    shown = _class_table(path, kind) if kind == "labels" else opening_contrast(data)
    return data, layer_kwargs(meta, name or path.name, **shown), kind


def opening_contrast(data: Any) -> dict[str, Any]:
    """The contrast limits a scan opens with: the clip bounds of its normalisation (``display_window``).

    napari's own, the minimum to the maximum, showed a CT padded with -3024 HU and holding a screw at
    +3000 HU in a narrow band of grey. A store read a slice at a time is left to napari (no whole read).
    """
    window = display_window(data) if isinstance(data, np.ndarray) else None
    return {} if window is None else {"contrast_limits": [window[0], window[1]]}


def _class_table(path: Path, kind: str) -> dict[str, Any]:
    """A mask's class names and colours from the table beside it (Export writes one)."""
    return table_layer_kwargs(path) if kind == "labels" else {}


def read_store(path: str | os.PathLike) -> tuple[Any, VolumeMeta, str]:
    """The voxels, geometry and kind (``"image"`` or ``"labels"``) of a store napari-action wrote.

    The voxels are a numpy array, or for a scan larger than a quarter of the free memory the store's
    zarr array (read a slice at a time). Sessions reopen their stores through here too.
    """
    path = Path(path)
    source = ZarrSlices(path)  # checks the array and its geometry
    kind = stored_kind(dict(source.array.attrs))
    if kind == "labels":
        refuse_if_larger_than_memory(source, "A label map opens whole, to be painted on.")
    if kind == "labels" or _fits_in_memory(source.array.nbytes):
        # NaNs become 0 with a warning, as for a NIfTI file
        data = handle_nonfinite(_read_whole(path, source), path, "warn")
        if kind is None:  # a store written before its kind was recorded: guess as for a file
            kind = "labels" if is_label_file(path, data, source.meta) else "image"
        if kind == "labels":
            data = integer_labels(data, str(path))
    else:
        data = source.array  # read a slice at a time by napari and by training
        kind = kind or "image"
    return data, source.meta, kind


def _read_whole(path: Path, source: ZarrSlices) -> np.ndarray:
    """The store's voxels; a damaged chunk (zarr's codecs raise RuntimeError, ValueError, ...) as a VolumeError."""
    try:
        return np.asarray(source.array[...])
    except MemoryError:
        raise VolumeError(memory_message(path, source.shape, source.array.nbytes, None)) from None
    except OSError:
        raise
    except Exception as error:
        raise damaged_chunk_error(path, error) from error


def _fits_in_memory(size: int) -> bool:
    available = available_memory_bytes()
    return size <= (_IN_MEMORY_FALLBACK_BYTES if available is None else available // 4)


def _warn_if_permuted(path: Path, meta: VolumeMeta) -> None:
    if is_axis_permuted(meta):
        warnings.warn(
            f"{path}: its array axes are permuted against the scanner axes (orientation "
            f"{meta.orientation}), which napari cannot slice; it is shown in voxel order with its "
            "voxel sizes, not in scanner coordinates. Labels saved by napari-action keep the file's "
            "geometry.",
            DisplayGeometryWarning,
            stacklevel=3,
        )


def _as_list(path: PathOrPaths) -> list[str | os.PathLike]:
    return [path] if isinstance(path, str | os.PathLike) else list(path)


def _stem(path: str | os.PathLike) -> str | None:
    """File name without its NIfTI extension, or None for other files."""
    name = Path(path).name
    extension = nifti_suffix(Path(name))
    return name[: -len(extension)] if extension and len(name) > len(extension) else None
