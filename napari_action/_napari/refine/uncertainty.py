"""Per-voxel uncertainty of the latest predictions, and the slices worth annotating next.

Which measure
-------------
A whole-volume prediction ("Predict all", "Update once") carries the
normalised softmax entropy (:attr:`PredictionUpdate.entropy`, in [0, 1]):
that is the uncertainty used. Slices streamed while training carry only the
maximum softmax probability ``p``; for them the uncertainty is
``(1 - p) * C / (C - 1)`` with ``C`` classes, which like the normalised
entropy is 0 for a certain voxel and 1 for a uniform guess, so both fill the
same map on one scale (the later source overwrites the earlier, slice by
slice). MC dropout would need several forward passes per slice and the
network has no dropout layers: left out.

Slices never predicted have no value yet; they are masked out of the
ranking (their score is 0) until a prediction covers them.

:class:`UncertaintyMaps` holds the volumes (no Qt); :func:`uncertainty_layer`
shows one as an Image layer "<image> uncertainty" on the image's grid.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from napari_action._napari.layers import UNCERTAINTY_KEY, _geometry_kwargs, layer_shape
from napari_action._napari.refine.accepted import axis_index
from napari_action.inference.suggestions import SliceSuggestion, slice_scores, suggest_slices

logger = logging.getLogger(__name__)

#: Suffix of the uncertainty layer made for an image layer.
UNCERTAINTY_SUFFIX = " uncertainty"


def streamed_uncertainty(confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Uncertainty of streamed slices: ``(1 - p_max) * C / (C - 1)``, in [0, 1]."""
    if n_classes < 2:
        return np.zeros(np.shape(confidence), np.float32)
    scaled = (1.0 - np.asarray(confidence, np.float32)) * (n_classes / (n_classes - 1))
    return np.clip(scaled, 0.0, 1.0).astype(np.float32)


@dataclass
class UncertaintyMap:
    """The uncertainty volume of one image and which slices (along ``axis``) hold values."""

    volume: np.ndarray
    axis: int
    covered: np.ndarray
    _scores: np.ndarray | None = field(default=None, repr=False)

    def scores(self) -> np.ndarray:
        """Per-slice scores (:func:`~napari_action.inference.suggestions.slice_scores`), 0 where not covered."""
        if self._scores is None:
            scores = slice_scores(self.volume, self.axis)
            self._scores = np.where(self.covered, scores, 0.0)
        return self._scores

    def mask(self) -> np.ndarray | None:
        """Scoring mask hiding slices never predicted (None when every slice is)."""
        if self.covered.all():
            return None
        shape = [1, 1, 1]
        shape[self.axis] = self.covered.size
        return np.broadcast_to(self.covered.reshape(shape), self.volume.shape)


class UncertaintyMaps:
    """Uncertainty volumes keyed by image name, filled from predictions."""

    def __init__(self):
        self.maps: dict[str, UncertaintyMap] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.maps

    def get(self, name: str) -> UncertaintyMap | None:
        return self.maps.get(name)

    def forget(self, name: str) -> None:
        self.maps.pop(name, None)

    def _map(self, name: str, shape: tuple[int, ...], axis: int) -> UncertaintyMap:
        found = self.maps.get(name)
        if found is None or found.volume.shape != tuple(shape) or found.axis != axis:
            found = self.maps[name] = UncertaintyMap(
                np.zeros(shape, np.float32), axis, np.zeros(shape[axis], dtype=bool)
            )
        return found

    def set_volume(self, name: str, entropy: np.ndarray, axis: int) -> UncertaintyMap:
        """Store a whole-volume normalised entropy (every slice covered)."""
        found = self._map(name, entropy.shape, axis)
        np.copyto(found.volume, entropy, casting="same_kind")
        found.covered[:] = True
        found._scores = None
        return found

    def set_slices(self, name: str, shape, axis: int, start: int, values: np.ndarray) -> UncertaintyMap:
        """Store streamed slices ``start:start+len(values)`` (``values`` slices-first)."""
        found = self._map(name, tuple(shape), axis)
        stop = start + values.shape[0]
        found.volume[axis_index(axis, slice(start, stop))] = np.moveaxis(values, 0, axis)
        found.covered[start:stop] = True
        found._scores = None
        return found

    def suggestions(self, labeled: Mapping[str, set[int]], k: int = 5) -> list[tuple[str, SliceSuggestion]]:
        """The ``k`` slices most worth annotating, over every image with values.

        Parameters
        ----------
        labeled : mapping of str to set of int
            Painted or accepted slices per image name: never suggested.
        k : int
            Number of suggestions.

        Returns
        -------
        list of (image name, SliceSuggestion)
            Best first.
        """
        names = [name for name, found in self.maps.items() if found.covered.any()]
        if not names:
            return []
        maps = [self.maps[name] for name in names]
        suggestions = suggest_slices(
            [m.volume for m in maps],
            {i: labeled.get(name, set()) for i, name in enumerate(names)},
            [m.axis for m in maps],
            k=k,
            masks=[m.mask() for m in maps],
        )
        return [(names[s.volume_index], s) for s in suggestions]


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
        **_geometry_kwargs(image),
    )
    if active is not None:
        viewer.layers.selection.active = active
    return layer
