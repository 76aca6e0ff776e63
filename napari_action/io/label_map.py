"""A label map given on the command line (train's --labels, evaluate's --truth and --pred): a NIfTI file or a zarr
store, told apart by the name's ``.zarr`` ending as everywhere else.

A store is read through :class:`~napari_action.io.volume_source.ZarrSlices`, whatever the size of the image beside
it, so its geometry comes from the attributes napari-action's writers put there (``predict --output-format zarr``,
``convert``) and its voxel grid is checked against the image's as a NIfTI file's header is. Stores are opened for
reading only: the user's labels are never written to.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_action.io.nifti import (
    LABEL_NAN_ADVICE,
    NonFiniteVoxelsError,
    VolumeError,
    integer_labels,
    load_labels,
    memory_message,
)
from napari_action.io.session_store import is_session_store
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import VolumeSource, ZarrSlices, is_zarr_store_name, open_volume_source
from napari_action.system_memory import available_memory_bytes


def open_label_source(path: str | os.PathLike) -> VolumeSource:
    """A label map to be read a few slices at a time (:func:`~napari_action.io.volume_source.open_volume_source`);
    a session store, which holds a whole session and not one label map, is refused with the way to its labels.

    Raises
    ------
    VolumeError
        As :func:`~napari_action.io.volume_source.open_volume_source`, or a napari-action session store.
    """
    path = Path(path)
    if is_zarr_store_name(path) and is_session_store(path):
        raise VolumeError(
            f"{path} is a napari-action session, not a label map. Open it with 'Open session…' in the ACTION widget, "
            "save its painted labels layer as a .nii.gz file (File > Save Selected Layers…) and give that file."
        )
    return open_volume_source(path)


def load_label_map(path: str | os.PathLike) -> tuple[np.ndarray, VolumeMeta]:
    """A whole label map, integer valued, with its geometry: NIfTI as :func:`~napari_action.io.nifti.load_labels`
    reads it, a zarr store through :func:`open_label_source`.

    Raises
    ------
    VolumeError
        Unreadable, not 3D, larger than the free memory, voxels that are not whole numbers or are NaN.
    """
    path = Path(path)
    if not is_zarr_store_name(path):
        return load_labels(path)
    source = open_label_source(path)
    refuse_if_larger_than_memory(source)
    try:
        voxels = source.read(0, 0, source.shape[0])
    except NonFiniteVoxelsError as error:
        raise error.with_advice(LABEL_NAN_ADVICE) from None
    return integer_labels(voxels, str(path)), source.meta


def refuse_if_larger_than_memory(source: ZarrSlices, why: str = "") -> None:
    """Say what a store read whole needs, as for a NIfTI file, rather than fail half-way through its chunks;
    ``why`` (a sentence) says why it is read whole."""
    needed, available = int(source.array.nbytes), available_memory_bytes()
    if available is not None and needed > available:
        message = memory_message(source.path, source.shape, needed, available)
        raise VolumeError(f"{message} {why}" if why else message)
