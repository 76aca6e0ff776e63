"""Where layers lie and which slices the viewer shows: axial, coronal, sagittal, or the plane painted in.

The one home of the viewer's geometry: a layer's data-to-world matrix, its NIfTI geometry (header
or transform), the axis the viewer slices along. Export, training and refinement all ask here.

napari opens a NIfTI with its slider on array axis 0, which for the usual RAS
files shows sagittal slices, whatever plane the user means to paint. The
anatomical planes come from the image's NIfTI header (or its napari transform),
so they are right for files stored in any axis order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_action._napari.layers import image_layers, layer_image_data, snapshot_labels
from napari_action._napari.writer import layer_attributes, meta_for_layer
from napari_action.data.slicing_axis import infer_axis
from napari_action.io.geometry import VoxelGeometry
from napari_action.io.reoriented import Reorientation
from napari_action.io.volume_meta import VolumeMeta

if TYPE_CHECKING:
    import napari

KEEP = "as napari shows it"
PAINTED = "the painted slices"
ANATOMICAL = ("axial", "coronal", "sagittal")
CHOICES = (KEEP, *ANATOMICAL, PAINTED)


def viewer_slicing_axis(viewer) -> int:
    """Data axis (of a 3D layer) the viewer currently slices through."""
    dims = viewer.dims
    world_axis = dims.not_displayed[0] if dims.not_displayed else dims.order[0]
    # 3D layers map onto the last three world dimensions.
    return int(np.clip(world_axis - (dims.ndim - 3), 0, 2))


def layer_volume_meta(layer) -> VolumeMeta:
    """NIfTI geometry of a 3D layer: its stored header if still valid, else its transform.

    Only the data's shape and type are looked at: a layer backed by zarr or dask (a scan larger than
    memory) is not read, which on the GUI thread would freeze napari for as long as the read takes.
    """
    return meta_for_layer(layer.name, layer_image_data(layer), layer_attributes(layer))


def layer_geometry(layer) -> VoxelGeometry:
    """Voxel spacing and directions of a 3D layer: from its NIfTI header if it has one, else its napari transform.

    The header wins because the reader shows files whose axes are permuted in
    voxel order (see :mod:`napari_action._napari.reader`), so their napari
    transform hides the true orientation.
    """
    return VoxelGeometry.from_matrix(layer_volume_meta(layer).affine)


def training_order(model, layer) -> Reorientation | None:
    """How to read ``layer`` in the voxel order ``model`` saw its training volumes in (None: as stored, or not known:
    a model saved without axis signs). A scan stored LPS beside RAS training volumes shows the network the anatomy
    mirrored: predicted as stored, the MNI152 template beside Colin27 scored mean Dice 0.13, reoriented 0.65."""
    references = [] if model is None else list(model.references)
    return Reorientation.between(references[0], layer_geometry(layer)) if references else None


def geometry_in_training_order(model, layer) -> VoxelGeometry:
    """``layer``'s voxel geometry as prediction reads it (:func:`training_order`), for the checks against the model."""
    turn = training_order(model, layer)
    if turn is None:
        return layer_geometry(layer)
    meta = layer_volume_meta(layer)
    return VoxelGeometry.from_matrix(turn.affine(meta.affine, meta.shape))


def show_slices_along(viewer: napari.viewer.Viewer, axis: int) -> None:
    """Put the viewer's slider on data axis ``axis`` of the 3D layers (shown in 2D)."""
    dims = viewer.dims
    # 3D layers map onto the last three world dimensions; extra leading ones keep their place.
    offset = dims.ndim - 3
    rest = [offset + other for other in range(3) if other != axis]
    dims.order = (*range(offset), offset + axis, *rest)
    viewer.dims.ndisplay = 2


def axis_for_choice(viewer: napari.viewer.Viewer, choice: str, images: list, labels: list) -> int | None:
    """Data axis that shows ``choice`` (one of :data:`CHOICES`); None for :data:`KEEP`.

    Parameters
    ----------
    images : list of napari Image layers
        Layers whose orientation decides the anatomical planes (the first one is used);
        all image layers of the viewer when empty.
    labels : list of napari Labels layers
        Layers whose painted slices decide :data:`PAINTED`.

    Raises
    ------
    ValueError
        With a message for the user: no image, no painted voxel, or an oblique volume.
    """
    if choice == KEEP:
        return None
    if choice == PAINTED:
        painted = [snapshot_labels(layer) for layer in labels if layer.data.ndim == 3]
        if not any(array.any() for array in painted):
            raise ValueError("Nothing is painted yet: paint a slice first, or choose a plane.")
        return infer_axis(painted, fallback=viewer_slicing_axis(viewer))
    if choice not in ANATOMICAL:
        raise ValueError(f"Unknown view {choice!r}; choose one of {', '.join(CHOICES)}.")
    candidates = [layer for layer in images or image_layers(viewer) if layer.data.ndim == 3]
    if not candidates:
        raise ValueError("Open a 3D image first: the planes follow its orientation.")
    return layer_geometry(candidates[0]).axis_for_plane(choice)
