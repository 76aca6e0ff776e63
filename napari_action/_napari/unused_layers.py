"""Why layers the user sees in napari are missing from the ACTION panel's lists, and how to make usable ones.

The lists offer 3D single-channel layers only. A layer left out for its shape is silently missing there;
without these notes Train said only "add a Labels layer over a 3D image" to a user who had done so as far as
they could see (a 2D Labels layer over the scan, a colour volume, a two-channel stack).
"""

from __future__ import annotations

from napari.layers import Image, Labels

from napari_action._napari.layers import UNCERTAINTY_KEY, is_prediction_layer, layer_shape, layer_shape_text


def unused_layers_note(viewer) -> str:
    """A sentence per kind of layer the lists leave out, naming the layers and saying what to do ("" if none)."""
    layers = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image | Labels)
        and not is_prediction_layer(layer)
        and UNCERTAINTY_KEY not in layer.metadata
    ]
    stacks = [layer for layer in layers if _spatial_axes(layer) > 3]
    flat = [layer for layer in layers if _spatial_axes(layer) < 3]
    colour = [layer for layer in layers if _is_rgb(layer) and _spatial_axes(layer) == 3]
    return _stack_note(stacks) + _flat_note(flat) + _colour_note(colour)


def _is_rgb(layer) -> bool:
    return bool(getattr(layer, "rgb", False))


def _spatial_axes(layer) -> int:
    """Axes of the layer's data other than an RGB(A) image's colour axis."""
    return len(layer_shape(layer)) - _is_rgb(layer)


def _named(layers: list) -> str:
    return ", ".join(f"{layer.name!r} ({layer_shape_text(layer)})" for layer in layers)


def _stack_note(layers: list) -> str:
    if not layers:
        return ""
    return (
        f" Not used: {_named(layers)}, with more than 3 axes (channels or time points); napari-action learns from 3D"
        " volumes, one channel and time point each. Make 3D images of a stack: right-click it in the layer list >"
        " Split Stack when its first axis holds the channels or time points, else add it again with that axis as"
        " channels (in napari's console: viewer.add_image(data, channel_axis=1, scale=(2.0, 0.4, 0.4)), your axis and"
        " voxel sizes). Then paint on a Labels layer made while one of the 3D images is selected."
    )


def _flat_note(layers: list) -> str:
    if not layers:
        return ""
    return (
        f" Not used: {_named(layers)}, with 2 axes: napari-action learns from 3D volumes and the slices painted in"
        " them, not from a single 2D slice. Open the 3D scan, select it and make the Labels layer with the"
        " layer list's New labels button (it takes the scan's shape and placement), then paint a few of its slices."
    )


def _colour_note(layers: list) -> str:
    if not layers:
        return ""
    return (
        f" Not used: {_named(layers)}, a colour (RGB) volume; napari-action learns from one intensity per voxel."
        " Right-click it in the layer list > Split RGB, then train on one of the three channel images (or convert it"
        " to grey levels), with your labels paired with that image."
    )
