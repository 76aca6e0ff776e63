"""npe2 writer: a napari Labels layer as NIfTI with its source volume's geometry.

The geometry comes from ``metadata["napari_action"]`` (set by the reader and kept on prediction
layers) when it still matches the layer's shape and the world transform the reader gave it
(:func:`napari_action._napari.reader.display_affine`). A layer without it that lies exactly on a file
open in the viewer (napari's "new labels" button copies only the selected image's transform) gets that
file's header: its qform and sform with their codes, which ITK-based tools (ITK-SNAP, 3D Slicer) read
otherwise than napari (the qform before an sform of another code; origin 0 for a file with neither),
and for an axis-permuted file, which the reader shows voxel-aligned, its true geometry. Otherwise
the layer's own transform (``affine`` composed with scale/translate/rotate/shear) with qform/sform
code 2 ("aligned"), e.g. for a Labels layer drawn over an image added from a script.

napari's Save dialog has already asked before replacing a file, so the writer overwrites, but
atomically (see :func:`napari_action.io.nifti_writer.save_labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import napari
import numpy as np
from napari.utils.transforms import Affine

from napari_action._napari.reader import display_affine, is_axis_permuted
from napari_action.io.nifti import NIFTI_EXTENSIONS, VolumeError
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta

logger = logging.getLogger(__name__)


def write_labels(path: str, data: Any, attributes: Mapping[str, Any]) -> list[str]:
    """Write one Labels layer; ``.nii.gz`` is appended when ``path`` has no NIfTI extension.

    Returns
    -------
    list of str
        The written path.
    """
    if not path.lower().endswith(NIFTI_EXTENSIONS):
        path = f"{path}.nii.gz"
    labels = np.asarray(data)
    meta = meta_for_layer(path, labels, attributes)
    return [str(save_labels(path, labels, meta, overwrite=True))]


def meta_for_layer(path: str, labels: Any, attributes: Mapping[str, Any]) -> VolumeMeta:
    """NIfTI geometry for a layer: the header it was read with if its shape and placement still fit, else its transform.

    ``labels`` is the layer's data: a numpy, zarr or dask array, of which only the shape and type are used.

    Raises
    ------
    VolumeError
        For a layer that is not 3D (``path`` names it in the message).
    """
    if labels.ndim != 3:
        raise VolumeError(f"{path}: napari-action writes 3D label volumes; this layer is {labels.ndim}D.")
    world = world_affine(attributes, labels.ndim)
    meta = _stored_meta(attributes.get("metadata"))
    if meta is not None:
        # The reader shows axis-permuted files with a voxel-aligned affine; both mean "unchanged".
        if meta.shape == labels.shape and any(_placed_at(world, a) for a in (meta.affine, display_affine(meta))):
            return meta
        logger.warning(
            "%s: the layer's shape or transform changed since it was read; writing it with the "
            "layer's own transform (qform/sform code 2).",
            path,
        )
    else:
        source = _source_meta_under(path, labels.shape, world)
        if source is not None:
            return source
    return VolumeMeta.from_affine(world, labels.shape, code=2, dtype=labels.dtype.name)


def _source_meta_under(path: str, shape: tuple[int, ...], world: np.ndarray) -> VolumeMeta | None:
    """The header of a file open in the current viewer that a layer of ``shape`` lies exactly on.

    The layer's transform alone, written with code 2, is where napari draws it but not always where
    other tools draw the file: ITK reads the qform where napari reads an sform of another code, a file
    with neither code at the origin, and the reader shows an axis-permuted file voxel-aligned
    (:func:`display_affine`). The file's own header puts the labels wherever each tool puts the file.

    Raises
    ------
    VolumeError
        When files with different headers lie exactly there (``path`` names it in the message).
    """
    viewer = napari.current_viewer()
    if viewer is None:  # a layer saved from a script without a viewer
        return None
    found: dict[str, VolumeMeta] = {}
    for layer in viewer.layers:
        meta = _stored_meta(layer.metadata)
        if meta is not None and meta.shape == shape and _placed_at(world, display_affine(meta)):
            found[layer.name] = meta
    metas = list(found.values())
    if not metas:
        return None
    first = metas[0]
    if any(not _placed_at(m.affine, first.affine) for m in metas[1:]):  # axis-permuted files, shown alike
        raise VolumeError(
            f"{path}: this layer lies on several files with different geometries ({', '.join(found)}); "
            "close the images it does not belong to and save it again."
        )
    if not is_axis_permuted(first) and any(not _same_header(m, first) for m in metas[1:]):
        return None  # files napari draws alike but other tools not: no header to prefer over the transform
    return first


def _same_header(meta: VolumeMeta, other: VolumeMeta) -> bool:
    """Whether two headers place voxels alike in every tool: the same qform, sform, codes and unit."""
    matrices = all(_placed_at(getattr(meta, name), getattr(other, name)) for name in ("qform", "sform"))
    codes = all(getattr(meta, name) == getattr(other, name) for name in ("qform_code", "sform_code", "xyzt_units"))
    return matrices and codes


def _stored_meta(metadata: Mapping[str, Any] | None) -> VolumeMeta | None:
    """The NIfTI header the reader kept in a layer's ``metadata["napari_action"]``, if any."""
    stored = (metadata or {}).get("napari_action")
    if stored is None:
        return None
    return stored if isinstance(stored, VolumeMeta) else VolumeMeta.from_dict(stored)


def _placed_at(world: np.ndarray, affine: np.ndarray) -> bool:
    """Whether two voxel-to-world matrices agree up to float rounding."""
    return bool(np.allclose(world, affine, rtol=1e-6, atol=1e-6))


def world_affine(attributes: Mapping[str, Any], ndim: int) -> np.ndarray:
    """The layer's full data-to-world matrix: ``affine`` after scale/translate/rotate/shear."""
    names = ("scale", "translate", "rotate", "shear")
    parts = {name: attributes[name] for name in names if attributes.get(name) is not None}
    data_to_physical = Affine(ndim=ndim, **parts).affine_matrix
    physical_to_world = np.asarray(attributes.get("affine", np.eye(ndim + 1)), dtype=np.float64)
    return physical_to_world @ data_to_physical


def layer_attributes(layer) -> dict:
    """The attributes napari hands a writer, limited to what places the layer in the world."""
    return {
        "metadata": layer.metadata,
        "scale": layer.scale,
        "translate": layer.translate,
        "rotate": layer.rotate,
        "shear": layer.shear,
        "affine": layer.affine.affine_matrix,
    }


def layer_world_affine(layer) -> np.ndarray:
    """The 4 × 4 data-to-world matrix napari draws a 3D layer with (its header plays no part)."""
    return world_affine(layer_attributes(layer), 3)
