"""What Export writes beside each mask about where it came from (``<image name>_action.json``).

The record is taken on the GUI thread with the copy of the layer (:func:`~.export.plan_export`), so it
describes the mask as written: the image and its source file, the model that made the layer's last
prediction (kept on the layer when it was written: :data:`~napari_action._napari.prediction_writer.MODEL_KEY`),
the voxels the user corrected, the slices painted and accepted. What is not known is null. The keys
are documented in docs/usage.md ("Export refined masks…").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari.layers import Image

from napari_action import __version__
from napari_action._napari.files.snapshot import source_file
from napari_action._napari.layers import SOURCE_KEY, layer_array
from napari_action._napari.made_layers import is_duplicate
from napari_action._napari.prediction_writer import made_by
from napari_action._napari.refine.accepted import painted_slices
from napari_action.io.provenance import local_timestamp
from napari_action.io.session_store import HashCache


def provenance_record(viewer, training_state, layer, mask: Path, hashes: HashCache | None = None) -> dict[str, Any]:
    """The sidecar's record for the prediction ``layer`` exported to ``mask``.

    ``training_state``: the widget's (its edit trackers, training plan and accepted slices); ``hashes``:
    the source files hashed already (by a session save), whose hash goes in without reading the file again.
    """
    image_name = layer.metadata.get(SOURCE_KEY) or layer.name
    # None when it was closed, or a layer of another kind has its name now.
    image = next((found for found in viewer.layers if found.name == image_name and isinstance(found, Image)), None)
    tracker = _tracker(training_state, layer)
    axis = None if tracker is None else int(tracker.axis)
    return {
        "napari_action": __version__,
        "exported": local_timestamp(),
        "mask": mask.name,
        "image": _image_record(image_name, image, hashes),
        "model": made_by(layer),
        "edited_voxels": None if tracker is None else _count_locked(tracker),
        "slice_axis": axis,
        "painted_slices": None if axis is None else _painted(training_state, image, axis),
        "accepted_slices": _accepted(training_state, layer, image_name),
    }


def _accepted(training_state, layer, image_name: str) -> list[int] | None:
    """The slices accepted in the image's prediction layer; None for the user's copy of it (napari's Duplicate Layer):
    which of them it still holds as accepted, or held at all when copied, is not known."""
    if is_duplicate(layer):
        return None
    return sorted(int(s) for s in training_state.accepted_slices.get(image_name, ()))


def _image_record(name: str, image, hashes: HashCache | None) -> dict[str, Any]:
    """The image's layer name, and its source file with the file's SHA-256 when both are known."""
    path = None if image is None else source_file(image)
    known = None if path is None or hashes is None else hashes.known(path)
    return {"layer": name, "file": path, "sha256": known}


def _tracker(training_state, layer):
    """The edit tracker of ``layer`` (None for a layer no prediction was written into, e.g. a duplicate)."""
    tracker = training_state.trackers.get(id(layer))
    return tracker if tracker is not None and tracker.layer is layer else None


def _count_locked(tracker) -> int:
    """Voxels the predictions leave alone: painted over by the user (undone strokes excluded), or accepted."""
    return 0 if tracker.locked is None else int(tracker.locked.sum())


def _painted(training_state, image, axis: int) -> list[int] | None:
    """Slices along ``axis`` painted in the image's training labels; None if it is no image of the training."""
    plan = training_state.plan
    if plan is None or image is None:
        return None
    index = plan.index_of(image)
    if index is None:
        return None
    painted = plan.labels[index] if index < len(plan.labels) else None
    return [] if painted is None else painted_slices(layer_array(painted), axis)
