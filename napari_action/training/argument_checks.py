"""The trainer's arguments checked one by one: the config, the images, their labels, voxel sizes and affines.

Each check raises ``ValueError`` (``TypeError`` for a wrong kind of object) with a message that says what
to do, so front ends can show it as it is.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from napari_action.checks import as_int, check_spacing
from napari_action.config import TrainConfig
from napari_action.data.normalized_volume import is_array_like
from napari_action.io.checkpoint import Checkpoint, load_checkpoint

__all__ = [
    "check_affines",
    "check_class_names",
    "check_config",
    "check_geometry",
    "check_init",
    "check_labeled_slices",
    "check_names",
    "check_spacings",
    "check_volumes",
    "numpy_of_tensor",
    "one_per_image",
    "pad_labels",
]


def check_config(config: Any) -> TrainConfig:
    """``config`` if it is a :class:`TrainConfig`.

    Raises
    ------
    TypeError
        Anything else (a dict of settings, a budget's name), with how to build one from it.
    """
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, Mapping):
        how = "TrainConfig.preset('cpu', **settings)"
    elif isinstance(config, str):
        how = f"TrainConfig.preset({config!r})"
    else:
        how = "TrainConfig.preset('cpu', steps_stage3=300)"
    raise TypeError(f"config must be a TrainConfig, got a {type(config).__name__}; build one with {how}.")


def one_per_image(values: Any, what: str) -> list[Any]:
    """``values`` (images, or their labels) as a list with one entry per image, from any sequence or iterable;
    a torch tensor among them becomes the numpy array it holds (:func:`numpy_of_tensor`).

    Raises
    ------
    TypeError
        One array where a list of them is expected (``Trainer(image, labels)`` for
        ``Trainer([image], [labels])``: iterated, a 3D array became a list of 2D images), a mapping, or
        file names where arrays are expected.
    """
    if isinstance(values, np.ndarray) or is_array_like(values):
        shape = tuple(values.shape)
        fix = "put it in a list: Trainer([image], [labels])" if len(shape) == 3 else "each a 3D array"
        raise TypeError(f"Give the {what} as a list, one per image; got one array of shape {shape}: {fix}.")
    if isinstance(values, Mapping):
        kind = type(values).__name__
        raise TypeError(f"Give the {what} as a list, one per image in the images' order; got a {kind}.")
    # One file name is a sequence of one-letter strings: each became an image "of shape ()".
    values = [values] if is_file_name(values) else list(values)  # a generator is read once
    names = [value for value in values if is_file_name(value)]
    if names:
        read = "load_labels" if what == "labels" else "load_volume"
        raise TypeError(
            f"Give the {what} as arrays, not file names (got {str(names[0])!r}); read each file first: "
            f"array, meta = {read}(path) (from napari_action import {read})."
        )
    return [numpy_of_tensor(value) for value in values]


def is_file_name(value: Any) -> bool:
    """Whether ``value`` is a path (``str``, ``pathlib.Path``), given where an array is expected."""
    return isinstance(value, (str, os.PathLike))


def numpy_of_tensor(value: Any) -> Any:
    """A torch tensor as a numpy array (sharing the memory of one on the CPU, never written); anything else as is.

    A tensor has a shape, a dtype and indexing, so it passed for a lazily read array, whose reading then
    failed on numpy not knowing ``torch.float32`` or a tensor's ``any``: the predictor and ``evaluate``
    take tensors, the trainer raised a TypeError that said nothing of them.
    """
    if not isinstance(value, torch.Tensor):
        return value
    value = value.detach().cpu()
    # numpy has no bfloat16: such a tensor is read as float32, which holds every value of it.
    return (value.float() if value.dtype == torch.bfloat16 else value).numpy()


def check_volumes(volumes: Sequence[Any]) -> list[Any]:
    """The images to train on, each 3D with numeric voxels; lazy arrays stay lazy.

    Raises
    ------
    ValueError
        No image, an image that is not 3D, or one with non-numeric voxels.
    TypeError
        One array, not a list of them (:func:`one_per_image`).
    """
    volumes = one_per_image(volumes, "images")
    if len(volumes) == 0:
        raise ValueError("Give at least one 3D image to train on.")
    checked = []
    for index, volume in enumerate(volumes):
        array = volume if is_array_like(volume) else np.asarray(volume)
        if len(array.shape) != 3:
            raise ValueError(
                f"Image {index} has shape {array.shape}; ACTION trains on 3D volumes "
                "(open a 3D NIfTI, or select a 3D image layer)."
            )
        # A VolumeSource has no dtype: opening it checked its voxel type already.
        dtype = getattr(array, "dtype", None)
        if dtype is not None and not np.issubdtype(dtype, np.number):
            raise ValueError(f"Image {index} has non-numeric dtype {dtype}.")
        checked.append(array)
    return checked


def check_spacings(spacings: Sequence[Sequence[float]] | None, volumes: list[Any]) -> list[tuple[float, ...]]:
    """One positive voxel size in mm per image and array axis; 1 mm when none is given.

    Raises
    ------
    ValueError
        Not one size per image, or a size that is not three positive, finite numbers.
    TypeError
        One voxel size, not a list of them.
    """
    if spacings is None:
        return [(1.0, 1.0, 1.0)] * len(volumes)
    if all(isinstance(size, numbers.Real) for size in spacings):
        one = tuple(float(size) for size in spacings)
        raise TypeError(
            f"Give the spacings as a list, one (x, y, z) voxel size per image; got one: {one}. "
            "Put it in a list: spacings=[(x, y, z)]."
        )
    checked = [tuple(float(s) for s in spacing) for spacing in spacings]
    # NaN passed "min(s) <= 0" and trained on, every distance in millimetres NaN.
    if len(checked) != len(volumes) or not all(_is_voxel_size(s) for s in checked):
        raise ValueError(
            f"Give one positive, finite (x, y, z) voxel size in mm per image; got {spacings} for {len(volumes)} images."
        )
    return checked


def _is_voxel_size(spacing: tuple[float, ...]) -> bool:
    """Three positive, finite sizes: :func:`~napari_action.checks.check_spacing`'s rule."""
    try:
        check_spacing(spacing, 3)
    except ValueError:
        return False
    return True


def check_affines(affines: Sequence[np.ndarray] | None, count: int) -> list[np.ndarray] | None:
    """One invertible 4 x 4 voxel → world affine per image, or ``None`` when none is given.

    Raises
    ------
    ValueError
        Not one affine per image, or one that is not an invertible 4 x 4 matrix.
    """
    if affines is None:
        return None
    if isinstance(affines, np.ndarray) and affines.ndim == 2:
        raise TypeError(
            "Give the affines as a list, one 4 x 4 matrix per image; got one. Put it in a list: affines=[affine]."
        )
    checked = [np.asarray(a, dtype=np.float64) for a in affines]
    if len(checked) != count:
        raise ValueError(f"Give one affine per image; got {len(checked)} for {count} images.")
    for index, affine in enumerate(checked):
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"The affine of image {index} is not an invertible 4 x 4 voxel-to-world matrix: {affine}.")
    return checked


