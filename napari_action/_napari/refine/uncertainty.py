"""Uncertainty maps shown as napari layers.

The maps themselves (which measure, coverage, ranking) live in the core,
:mod:`napari_action.inference.uncertainty`; :func:`uncertainty_layer` shows
one as an Image layer "<image> uncertainty" on the image's grid.
"""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import UNCERTAINTY_KEY, geometry_kwargs, layer_shape

#: Suffix of the uncertainty layer made for an image layer.
UNCERTAINTY_SUFFIX = " uncertainty"


def find_uncertainty_layer(viewer, image_name: str):
    """The uncertainty layer made for ``image_name``, if any."""
    for layer in viewer.layers:
        if layer.metadata.get(UNCERTAINTY_KEY) == image_name:
            return layer
    return None


def uncertainty_layer(viewer, image, volume: np.ndarray):
    """Create, or update, the "<image> uncertainty" Image layer showing ``volume``.

    The layer overlays the image (same scale, translate, affine...), uses the
    'inferno' colormap on a fixed [0, 1] range and never takes the selection
    away from the layer the user works on. Its data *is* ``volume``: later
    in-place updates only need a ``refresh()``.
    """
    layer = find_uncertainty_layer(viewer, image.name)
    if layer is not None and layer_shape(layer) == volume.shape:
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
    if active is not None:
        viewer.layers.selection.active = active
    return layer
