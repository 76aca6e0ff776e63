"""Where the layers napari-action made over an image lie: where the image lies now.

A layer made for an image copies its placement once, when it is made. Reused in place later (a new Predict, a new
training streaming into it), it stayed where the image lay then, beside an image the user gave another voxel size or
moved since: only the placement follows the image, what the layer holds stays as it is.
"""

from __future__ import annotations

from napari_action._napari.layers import geometry_kwargs


def take_geometry(layer, image) -> None:
    """Place ``layer`` where ``image`` lies now (scale, translate, rotate, shear, affine), its data untouched."""
    for name, value in geometry_kwargs(image).items():
        setattr(layer, name, value)