def check_geometry(
    spacings: Sequence[Sequence[float]] | None, affines: Sequence[np.ndarray] | None, volumes: list[Any]
) -> tuple[list[tuple[float, ...]], list[np.ndarray]]:
    """Each image's voxel size (from its affine when no spacings are given), and its voxel → world
    affine (from the spacings when none are given): what registers the painted images onto the others."""
    checked = check_affines(affines, len(volumes))
    if spacings is None and checked is not None:
        spacings = [np.linalg.norm(affine[:3, :3], axis=0) for affine in checked]
    spacings = check_spacings(spacings, volumes)
    return spacings, checked if checked is not None else [np.diag([*spacing, 1.0]) for spacing in spacings]


def pad_labels(labels: Sequence[Any], count: int) -> list[Any]:
    """``labels`` with ``None`` (unlabeled) for the images it does not reach.

    Raises
    ------
    ValueError
        More label volumes than images.
    TypeError
        One label array, not a list of them (:func:`one_per_image`).
    """
    labels = one_per_image(() if labels is None else labels, "labels")
    if len(labels) > count:
        raise ValueError(f"Got {len(labels)} label volumes for {count} images; each label volume needs its image.")
    return labels + [None] * (count - len(labels))


def check_class_names(class_names: Any) -> dict[int, str]:
    """``class_names`` as label value (int) → name (str); empty for ``None``.

    Keys are whole numbers of any kind: ``"3"`` (names read from a JSON file) is 3, as a saved model stores
    it; kept as ``"3"``, its class read as painted nowhere and was named so in :attr:`Trainer.advice`.

    Raises
    ------
    TypeError
        Not a mapping: a list of names became pairs of their letters (``["bg", "RV"]`` named value "b" "g").
    ValueError
        A key that is not a whole number.
    """
    if class_names is None:
        return {}
    if not isinstance(class_names, Mapping):
        kind = type(class_names).__name__
        raise TypeError(
            f"Give class_names as a mapping of label value to name, e.g. {{1: 'RV', 2: 'MYO'}}; got a {kind}. "
            "From a list of names in the order of the values: dict(enumerate(names))."
        )
    return {as_int(value, "a class_names key (a label value)"): str(name) for value, name in class_names.items()}


