"""What a Train press trains on: the image layers in volume order and the Labels layer painted on each.

:class:`TrainingPlan` is the validated answer to "what do we train on", checked before anything is
built, with the messages that tell the user what to change when the selection cannot be trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_action._napari.image_checks import image_type_problem
from napari_action._napari.layers import (
    class_names_of,
    layer_array,
    layer_image_data,
    layer_shape,
    layer_shape_text,
    prediction_source,
    snapshot_labels,
)
from napari_action._napari.unused_layers import unused_layers_note
from napari_action._napari.writer import layer_world_affine
from napari_action.io.geometry import grid_difference, same_voxel_grid


@dataclass
class TrainingPlan:
    """Image layers in trainer volume order and the painted labels of each.

    Labeled volumes come first (the trainer takes ``labels[k]`` for
    ``volumes[k]``), then the selected images without labels.
    """

    images: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    # What training reads from each image, taken once (:meth:`image_volumes`): the arrays the trainer holds.
    volumes: list = field(default_factory=list)

    @classmethod
    def from_picker(cls, picker) -> TrainingPlan:
        """Validate the picker's selection.

        Raises
        ------
        ValueError
            With a message telling the user what to change.
        """
        images = {layer.name: layer for layer in picker.selected_images()}
        pairs = picker.selected_labels()
        if not pairs:
            raise ValueError(
                "No painted Labels layer is selected: add a Labels layer over a 3D image, "
                "paint a few slices in it, then press Train." + unused_layers_note(picker.viewer)
            )
        plan = cls()
        for labels, image_name in pairs:
            image = _paired_image(labels, image_name, images, picker.viewer)
            if _index(plan.images, image) is not None:
                other = plan.labels[_index(plan.images, image)]
                raise ValueError(
                    f"Both {other.name!r} and {labels.name!r} are paired with image "
                    f"{image.name!r}; uncheck one of them or pair it with another image."
                )
            painted = layer_array(labels)
            if not painted.any():
                raise ValueError(f"Nothing is painted in {labels.name!r} yet: paint a few slices first, or uncheck it.")
            negative = negative_values_problem(labels.name, painted)
            if negative is not None:
                raise ValueError(negative)
            plan.images.append(image)
            plan.labels.append(labels)
        plan.images += [img for img in images.values() if _index(plan.images, img) is None]
        problem = next(filter(None, map(image_type_problem, plan.images)), None)
        if problem is not None:
            raise ValueError(problem)
        return plan

    def index_of(self, image) -> int | None:
        """The volume index of image layer ``image`` (the layer itself, not one of its name); None if not trained."""
        return _index(self.images, image)

    def image_volumes(self) -> list:
        """The data of each image as training reads it (zarr or dask stays lazy), taken at the first call."""
        if not self.volumes:
            self.volumes = [layer_image_data(image) for image in self.images]
        return self.volumes

    def replaced(self, index: int) -> bool:
        """True once the image of volume ``index`` holds other data than training read (``layer.data = ...``).

        The trainer keeps the data it read: predicted by its volume index, the old scan was written into a layer
        shaped like the new one (a crop or another scan loaded into the layer), and nothing worked again.
        """
        return bool(self.volumes) and layer_image_data(self.images[index]) is not self.volumes[index]

    def labels_layers(self) -> list:
        """The painted layers in use (never written to)."""
        return [layer for layer in self.labels if layer is not None]

    def label_snapshots(self) -> list[np.ndarray | None]:
        """Private copies of the painted labels, one per labeled volume."""
        return [snapshot_labels(layer) for layer in self.labels]

    def class_names(self) -> dict[int, str]:
        """Label value -> name from the painted layers' features (first wins)."""
        names: dict[int, str] = {}
        for layer in self.labels_layers():
            for value, name in (class_names_of(layer) or {}).items():
                names.setdefault(value, name)
        return names

    def colormap(self):
        """The first painted layer's colormap, so predictions keep the painted colours."""
        layers = self.labels_layers()
        return layers[0].colormap if layers else None

    def used_layers(self) -> list:
        """The plan's images, then its painted layers."""
        return [*self.images, *self.labels_layers()]

    def uses(self, layer) -> bool:
        """True if ``layer`` is one of the plan's images or painted layers."""
        return any(layer is used for used in self.used_layers())

    def volume_of(self, layer) -> int:
        """Volume index of an image, its painted layer or its prediction layer (default 0)."""
        source = prediction_source(layer)
        for index, image in enumerate(self.images):
            painted = self.labels[index] if index < len(self.labels) else None
            if layer is image or layer is painted or source == image.name:
                return index
        return 0


def negative_values_problem(name: str, labels: np.ndarray) -> str | None:
    """What to do about the negative values in the labels of the layer called ``name``; None without any.

    Two ways lead there: a scan of few integer values opened as labels, and a label painted below 0
    (napari's label box goes below 0 on a layer of signed integers, one "decrease label" key too many).
    """
    if labels.dtype.kind != "i" or labels.min() >= 0:
        return None
    count = int(np.count_nonzero(labels < 0))
    return (
        f"{name!r} holds negative values (down to {labels.min()}, on {count} voxel{'s' if count > 1 else ''}): 0 "
        "means unpainted and each class is a positive number. If you painted them (the label box of a layer of "
        "signed integers goes below 0), erase them or paint them over with a positive label; if the layer is a "
        "scan (a file of few integer values opens as labels), right-click it in the layer list > Convert to Image; "
        "else uncheck it."
    )


def removed_layer_warning(name: str) -> str:
    """What training does when a layer it uses is removed, and what the user can do next."""
    return (
        f"ACTION: layer {name!r} was removed, so training stops after its current step. The model trained so far "
        "stays: Predict all opened volumes or Save model… use it; Train starts again on the layers left."
    )


def _index(layers: list, layer) -> int | None:
    """Position of ``layer`` in ``layers`` by identity (layers do not compare by value)."""
    return next((i for i, item in enumerate(layers) if item is layer), None)


def _paired_image(labels, image_name: str | None, images: dict, viewer):
    if image_name is None:
        fits = [f"{img.name!r} ({layer_shape_text(img)})" for img in images.values()]
        raise ValueError(
            f"Labels layer {labels.name!r} has shape {layer_shape_text(labels)}, but no selected image has that shape"
            + (f" (selected: {', '.join(fits)})" if fits else " (no 3D image is selected)")
            + ". Labels must lie on the voxel grid of their image; uncheck the layer or fix its shape."
            + unused_layers_note(viewer)
        )
    image = images.get(image_name)
    if image is None:
        raise ValueError(f"Image {image_name!r}, paired with {labels.name!r}, is not selected or is not 3D.")
    if layer_shape(image) != layer_shape(labels):
        raise ValueError(
            f"Labels layer {labels.name!r} has shape {layer_shape_text(labels)} but its image {image.name!r} has shape "
            f"{layer_shape_text(image)}. Labels must lie on the voxel grid of their image."
        )
    # Compared as napari draws them: what was painted lies over the image only if both transforms agree.
    if not same_voxel_grid(layer_world_affine(labels), layer_world_affine(image)):
        raise ValueError(
            f"Labels layer {labels.name!r} has the shape of {image.name!r} but is placed elsewhere in the viewer "
            f"({grid_difference(layer_world_affine(labels), layer_world_affine(image))}), so what you painted "
            "does not lie over those voxels. Paint on a Labels layer made while the image was selected "
            "(napari copies its placement), or open the labels file saved with the image's header."
        )
    return image
