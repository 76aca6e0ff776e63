"""What the Refine panel's Training set and Next slices lists hold: their rows, and the next slices picked.

The panel reads the volumes, their labeled slices and the axes they run along (:mod:`.training_set`); here
they become list rows (:func:`~.tabs.slice_item` under :func:`~.tabs.header_item`), and each volume's current
prediction layer gives the slices to annotate next (core :func:`~napari_action.inference.next_slices.next_slices`).
"""

from __future__ import annotations

from qtpy.QtWidgets import QListWidgetItem

from napari_action._napari.layers import find_prediction_layer, layer_array, layer_shape
from napari_action._napari.refine.tabs import header_item, slice_item
from napari_action._napari.refine.training_set import LabeledSlices, annotated_values
from napari_action.inference.next_slices import NextSlice, next_slices

#: Number of slices proposed in "Next slices to annotate".
N_SUGGESTIONS = 5
#: How the list is ranked (docs/benchmarks.md, "Next slices to annotate"): classes on no annotated
#: slice first, then the middle of the largest unannotated run inside the predicted structure.
NEXT_STRATEGY = "coverage+gap"
#: The structure range counts only slices holding at least this share of the largest slice's predicted
#: structure, so that a few stray voxels far away do not stretch it (Colin27: better in 3 of 3 seeds).
NEXT_AREA_SHARE = 0.1


def training_set_rows(volumes: list[tuple], labeled: LabeledSlices, axes: dict[str, int]) -> list[QListWidgetItem]:
    """A header per volume (how many slices painted and accepted, along which axis), then a row per slice."""
    rows = []
    for image, _ in volumes:
        painted, accepted = labeled[image.name]
        along = axes[image.name]
        rows.append(header_item(f"{image.name}: {len(painted)} painted, {len(accepted)} accepted (axis {along})"))
        for s in sorted(painted | accepted):
            kind = " + ".join(k for k, used in (("painted", s in painted), ("accepted", s in accepted)) if used)
            rows.append(slice_item(f"    slice {s} · {kind}", image.name, along, s))
    return rows


def next_slice_rows(picks: list[tuple[str, int, NextSlice]]) -> list[QListWidgetItem]:
    """``vol · slice 6 · largest gap``: a row per pick of :func:`next_slice_picks`."""
    return [
        slice_item(f"{name} · slice {pick.slice_index} · {pick.reason}", name, axis, pick.slice_index)
        for name, axis, pick in picks
    ]


def next_slice_picks(
    viewer, volumes: list[tuple], labeled: dict[str, set[int]], axes: dict[str, int], class_names: dict
) -> list[tuple[str, int, NextSlice]]:
    """(image name, axis, pick) of the slices to annotate next, over every volume with a prediction.

    Missing classes come first, then the largest gaps (longest first): the picks of
    :data:`NEXT_STRATEGY` on each volume's current prediction layer, edits included. ``labeled``: image name ->
    its painted or accepted slices along its axis in ``axes``.
    """
    found = []
    for image, painted in volumes:
        prediction = find_prediction_layer(viewer, image)
        if prediction is None or layer_shape(prediction) != layer_shape(image):
            continue
        predicted, along = layer_array(prediction), axes[image.name]
        annotated = sorted(labeled.get(image.name, ()))
        values = annotated_values(painted, predicted, annotated, along)
        picks = next_slices(
            NEXT_STRATEGY,
            predicted,
            along,
            annotated,
            values,
            k=N_SUGGESTIONS,
            class_names=class_names,
            min_area_share=NEXT_AREA_SHARE,
        )
        found += [(image.name, along, pick) for pick in picks]
    found.sort(key=lambda item: (not item[2].reason.endswith("missing"), -item[2].score))
    return found[:N_SUGGESTIONS]
