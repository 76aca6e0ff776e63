"""What the Refine panel's Training set and Next slices lists hold: their rows, and the next slices picked.

The panel reads the volumes, their labeled slices and the axes they run along (:mod:`.training_set`); here
they become list rows (:func:`~.tabs.slice_item` under :func:`~.tabs.header_item`), and each volume's current
prediction layer gives the slices to annotate next (core :func:`~napari_action.inference.next_slices.next_slices`).
"""

from __future__ import annotations

from qtpy.QtWidgets import QListWidgetItem

from napari_action._napari.layers import (
    find_prediction_layer,
    layer_array,
    layer_shape,
    layer_shape_text,
    prediction_source,
)
from napari_action._napari.refine.accepted import painted_slices, tracker_of
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


def training_set_rows(
    volumes: list[tuple], labeled: LabeledSlices, axes: dict[str, int], training_state
) -> list[QListWidgetItem]:
    """A header per volume (how many slices painted and accepted, along which axis), then a row per slice, then
    the slices of its layers that no longer fit it (:func:`outdated_slice_rows`)."""
    rows = []
    for image, painted_layer in volumes:
        painted, accepted = labeled[image.name]
        along = axes[image.name]
        rows.append(header_item(f"{image.name}: {len(painted)} painted, {len(accepted)} accepted (axis {along})"))
        for s in sorted(painted | accepted):
            kind = " + ".join(k for k, used in (("painted", s in painted), ("accepted", s in accepted)) if used)
            rows.append(slice_item(f"    slice {s} · {kind}", image.name, along, s))
        rows += outdated_slice_rows(training_state, image, painted_layer, along)
    return rows


def outdated_slice_rows(training_state, image, painted_layer, along: int) -> list[QListWidgetItem]:
    """Rows without a slice to show for the painted and accepted slices of layers that no longer fit ``image``.

    The image given data of another shape (``layer.data = a crop``): their slices were listed as the old data's,
    and a click went past the end of the crop. They are not training data either (Train refuses the painted layer,
    and leaves the accepted slices out), so each layer's row says so until the layers fit again.
    """
    rows = []
    if painted_layer is not None and layer_shape(painted_layer) != layer_shape(image):
        painted = painted_slices(layer_array(painted_layer), along)
        if painted:
            why = _misfit(painted_layer, image)
            rows.append(header_item(f"    out of date · {why}: its painted slices ({_listed(painted)}) are not listed"))
    tracker, accepted = tracker_of(training_state, image.name), training_state.accepted_slices.get(image.name)
    if accepted and tracker is not None and layer_shape(tracker.layer) != layer_shape(image):
        why, slices = _misfit(tracker.layer, image), _listed(accepted)
        rows.append(header_item(f"    out of date · {why}: its accepted slices ({slices}) are left out of training"))
    return rows


def outdated_prediction_rows(viewer, volumes: list[tuple]) -> list[QListWidgetItem]:
    """A row without a slice to show for each volume whose prediction layer no longer fits it: no slices are picked
    from it (:func:`next_slice_picks`), and the row says why, as the Cohort tab's does."""
    rows = []
    for image, _ in volumes:
        if find_prediction_layer(viewer, image) is not None:  # one of them fits
            continue
        for layer in viewer.layers:
            if prediction_source(layer) == image.name:
                why = _misfit(layer, image)
                rows.append(header_item(f"out of date · {image.name} · {why}: Predict picks its next slices again"))
    return rows


def _misfit(layer, image) -> str:
    return f"{layer.name!r} is {layer_shape_text(layer)}, the image {layer_shape_text(image)} now"


def _listed(slices) -> str:
    return ", ".join(str(s) for s in sorted(slices))


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
