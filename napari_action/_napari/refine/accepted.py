"""Accepted slices: corrected prediction slices that become training data.

A user corrects a slice of an "<image> ACTION" prediction layer and accepts
it. The whole slice is then locked in the layer's
:class:`~napari_action._napari.layers.EditTracker` (streamed predictions never overwrite it again)
and its index is recorded in ``TrainingState.accepted_slices[image name]``.

The slice's *content* is not copied anywhere: the prediction layer, locked,
is its single source of truth. That keeps a later correction of an accepted
slice, a saved session (which stores the prediction layer, its locked voxels
and the accepted indices) and the training labels consistent without a
second copy of each volume. The training labels are built on demand by
:func:`merge_accepted`: the painted labels with the accepted slices written
over them. The user's painted layer is only written when they ask for it
(:func:`copy_slices`, undoable).

Indices are along the tracker's axis, the model's slicing axis (for a scan the trainer reads turned, the
stored axis that axis lies on).

Everything here runs on the GUI thread and owns no widget.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from napari_action._napari.layers import (
    SOURCE_KEY,
    EditTracker,
    axis_index,
    layer_array,
    layer_shape,
    prediction_source,
)
from napari_action._napari.view_plane import layer_volume_meta
from napari_action.training.volume_turns import VolumeTurns, model_order, painted_indices

logger = logging.getLogger(__name__)


def painted_slices(data: np.ndarray, axis: int) -> list[int]:
    """Slices along ``axis`` holding at least one non-zero voxel."""
    others = tuple(d for d in range(data.ndim) if d != axis)
    return [int(s) for s in np.flatnonzero(np.any(data, axis=others))]


def tracker_of(training_state, image_name: str) -> EditTracker | None:
    """The edit tracker of the prediction layer made for ``image_name`` (None: no such layer)."""
    for tracker in training_state.trackers.values():
        if prediction_source(tracker.layer) == image_name:
            return tracker
    return None


def tracker_for_layer(training_state, layer, fallback_axis: int) -> EditTracker:
    """The tracker of a prediction layer, made along the model's axis if it has none yet."""
    tracker = training_state.trackers.get(id(layer))
    if tracker is not None and tracker.layer is layer:
        return tracker
    axis = fallback_axis if training_state.trainer is None else training_state.trainer.axis
    return training_state.tracker_for(layer, axis)


def lock_slices(tracker: EditTracker, slices: Iterable[int]) -> None:
    """Lock whole slices against streamed writes (and count them as edited), for good: they are accepted.

    Undoing a correction of an accepted slice gives its voxels the prediction back, but they stay locked (pinned):
    the slice trains as it is shown, and no later prediction rewrites it behind the user's back.
    """
    shape = layer_shape(tracker.layer)
    # An open mesh (np.ix_ style) locks the slices without a full index array per voxel.
    axes = [np.arange(n) for n in shape]
    axes[tracker.axis] = np.asarray(sorted(slices), dtype=np.intp)
    if axes[tracker.axis].size:
        tracker.lock_indices(np.ix_(*axes))
        pin_slices(tracker, axes[tracker.axis])  # the list made above: ``slices`` may be a spent iterator


def pin_slices(tracker: EditTracker, slices: Iterable[int]) -> None:
    """Keep the locked voxels of accepted ``slices`` locked when a correction is undone (they lock nothing more)."""
    # Slice numbers, not a voxel mask: a mask of the volume cost 105 MB per corrected 512 x 512 x 400 CT.
    tracker.pinned.update(int(s) for s in slices)


def accept_slices(training_state, tracker: EditTracker, slices: Iterable[int]) -> list[int]:
    """Record ``slices`` of the tracker's layer as accepted and lock them.

    Returns
    -------
    list of int
        The slices newly accepted (in range and not accepted before), sorted.
    """
    name = tracker.layer.metadata.get(SOURCE_KEY, tracker.layer.name)
    n_slices = layer_shape(tracker.layer)[tracker.axis]
    accepted = training_state.accepted_slices.setdefault(name, set())
    new = sorted({int(s) for s in slices if 0 <= int(s) < n_slices} - accepted)
    lock_slices(tracker, new)
    accepted.update(new)
    logger.info("accepted slice(s) %s of %r along axis %d", new, name, tracker.axis)
    return new


