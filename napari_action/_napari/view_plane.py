"""Which slices the viewer shows: axial, coronal, sagittal, or the plane the user painted in.

napari opens a NIfTI with its slider on array axis 0, which for the usual RAS
files shows sagittal slices, whatever plane the user means to paint. The
anatomical planes come from the image's NIfTI header (or its napari transform),
so they are right for files stored in any axis order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from napari_action._napari.action_session import viewer_slicing_axis
from napari_action._napari.files.export import layer_geometry
from napari_action._napari.layers import image_layers, snapshot_labels
from napari_action.data.annotations import infer_axis

if TYPE_CHECKING:
    import napari

KEEP = "as napari shows it"
PAINTED = "the painted slices"
ANATOMICAL = ("axial", "coronal", "sagittal")
CHOICES = (KEEP, *ANATOMICAL, PAINTED)


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
