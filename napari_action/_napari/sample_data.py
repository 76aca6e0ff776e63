"""npe2 sample data: the cardiac phantom and Colin27, each with a few slices already painted.

Both samples give image layers plus a *sparse* Labels layer (3 slices copied from the truth), so
that File > Open Sample followed by the ACTION widget is a complete demo. Labels layers carry
``features`` (napari shows the class name under the cursor) and ``metadata["class_names"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_action._napari.reader import LayerData, layer_kwargs
from napari_action.data.samples import (
    COLIN27_CLASS_NAMES,
    PHANTOM_CLASS_NAMES,
    evenly_spaced_slices,
    load_colin27,
    make_phantom,
    sparse_from_truth,
)
from napari_action.io.volume_meta import VolumeMeta

PAINTED_SLICES = 3


def phantom_sample() -> list[LayerData]:
    """Three phantom subjects ("phantom-1".."phantom-3") and 3 painted slices of subject 1."""
    subjects = make_phantom(n_subjects=3, seed=0)
    layers: list[LayerData] = [(s.image, layer_kwargs(s.meta, s.name), "image") for s in subjects]
    first = subjects[0]
    # The phantom's slices run along the last axis (short-axis stack).
    slices = evenly_spaced_slices(first.labels, axis=2, k=PAINTED_SLICES)
    sparse = sparse_from_truth(first.labels, 2, slices)
    layers.append(_labels(sparse, first.meta, f"{first.name} labels", PHANTOM_CLASS_NAMES))
    return layers


def colin27_sample() -> list[LayerData]:
    """Colin27 T1, 3 painted axial slices of the AAL subcortical map, and the hidden truth.

    Raises
    ------
    FileNotFoundError
        When ``mricron-data`` is not installed; the message says how to install it.
    """
    image, truth, meta = load_colin27()
    axis = _axial_axis(meta)
    sparse = sparse_from_truth(truth, axis, evenly_spaced_slices(truth, axis, PAINTED_SLICES))
    return [
        (image, layer_kwargs(meta, "colin27"), "image"),
        _labels(sparse, meta, "colin27 labels", COLIN27_CLASS_NAMES),
        _labels(truth, meta, "colin27 truth", COLIN27_CLASS_NAMES, visible=False),
    ]


def _labels(data: np.ndarray, meta: VolumeMeta, name: str, classes: dict[int, str], **extra: Any) -> LayerData:
    features = {"index": list(classes), "class": list(classes.values())}
    kwargs = layer_kwargs(meta, name, metadata={"class_names": dict(classes)}, features=features, **extra)
    return data, kwargs, "labels"


def _axial_axis(meta: VolumeMeta) -> int:
    """Array axis pointing along the scanner's inferior-superior direction."""
    return next(i for i, code in enumerate(meta.orientation) if code in "SI")
