"""Viewer layers to a :class:`~napari_action.io.session_store.Session` and back.

Saving is split by thread. :func:`take_snapshot` runs on the GUI thread and
copies what the user can change (painted labels, prediction layers, their
locked masks, images without a source file held in memory) plus the model's weights;
:func:`write_snapshot` runs in a worker and does the slow part (source file
hashes, reading zarr or dask images without a source file, checkpoint
serialisation, the zarr store).

Opening is split the same way: :func:`read_session` (worker) reads the store,
re-reads source images and rebuilds the model; :func:`apply_session` (GUI
thread) adds the layers.

Per volume, ``SessionVolume.meta`` holds ``{"geometry": <VolumeMeta dict or
None>, "layers": {"image" | "painted" | "prediction": record}}``; a record keeps
a layer's name, napari transform, display settings and position in the layer
list, which the core session format has no slot for. ``Session.config`` is a
plain :meth:`TrainConfig.to_dict` (the seed included).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_action._napari.layers import (
    GEOMETRY_KEY,
    SOURCE_KEY,
    class_names_of,
    find_prediction_layer,
    image_layers,
    is_prediction_layer,
    label_features,
    labels_layers,
    layer_array,
    layer_image_data,
    layer_shape,
    pair_labels_to_images,
    snapshot_labels,
)
from napari_action._napari.made_layers import mark_made
from napari_action._napari.prediction_writer import MODEL_KEY
from napari_action._napari.reader import read_store
from napari_action._napari.refine.accepted import pin_slices
from napari_action._napari.view_plane import training_order
from napari_action.data.normalized_volume import is_array_like
from napari_action.inference.loaded_model import model_from_checkpoint, with_references
from napari_action.io.errors import describe_error
from napari_action.io.nifti import VolumeError, load_volume
from napari_action.io.session_store import (
    HashCache,
    Session,
    SessionVolume,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    content_sha256,
    load_session,
    save_session,
    session_content,
    source_changed,
)
from napari_action.io.volume_source import napari_action_store_attrs

try:
    from napari.layers._source import layer_source  # private in napari 0.9: guarded
except ImportError:  # a napari without it: restored images forget their file (the next save copies them)
    layer_source = None

logger = logging.getLogger(__name__)

_TRANSFORM = ("scale", "translate", "rotate", "shear")


# -- saving ------------------------------------------------------------------------
@dataclass
class Snapshot:
    """A copy of everything a session stores, taken on the GUI thread."""

    session: Session
    checkpoint: Any = None  # a Checkpoint; serialised in the worker
    left_out: list[str] = field(default_factory=list)


def _transform(layer) -> dict[str, Any]:
    transform = {name: np.asarray(getattr(layer, name)).tolist() for name in _TRANSFORM}
    transform["affine"] = layer.affine.affine_matrix.tolist()
    if hasattr(layer, "units"):  # napari >= 0.6
        transform["units"] = [str(unit) for unit in layer.units]
        transform["axis_labels"] = list(layer.axis_labels)
    return transform


def _record(layer, index: int) -> dict[str, Any]:
    display = {"opacity": float(layer.opacity), "visible": bool(layer.visible), "blending": str(layer.blending)}
    if hasattr(layer, "contrast_limits"):
        display["contrast_limits"] = [float(v) for v in layer.contrast_limits]
        display["colormap"] = layer.colormap.name
    return {
        "name": layer.name,
        "index": index,
        "transform": _transform(layer),
        "display": display,
        "geometry": layer.metadata.get(GEOMETRY_KEY),
        # The model that made a prediction layer's last prediction: Export's provenance after the session reopens.
        "made_by": layer.metadata.get(MODEL_KEY),
    }


def painted_pairs(viewer, picked: list[tuple[Any, str | None]]) -> tuple[dict[str, Any], list[str]]:
    """The painted layer of each image: the widget's pairing first, then the best guess.

    Returns
    -------
    pairs : dict
        Image name -> its painted Labels layer (one per image).
    left_out : list of str
        Labels layers that fit no image or whose image already has one.
    """
    chosen = list(picked)
    known = {layer.name for layer, _ in chosen}
    others = [layer for layer in labels_layers(viewer) if layer.name not in known]
    guessed = pair_labels_to_images(others, image_layers(viewer))
    chosen += [(layer, guessed.get(layer.name)) for layer in others]
    pairs, left_out = {}, []
    for layer, image_name in chosen:
        if image_name is None or image_name in pairs:
            left_out.append(layer.name)
        else:
            pairs[image_name] = layer
    return pairs, left_out


def source_file(layer) -> str | None:
    """The file (or napari-action zarr store) a layer was read from, if it still exists, as an absolute path.

    napari records the path as it was given (``napari scan.nii.gz`` keeps it relative to the
    folder napari was started in); a session opened from another folder must still find it.
    """
    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        return None
    if Path(path).is_file() or napari_action_store_attrs(path) is not None:
        return os.path.abspath(path)
    return None


def _image_voxels(layer):
    """What a session stores of an image without a source file: a copy of an array in memory (a script
    may change it later), a zarr or dask array as it is, read by the worker that writes the session
    (read on the GUI thread, a scan larger than memory would freeze napari)."""
    data = layer_image_data(layer)
    return data if is_array_like(data) else np.array(data, copy=True)


def _volume(viewer, image, painted, training_state) -> SessionVolume:
    order = list(viewer.layers)
    layers = {"image": _record(image, order.index(image))}
    source = source_file(image)
    volume = SessionVolume(
        name=image.name,
        shape=layer_shape(image),
        source_path=source,
        image=None if source else _image_voxels(image),
        accepted_slices=sorted(int(s) for s in training_state.accepted_slices.get(image.name, ())),
    )
    if painted is not None:
        volume.painted = snapshot_labels(painted)
        layers["painted"] = _record(painted, order.index(painted))
    prediction = find_prediction_layer(viewer, image)
    if prediction is not None:
        volume.prediction = snapshot_labels(prediction)
        layers["prediction"] = _record(prediction, order.index(prediction))
        tracker = training_state.trackers.get(id(prediction))
        if tracker is not None and tracker.layer is prediction and tracker.locked is not None:
            volume.edited = tracker.locked.copy()
    volume.meta = {"geometry": image.metadata.get(GEOMETRY_KEY), "layers": layers}
    return volume


def take_snapshot(viewer, training_state, picked=(), config=None, references=()) -> Snapshot:
    """Copy the viewer's volumes and the session's model (GUI thread).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Every 3D image layer is saved, with its painted and prediction layers.
    training_state : TrainingState
        Model, edit trackers and accepted slices.
    picked : list of (Labels layer, image name or None)
        The widget's pairing of painted layers with images.
    config : TrainConfig, optional
        Stored when there is no model (the model's own config wins).
    references : sequence of VoxelGeometry
        Geometry of the training volumes, recorded in the checkpoint.
    """
    pairs, left_out = painted_pairs(viewer, list(picked))
    volumes = [_volume(viewer, image, pairs.get(image.name), training_state) for image in image_layers(viewer)]
    left_out += unstored_predictions(viewer)
    training_state.name_classes()  # the checkpoint and the session carry the names painted so far
    model = training_state.lasting_model
    checkpoint = None if model is None else with_references(model.checkpoint(), references)
    class_names = dict(model.class_names) if model is not None else {}
    for layer in pairs.values():
        for value, name in (class_names_of(layer) or {}).items():
            class_names.setdefault(value, name)
    config = model.config if model is not None else config
    session = Session(
        volumes=volumes,
        class_names=class_names,
        config=None if config is None else config.to_dict(),
        axis=None if model is None else int(model.axis),
    )
    return Snapshot(session, checkpoint, left_out)


def unstored_predictions(viewer) -> list[str]:
    """The prediction layers a session has no place for: a session keeps one per open image, and a closed scan's
    (``<scan> (closed) ACTION``, its corrections kept) or a second one of an image (napari's Duplicate Layer) went
    missing from it without a word."""
    stored = {id(find_prediction_layer(viewer, image)) for image in image_layers(viewer)}
    return [layer.name for layer in viewer.layers if is_prediction_layer(layer) and id(layer) not in stored]


def has_content(viewer, training_state) -> bool:
    """True if a session of this viewer would hold anything worth keeping."""
    if training_state.lasting_model is not None or any(is_prediction_layer(layer) for layer in viewer.layers):
        return True
    return any(layer_array(layer).any() for layer in labels_layers(viewer))


def write_snapshot(
    path: str | Path, snapshot: Snapshot, hashes: HashCache | None = None, *, unless_unchanged: bool = False
) -> Path:
    """Hash the sources, serialise the model and write the store (worker thread). ``unless_unchanged``: a store
    at ``path`` that already holds this very work is left as it is (an autosave with nothing new: rewriting it
    cost a whole write a minute, and made it look newer than the session it copies)."""
    hashes = hashes or HashCache()
    session = snapshot.session
    for volume in session.volumes:
        if volume.source_path:
            volume.source_sha256 = hashes.sha256(volume.source_path)
        if volume.image is not None:
            volume.image = np.asarray(volume.image)  # a zarr or dask image is read here, off the GUI thread
    if snapshot.checkpoint is not None:
        session.checkpoint = checkpoint_to_bytes(snapshot.checkpoint)
    content = content_sha256(session)
    if unless_unchanged and session_content(path) == content:
        return Path(path)
    # save_session creates a missing folder itself, with a message that names an unwritable one.
    return save_session(path, session, content=content)


# -- opening -------------------------------------------------------------------------
@dataclass
class Restored:
    """A session read from disk, with its images and model, ready to become layers."""

    session: Session
    images: list[Any]  # numpy arrays; a zarr array for a store too large to read whole; None
    sources: list[str | None]
    model: Any = None
    warnings: list[str] = field(default_factory=list)


def _read_image(volume: SessionVolume, warnings: list[str]) -> tuple[Any, str | None]:
    """Voxels of a volume: its source file or zarr store if present, else the stored copy."""
    source = volume.source_path
    if source and Path(source).exists():
        if source_changed(volume):
            warnings.append(f"{source} changed since the session was saved; its labels may no longer fit it.")
        try:
            data = _read_source(source)
        except (VolumeError, OSError) as error:
            # A source damaged since the session was saved must not cost the user the session.
            warnings.append(f"{source} can no longer be read, so it was not reopened: {describe_error(error)}")
            return volume.image, None
        if tuple(data.shape) == tuple(volume.shape):
            return data, source
        warnings.append(f"{source} now has shape {tuple(data.shape)}, the session {volume.shape}; not reopened.")
    elif source:
        # Said with what is back and what to do: the file moved or renamed is the usual cause.
        warnings.append(
            f"{source} (image {volume.name!r}) was not found: its labels and prediction are restored without it. "
            "If the file was moved or renamed, open it from where it is now (File > Open) to train and predict "
            "on it again; the next save records its new place."
        )
    return volume.image, None


def _read_source(source: str):
    """A NIfTI file read whole; a zarr store as File > Open reads it (kept on disk when larger than memory)."""
    if Path(source).is_dir():
        data, _, _ = read_store(source)
        return data
    data, _ = load_volume(source, nan_policy="zero")
    return data


def read_session(path: str | Path) -> Restored:
    """Read a store, its source images and its model (worker thread)."""
    session = load_session(path)
    warnings: list[str] = []
    images, sources = [], []
    for volume in session.volumes:
        data, source = _read_image(volume, warnings)
        images.append(data)
        sources.append(source)
    model = None
    if session.checkpoint is not None:
        model = model_from_checkpoint(checkpoint_from_bytes(session.checkpoint, path), source=str(path))
    return Restored(session, images, sources, model, warnings)


def _kwargs(record: dict, metadata: dict) -> dict[str, Any]:
    transform = dict(record["transform"])
    display = {k: v for k, v in record.get("display", {}).items() if k != "colormap" or v}
    return {"name": record["name"], "metadata": metadata, **transform, **display}


def _layer_source(path: str | None):
    """Record the file a restored image came from (so the next save does not copy its voxels)."""
    if path is None or layer_source is None:
        return contextlib.nullcontext()
    return layer_source(path=path, reader_plugin="napari-action")


def _specs(restored: Restored, index: int) -> list[tuple[int, str, np.ndarray, dict, str | None]]:
    """(saved position, role, data, add_* kwargs, source file) of one volume's layers."""
    volume, data = restored.session.volumes[index], restored.images[index]
    records = (volume.meta or {}).get("layers", {})
    specs = []
    for role, array in (("image", data), ("painted", volume.painted), ("prediction", volume.prediction)):
        record = records.get(role)
        if record is None or array is None:
            continue
        metadata = {GEOMETRY_KEY: record["geometry"]} if record.get("geometry") else {}
        if role == "prediction":
            metadata[SOURCE_KEY] = volume.name
            metadata[MODEL_KEY] = record.get("made_by")  # None: a layer made by hand, or an older session
        source = restored.sources[index] if role == "image" else None
        specs.append((record["index"], role, array, _kwargs(record, metadata), source))
    return specs


def _add(viewer, role: str, data: np.ndarray, kwargs: dict, source: str | None, class_names: dict):
    if role != "image" and class_names:
        kwargs["features"] = label_features(sorted(set(class_names) | {0}), class_names)
    with _layer_source(source):
        return viewer.add_image(data, **kwargs) if role == "image" else viewer.add_labels(data, **kwargs)


def apply_session(viewer, training_state, restored: Restored, picker=None) -> list:
    """Add the restored layers in their saved order; lock edited voxels; install the model (GUI thread).

    ``picker`` (the widget's :class:`~napari_action._napari.picker.LayerPicker`) is told which image
    each restored painted layer belongs to: the session knows, and a guess by name can miss once
    napari has renamed a restored layer.

    Returns
    -------
    list
        The layers added (napari renames a layer whose name is taken).
    """
    session = restored.session
    specs = [(spec, i) for i in range(len(session.volumes)) for spec in _specs(restored, i)]
    added = {}
    for (_, role, data, kwargs, source), i in sorted(specs, key=lambda item: item[0][0]):
        added[i, role] = _add(viewer, role, data, kwargs, source, session.class_names)
    axis = 0 if session.axis is None else int(session.axis)
    for i, volume in enumerate(session.volumes):
        # The image may have been renamed ("vol [1]" beside a "vol" already open): its layers follow it.
        name = added[i, "image"].name if (i, "image") in added else volume.name
        if (i, "prediction") in added:
            added[i, "prediction"].metadata[SOURCE_KEY] = name
            mark_made(added[i, "prediction"])  # napari-action's as much as one Predict made: a copy of it is not
        if picker is not None and (i, "painted") in added and (i, "image") in added:
            picker.pair(added[i, "painted"].name, name)
        if volume.accepted_slices:
            training_state.accepted_slices[name] = set(volume.accepted_slices)
        if volume.edited is not None and (i, "prediction") in added:
            along = _stored_axis(restored.model, added.get((i, "image")), axis)
            tracker = training_state.tracker_for(added[i, "prediction"], along)
            restore_locks(tracker, volume.edited)
            pin_slices(tracker, volume.accepted_slices or ())  # no undo unlocks them
    if restored.model is not None:
        training_state.use_model(restored.model, restored.model.checkpoint())
    return list(added.values())


def _stored_axis(model, image, axis: int) -> int:
    """The array axis ``image``'s slices along the model's ``axis`` lie on as stored: another for a scan the model
    reads turned (stored in another voxel order than its training scans), whose prediction layer, edits and
    accepted slices run along it."""
    turn = None if image is None else training_order(model, image)
    return axis if turn is None else turn.stored_axes[axis]


def restore_locks(tracker, edited: np.ndarray) -> None:
    """Give an edit tracker a saved mask of user-edited voxels."""
    tracker.locked = np.array(edited, dtype=bool)
    other = tuple(d for d in range(tracker.locked.ndim) if d != tracker.axis)
    tracker.edited_slices = {int(s) for s in np.flatnonzero(tracker.locked.any(axis=other))}