def copy_slices(source, target, axis: int, slices: Iterable[int]) -> int:
    """Write ``slices`` of the ``source`` layer into the ``target`` Labels layer, undoably.

    One ``data_setitem`` call: one undo step and one paint event, so the
    user can undo the copy and a running training sees it.

    Returns
    -------
    int
        Number of voxels written.
    """
    slices = sorted(slices)
    if not slices or layer_shape(source) != layer_shape(target):
        return 0
    mask = np.zeros(layer_shape(source), dtype=bool)
    mask[axis_index(axis, slices)] = True
    indices = np.nonzero(mask)
    values = layer_array(source)[indices]
    before = np.count_nonzero(layer_array(target)[indices] != values)
    target.data_setitem(indices, values)
    return int(before)


@dataclass
class TrainingLabels:
    """Labels a trainer learns from: painted labels with the accepted slices over them.

    Attributes
    ----------
    labels : list
        One array (or None) per training volume, private copies.
    labeled_slices : dict
        Volume index -> accepted slices, passed as explicitly labeled slices
        so an accepted slice holding only background still counts.
    axis : int or None
        Axis of the accepted slices used (None: none were used).
    skipped : list of str
        Images whose accepted slices lay along another axis than asked for (dropped).
    warnings : list of str
        What the user should be told (the dropped slices).
    """

    labels: list = field(default_factory=list)
    labeled_slices: dict[int, tuple[int, ...]] = field(default_factory=dict)
    axis: int | None = None
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def any(self) -> bool:
        """True if anything is labeled."""
        return bool(self.labeled_slices) or any(lab is not None and lab.any() for lab in self.labels)


def _with_slices(base: np.ndarray | None, tracker: EditTracker, slices: list[int]) -> np.ndarray:
    """A copy of ``base`` (zeros if None) with ``slices`` taken from the prediction layer."""
    data = layer_array(tracker.layer)
    dtype = data.dtype if base is None else np.result_type(base.dtype, data.dtype)
    out = np.zeros(data.shape, dtype) if base is None else np.array(base, dtype=dtype)
    index = axis_index(tracker.axis, slices)
    out[index] = data[index]
    return out


def merge_accepted(training_state, plan, painted: list | None = None, axis: int | None = None) -> TrainingLabels:
    """The training labels of ``plan``: painted snapshots merged with the accepted slices.

    Parameters
    ----------
    training_state : TrainingState
        Holds the accepted slices and the prediction layers' trackers.
    plan : TrainingPlan
        Volumes in trainer order.
    painted : list, optional
        Snapshots of the painted labels (default: taken now).
    axis : int, optional
        The trainer's slicing axis; accepted slices along another axis are
        dropped from the training state (the result's warnings name the images).
        None: the axis of the first accepted slices. Compared, like the result's ``axis``, in the voxel order
        the trainer reads the volumes in: a scan stored turned has its slices along another stored axis.
    """
    labels = list(plan.label_snapshots() if painted is None else painted)
    labels += [None] * (len(plan.images) - len(labels))
    result = TrainingLabels(labels=labels)
    found, misfits = _accepted(training_state, plan)
    result.warnings += misfits
    turns = _turns(training_state, plan, labels, found)
    for v, (tracker, slices) in found.items():
        # A scan the trainer reads turned has its slices along the stored axis the training axis lies on.
        along = tracker.axis if turns.turns[v] is None else turns.turns[v].stored_axes.index(tracker.axis)
        wanted = axis if axis is not None else result.axis
        if wanted is not None and along != wanted:
            # Indices along the old axis would name other slices along the new one: drop them.
            training_state.accepted_slices.pop(plan.images[v].name, None)
            result.skipped.append(plan.images[v].name)
            continue
        labels[v] = _with_slices(labels[v], tracker, slices)
        result.labeled_slices[v] = tuple(slices)
        result.axis = along
    if result.skipped:
        result.warnings.append(
            f"the slices accepted in {', '.join(map(repr, result.skipped))} lie along "
            f"another axis than training ({axis}); they are dropped."
        )
    return result


