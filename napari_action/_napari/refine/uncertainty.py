"""Uncertainty maps shown as napari layers.

The maps themselves (which measure, coverage, ranking) live in the core,
:mod:`napari_action.inference.uncertainty`; :func:`uncertainty_layer` shows
one as an Image layer "<image> uncertainty" on the image's grid.
"""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import UNCERTAINTY_KEY, geometry_kwargs
from napari_action._napari.made_layers import is_duplicate, mark_made
from napari_action._napari.placement import take_geometry

#: Suffix of the uncertainty layer made for an image layer.
UNCERTAINTY_SUFFIX = " uncertainty"


def find_uncertainty_layer(viewer, image_name: str):
    """The uncertainty layer made for ``image_name``, if any (never the user's copy of it)."""
    for layer in viewer.layers:
        if layer.metadata.get(UNCERTAINTY_KEY) == image_name and not is_duplicate(layer):
            return layer
    return None


def remove_outdated_map(viewer, image_name: str) -> str | None:
    """Remove the uncertainty layer of ``image_name``, just given new data (``layer.data = a crop``).

    It mapped the data the image held before, over the new one. Removed rather than kept: napari-action made it,
    nothing the user made goes with it, and Predict makes the map of the new data. Returns what the status line
    should say; None if there was none.
    """
    layer = find_uncertainty_layer(viewer, image_name)
    if layer is None:
        return None
    viewer.layers.remove(layer)
    return f"{layer.name!r} went: it mapped the data {image_name!r} held before. Predict shows its uncertainty again."


def uncertainty_layer(viewer, image, volume: np.ndarray):
    """Create, or update, the "<image> uncertainty" Image layer showing ``volume``.

    The layer overlays the image (same scale, translate, affine...), uses the
    'inferno' colormap on a fixed [0, 1] range and never takes the selection
    away from the layer the user works on. Its data *is* ``volume``: later
    in-place updates only need a ``refresh()``. A layer already made gets the
    new ``volume`` whatever its shape, and the image's geometry of now, keeping how the user set it to show.
    """
    layer = find_uncertainty_layer(viewer, image.name)
    if layer is not None:
        # The map is of the image's voxels as they are, which may have another voxel size or, a crop, lie elsewhere.
        take_geometry(layer, image)
        # One of another shape was left from data the image no longer holds (given a crop while no panel
        # listened): a second layer beside it would be found after it by every later Predict, and added again.
        if layer.data is not volume:
            layer.data = volume
        else:
            layer.refresh()
        return layer
    active = viewer.layers.selection.active
    layer = viewer.add_image(
        volume,
        name=f"{image.name}{UNCERTAINTY_SUFFIX}",
        colormap="inferno",
        contrast_limits=(0.0, 1.0),
        opacity=0.6,
        blending="additive",
        metadata={UNCERTAINTY_KEY: image.name},
        **geometry_kwargs(image),
    )
    mark_made(layer)
    if active is not None:
        viewer.layers.selection.active = active
    return layer