def check_labeled_slices(labeled_slices: Any) -> dict[int, list[int]] | None:
    """``labeled_slices`` as image index (int) → slice indices (a list of int, read more than once); ``None`` as is.

    Raises
    ------
    TypeError
        Not a mapping (a list of slices per image), or one image's slices given as one number; the
        message shows the form to use.
    ValueError
        An index that is not a whole number.
    """
    if labeled_slices is None:
        return None
    example = "e.g. {0: [3, 9]} for slices 3 and 9 of the first image"
    if not isinstance(labeled_slices, Mapping):
        kind = type(labeled_slices).__name__
        raise TypeError(f"Give labeled_slices as a mapping of image index to slice indices, {example}; got a {kind}.")
    checked = {}
    for volume, slices in labeled_slices.items():
        if isinstance(slices, (numbers.Number, str)) or not isinstance(slices, Iterable):
            raise TypeError(f"labeled_slices[{volume!r}] must list slice indices, {example}; got {slices!r}.")
        checked[as_int(volume, "an image index of labeled_slices")] = [as_int(s, "a labeled slice") for s in slices]
    return checked


def check_names(names: Any, count: int) -> list[str] | None:
    """``names`` (what the user calls each image) as one string per image; ``None`` as is.

    Raises
    ------
    TypeError
        One name, not a list of them.
    ValueError
        Not one name per image (a message naming an image past the end raised IndexError instead).
    """
    if names is None:
        return None
    if is_file_name(names):
        raise TypeError(f"Give the names as a list, one per image; got one: {str(names)!r}. Put it in a list.")
    checked = [str(name) for name in names]
    if len(checked) != count:
        raise ValueError(f"Give one name per image; got {len(checked)} names for {count} images.")
    return checked


def check_init(init: Any) -> Checkpoint | None:
    """The model ``Trainer(init=...)`` continues: a model file read, a :class:`Checkpoint` as is, ``None`` as is.

    Raises
    ------
    TypeError
        Anything else (a trainer, a predictor): it raised AttributeError: '...' object has no attribute 'config'.
    CheckpointError
        The file cannot be read as a model (:func:`~napari_action.io.checkpoint.load_checkpoint`).
    """
    if init is None or isinstance(init, Checkpoint):
        return init
    if is_file_name(init):
        return load_checkpoint(init)
    raise TypeError(
        f"init must be a model file's path or a Checkpoint; got a {type(init).__name__}. To continue a "
        "trainer's model, give init=trainer.checkpoint(); a saved one, init='model.pt'."
    )