def _accepted(training_state, plan) -> tuple[dict[int, tuple[EditTracker, list[int]]], list[str]]:
    """Volume index -> the tracker of its prediction layer and its accepted slices, for the volumes with some;
    and a warning for each image whose prediction layer no longer fits it (its data replaced since)."""
    found, misfits = {}, []
    for v, image in enumerate(plan.images):
        tracker = tracker_of(training_state, image.name)
        accepted = training_state.accepted_slices.get(image.name, ())
        if tracker is None:
            continue
        if layer_shape(tracker.layer) != layer_shape(image):
            if accepted:
                misfits.append(_misfit_warning(image, tracker.layer, accepted))
            continue
        n_slices = layer_shape(image)[tracker.axis]
        slices = sorted(s for s in accepted if 0 <= s < n_slices)
        if slices:
            found[v] = (tracker, slices)
    return found, misfits


def _misfit_warning(image, layer, accepted) -> str:
    """Why the slices accepted in ``layer`` cannot train on ``image`` (given data of another shape since)."""
    return (
        f"the slices accepted in {image.name!r} ({', '.join(map(str, sorted(accepted)))}) are left out: "
        f"{layer.name!r} is {layer_shape(layer)} and the image is {layer_shape(image)} now. They stay in the layer; "
        "accept slices of a new prediction (Predict) to train on them."
    )


def _turns(training_state, plan, labels: list, accepted: dict) -> VolumeTurns:
    """How the trainer reads each volume of ``plan``: the running one's own turns where it trains this plan,
    else those a new trainer will decide (the volumes with accepted slices count as painted)."""
    trainer = training_state.trainer
    if plan is training_state.plan and isinstance(getattr(trainer, "turns", None), VolumeTurns):
        return trainer.turns
    affines = [layer_volume_meta(image).affine for image in plan.images]
    shapes = [layer_shape(image) for image in plan.images]
    painted = painted_indices(labels, {v: slices for v, (_, slices) in accepted.items()})
    return VolumeTurns.decide(affines, labels, painted, shapes, model_order(training_state.init_checkpoint))


# -- the viewer's position ---------------------------------------------------------------
def current_slice(viewer, layer, axis: int) -> int:
    """Index along ``axis`` of ``layer``'s data of the slice the viewer shows."""
    position = layer.world_to_data(viewer.dims.point)
    return int(round(float(position[axis])))


def go_to_slice(viewer, layer, axis: int, index: int) -> bool:
    """Show slice ``index`` (along data ``axis`` of ``layer``) in the viewer; True if a 3D view went to 2D for it.

    The world position of the slice is set through ``dims.set_point`` rather
    than a step index, so layers with any scale or origin land on the right
    slice. If the viewer displays that axis, it is made the sliced axis. A 3D
    view shows no single slice (a click in a list only moved a slider the user
    could not see), so it goes to 2D; :func:`show_listed_slice` says so.
    """
    dims = viewer.dims
    switched = dims.ndisplay != 2
    if switched:
        dims.ndisplay = 2
    world_axis = axis + dims.ndim - layer.ndim
    point = np.asarray(layer.world_to_data(dims.point), dtype=float)
    point[axis] = index
    world = np.asarray(layer.data_to_world(point), dtype=float)
    if world_axis in dims.displayed:
        dims.order = (world_axis, *[a for a in dims.order if a != world_axis])
    dims.set_point(world_axis, float(world[axis]))
    return switched


def show_listed_slice(viewer, target: tuple[str, int, int] | None, *, select: bool = False) -> str | None:
    """Show the slice of a list row (its ``(image name, axis, index)``), selecting the image's layer with ``select``.

    Returns what the status line should say: that a 3D view went to 2D for it, or that the slice is gone (the image
    given data of another shape since the row was listed); None otherwise (also for a header row, or an image
    closed since).
    """
    if target is None or target[0] not in viewer.layers:
        return None
    name, axis, index = target
    layer = viewer.layers[name]
    n_slices = layer_shape(layer)[axis]
    if not 0 <= index < n_slices:  # a row listed before the image was given data of another shape
        return f"Slice {index} of {name!r} is no longer there: {name!r} has {n_slices} slices along axis {axis} now."
    if select:
        viewer.layers.selection.active = layer
    if not go_to_slice(viewer, layer, axis, index):
        return None
    return (
        f"Switched to 2D to show slice {index} of {name!r} along axis {axis}: the 3D view shows no single slice "
        "(napari's 2D/3D button goes back)."
    )
