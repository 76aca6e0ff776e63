"""napari layers <-> numpy arrays for the ACTION widget.

Everything here runs on the GUI thread. The helpers pick the layers a user can
train on, snapshot painted labels into private copies (training never touches
the user's layer), create the "<image> ACTION" prediction layers on the
image's own grid, and write streamed predictions into them without ever
overwriting a voxel the user corrected.

Edit tracking
-------------
:class:`EditTracker` listens to ``Labels.events.paint``, which napari emits
once per committed stroke (and per ``data_setitem`` call) with the history
atoms of that change. Since napari 0.8 paint, fill and polygon strokes give
mask + bounding-box atoms while ``data_setitem`` still gives
``(indices, old_values, new_values)`` tuples, so both forms are decoded. We
chose atoms over diffing the layer against the last data we wrote because a
diff needs a second full copy of every prediction volume and a full-volume
comparison per stroke, whereas atoms cost only the edited bounding box.
Streamed writes go straight into ``layer.data`` (not ``data_setitem``), so they
emit no paint event and never add to the user's undo history. ``undo`` and
``redo`` emit no paint event either: the tracker tells them from other refreshes by
the history's lengths, gives an undone correction's voxels back to the stream and
locks a redone one again (:mod:`napari_action._napari.undone_edits`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels

from napari_action._napari.made_layers import is_duplicate, mark_made
from napari_action._napari.undone_edits import history_lengths, history_move, last_redone_atoms, undone_voxels
from napari_action._napari.writer import layer_world_affine
from napari_action.data.normalized_volume import is_array_like
from napari_action.io.geometry import same_voxel_grid
from napari_action.progress import SlicePrediction

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)

#: Suffix of the prediction layer made for an image layer.
PREDICTION_SUFFIX = " ACTION"
#: Metadata key holding the io geometry dict (kept on prediction layers for export).
GEOMETRY_KEY = "napari_action"
#: Metadata key marking a prediction layer; its value is the source image's name.
SOURCE_KEY = "napari_action_source"
#: Metadata key marking an uncertainty layer (derived, never trained on); value: the image's name.
UNCERTAINTY_KEY = "napari_action_uncertainty"


# -- picking layers -----------------------------------------------------------
def layer_shape(layer) -> tuple[int, ...]:
    """Shape of the full-resolution data of ``layer`` (multiscale: level 0)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return tuple(int(n) for n in data.shape)


def layer_shape_text(layer) -> str:
    """The shape of ``layer`` as lists and messages show it, e.g. ``64×128×128``."""
    return "×".join(str(n) for n in layer_shape(layer))


def axis_index(axis: int, slices: int | slice | list[int], ndim: int = 3) -> tuple:
    """Index selecting ``slices`` along ``axis`` of an ``ndim`` array, every voxel of the other axes.

    Parameters
    ----------
    axis : int
        The axis ``slices`` are taken along.
    slices : int, slice or list of int
        One slice, a run of slices (``slice(start, stop)``) or several slices.
    ndim : int
        Number of axes of the indexed array.
    """
    index: list = [slice(None)] * ndim
    index[axis] = slices
    return tuple(index)


def layer_array(layer) -> np.ndarray:
    """The full-resolution data of ``layer`` as a numpy array (no copy if possible)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def layer_image_data(layer):
    """What training reads from an image layer: zarr or dask data as is (read a slice at a time), else a numpy array.

    A layer backed by zarr or dask may be larger than memory; the trainer normalises its crops on
    demand (:class:`~napari_action.data.normalized_volume.NormalizedVolume`), so it is never loaded whole.
    """
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return data if is_array_like(data) else np.asarray(data)


def is_prediction_layer(layer) -> bool:
    """True for the "<image> ACTION" layers this plugin writes to (known by their metadata, not their name)."""
    return SOURCE_KEY in getattr(layer, "metadata", {})


def prediction_source(layer) -> str | None:
    """Name of the image a prediction layer was made for (None: not a prediction layer)."""
    return getattr(layer, "metadata", {}).get(SOURCE_KEY)


def image_layers(viewer: napari.viewer.Viewer) -> list[Image]:
    """3D single-channel Image layers, in layer-list order (our uncertainty layers excluded)."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image)
        and not layer.rgb
        and len(layer_shape(layer)) == 3
        and UNCERTAINTY_KEY not in layer.metadata
    ]


def labels_layers(viewer: napari.viewer.Viewer) -> list[Labels]:
    """3D Labels layers the user paints in (prediction layers excluded)."""
    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and len(layer_shape(layer)) == 3 and not is_prediction_layer(layer)
    ]


def _common_prefix(a: str, b: str) -> int:
    count = 0
    for x, y in zip(a.lower(), b.lower(), strict=False):
        if x != y:
            break
        count += 1
    return count


#: napari's mark of a duplicate layer name: "vol [1]" for a second "vol".
_DUPLICATE_MARK = re.compile(r"^(.*?)( \[\d+\])?$", re.DOTALL)


def _names_image(labels_name: str, image_name: str) -> tuple[bool, bool]:
    """Whether a labels layer's name starts with the whole image name, and carries the same duplicate mark.

    "vol labels" names "vol", not "vol 2" (with which it shares the longer prefix "vol "); "ct labels [1]",
    from a file or sample opened twice, names "ct [1]" before "ct".
    """
    labels_base, labels_mark = _DUPLICATE_MARK.match(labels_name.lower()).groups()
    image_base, image_mark = _DUPLICATE_MARK.match(image_name.lower()).groups()
    named = labels_base.startswith(image_base)
    return named, named and labels_mark == image_mark


def pair_labels_to_images(labels: Iterable, images: Iterable) -> dict[str, str | None]:
    """Guess which image each labels layer was painted on.

    Only images of the same shape qualify. Among those an image the layer lies
    over in the viewer (the same voxel grid in world coordinates: a labels file
    saved with its image's header, a layer made while the image was selected)
    wins, then an image whose whole name begins the layer's ("ct" for "ct labels",
    not "ct 2"; napari's duplicate mark " [1]" alike), then the image sharing the
    longest name prefix, then an image no other labels layer claimed yet, then the first one.

    Returns
    -------
    dict
        Labels layer name -> image layer name, or ``None`` where no image fits.
    """
    images = list(images)
    taken: set[str] = set()
    pairs: dict[str, str | None] = {}
    for lab in labels:
        same = [img for img in images if layer_shape(img) == layer_shape(lab)]
        if not same:
            pairs[lab.name] = None
            continue
        where = layer_world_affine(lab)
        best = max(
            same,
            key=lambda img: (
                same_voxel_grid(where, layer_world_affine(img)),
                _names_image(lab.name, img.name),
                _common_prefix(img.name, lab.name),
                img.name not in taken,
            ),
        )
        pairs[lab.name] = best.name
        taken.add(best.name)
    return pairs


# -- snapshots and class names -------------------------------------------------
def snapshot_labels(layer: Labels) -> np.ndarray:
    """A private copy of the painted labels (call on the GUI thread, between strokes)."""
    return np.array(layer_array(layer), copy=True)


def class_names_of(layer: Labels) -> dict[int, str] | None:
    """Label value -> name from a Labels layer's features table, if it has a name column.

    napari shows the features of the label under the cursor in the status bar
    and tooltip; a ``name`` (or ``class``) column with an ``index`` column (or
    row order = label value) is the convention readers use.
    """
    features = layer.features
    column = next((c for c in ("name", "class", "label_name") if c in features), None)
    if column is None or len(features) == 0:
        return None
    values = features["index"] if "index" in features else range(len(features))
    return {int(v): str(n) for v, n in zip(values, features[column], strict=False)}


def label_features(class_values: Iterable[int], class_names: Mapping[int, str] | None) -> dict:
    """Features table giving every class value a name (unnamed values get their number)."""
    values = [int(v) for v in class_values]
    names = dict(class_names or {})
    names.setdefault(0, "background")
    return {"index": np.asarray(values), "name": np.asarray([names.get(v, str(v)) for v in values])}


# -- prediction layers ------------------------------------------------------------
def prediction_name(image: Image) -> str:
    """Name of the prediction layer of ``image``."""
    return f"{image.name}{PREDICTION_SUFFIX}"


def geometry_kwargs(image: Image) -> dict:
    """Everything that places ``image`` in world space, so the prediction overlays it."""
    kwargs = {
        "scale": image.scale,
        "translate": image.translate,
        "rotate": image.rotate,
        "shear": image.shear,
        "affine": image.affine,
    }
    # units / axis_labels exist on napari >= 0.6 layers only.
    for name in ("units", "axis_labels"):
        if hasattr(image, name):
            kwargs[name] = getattr(image, name)
    return kwargs


def find_prediction_layer(viewer: napari.viewer.Viewer, image: Image) -> Labels | None:
    """The prediction layer made for ``image`` (by recorded source, same shape), if any.

    The user may rename it; a layer the user called "<image> ACTION" is not one, nor the user's copy of it.
    """
    for layer in viewer.layers:
        if (
            prediction_source(layer) == image.name
            and layer_shape(layer) == layer_shape(image)
            and not is_duplicate(layer)
        ):
            return layer
    return None


def colours_of_every_label(colormap):
    """A copy of a Labels layer's colormap that draws every label.

    napari keeps "show selected label" in the colormap itself (``use_selection``): a copy of it, or
    the colours it maps to, would leave every other label transparent.
    """
    # napari 0.7 made its models pydantic 2 models (model_copy); 0.5 and 0.6 have pydantic 1's copy.
    copy = getattr(colormap, "model_copy", None) or colormap.copy
    colours = copy(deep=True)
    colours.use_selection = False
    return colours


def prediction_layer_for(
    viewer: napari.viewer.Viewer,
    image: Image,
    class_names: Mapping[int, str] | None = None,
    *,
    class_values: Iterable[int] | None = None,
    colormap=None,
    dtype=np.uint8,
) -> Labels:
    """Create, or reuse, the editable "<image> ACTION" Labels layer of ``image``.

    The new layer copies the image's scale/translate/rotate/shear/affine (so it
    overlays the image in world coordinates) and its io geometry metadata (so
    the writer exports it with the source header). It does not take the
    selection away from the layer the user is working on.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Viewer holding ``image``.
    image : napari.layers.Image
        The source 3D image.
    class_names : mapping of int to str, optional
        Names of label values, shown in the status bar and tooltip.
    class_values : iterable of int, optional
        Label values predicted; needed to name them.
    colormap : optional
        Label colormap, e.g. that of the painted labels, so classes keep their colours.
    dtype : numpy dtype
        Data type of a newly created layer.
    """
    layer = find_prediction_layer(viewer, image)
    if layer is None:
        metadata = {SOURCE_KEY: image.name}
        if GEOMETRY_KEY in image.metadata:
            metadata[GEOMETRY_KEY] = image.metadata[GEOMETRY_KEY]
        active = viewer.layers.selection.active
        layer = viewer.add_labels(
            np.zeros(layer_shape(image), dtype=dtype),
            name=prediction_name(image),
            metadata=metadata,
            opacity=0.5,
            **geometry_kwargs(image),
        )
        mark_made(layer)
        if active is not None:
            viewer.layers.selection.active = active
    if colormap is not None:
        layer.colormap = colormap
    if class_values is not None:
        layer.features = label_features(class_values, class_names)
    return layer


# -- writing predictions -------------------------------------------------------------
def is_mid_stroke(layer: Labels) -> bool:
    """True while the user drags a brush in ``layer`` (the stroke is not committed yet).

    A streamed write during a stroke could overwrite voxels that only get
    locked when the stroke commits, so writers wait until it ends. napari has
    no public flag for this; ``_block_history`` is set for the stroke's span.
    """
    return bool(getattr(layer, "_block_history", False))


def _ensure_fits(layer: Labels, values: np.ndarray) -> None:
    """Widen the layer's dtype if a (new) label value would not fit."""
    info = np.iinfo(layer.data.dtype)
    if values.size and (values.max() > info.max or values.min() < info.min):
        layer.data = layer.data.astype(np.int32)


def write_slices(
    layer: Labels, prediction: SlicePrediction, locked_mask: np.ndarray | None = None, *, refresh: bool = True
) -> int:
    """Write predicted slices into ``layer`` except where ``locked_mask`` is True.

    The write goes straight into the numpy data (no undo history: streamed
    predictions are not user edits) and only voxels that change are touched.

    Returns
    -------
    int
        Number of voxels whose value changed.
    """
    region = axis_index(prediction.axis, slice(prediction.start, prediction.stop), layer.ndim)
    new = np.moveaxis(prediction.labels, 0, prediction.axis)
    _ensure_fits(layer, new)
    current = layer.data[region]
    if current.shape != new.shape:
        raise ValueError(f"Prediction of shape {new.shape} does not fit {layer.name!r} at {region}.")
    changed = current != new
    if locked_mask is not None:
        changed &= ~locked_mask[region]
    count = int(np.count_nonzero(changed))
    if count:
        np.copyto(current, new, where=changed, casting="unsafe")
        if refresh:
            layer.refresh()
    return count


# -- edit tracking ---------------------------------------------------------------------
class EditTracker:
    """Voxels the user edited in a prediction layer: locked against streamed writes.

    Parameters
    ----------
    layer : napari.layers.Labels
        The prediction layer to watch (connected on construction).
    axis : int
        Slicing axis used to report :attr:`edited_slices`.
    """

    def __init__(self, layer: Labels, axis: int = 0):
        self.layer = layer
        self.axis = int(axis)
        self.locked: np.ndarray | None = None  # allocated on the first edit only
        self.pinned: set[int] = set()  # accepted slices: their locked voxels stay locked, whatever is undone
        self.edited_slices: set[int] = set()
        # Slices written by a stream at least once: agreement is measured on those.
        self.streamed: np.ndarray = np.zeros(layer_shape(layer)[self.axis], dtype=bool)
        self._history = history_lengths(layer)
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_refresh)

    def disconnect(self) -> None:
        """Stop listening to the layer."""
        self.layer.events.paint.disconnect(self._on_paint)
        self.layer.events.set_data.disconnect(self._on_refresh)

    def set_axis(self, axis: int) -> None:
        """Re-express edited and streamed slices along a new training axis."""
        if int(axis) == self.axis:
            return
        self.axis = int(axis)
        self.streamed = np.zeros(layer_shape(self.layer)[self.axis], dtype=bool)
        self.edited_slices = set()
        if self.locked is not None:
            other = tuple(d for d in range(self.locked.ndim) if d != self.axis)
            self.edited_slices = {int(s) for s in np.flatnonzero(self.locked.any(axis=other))}

    def write(self, prediction: SlicePrediction, *, refresh: bool = True) -> tuple[int, int]:
        """Write a prediction around the locked voxels and measure its agreement.

        Returns
        -------
        changed, compared : int
            Over the slices this layer had already received from a stream:
            unlocked voxels whose value changed, and unlocked voxels compared.
            Both are 0 for slices streamed for the first time.
        """
        self.set_axis(prediction.axis)
        seen = self.streamed[prediction.start : prediction.stop].copy()
        changed = compared = 0
        if seen.any():
            region = axis_index(self.axis, slice(prediction.start, prediction.stop), self.layer.ndim)
            old = np.moveaxis(self.layer.data[region], self.axis, 0)[seen]
            differs = old != prediction.labels[seen]
            if self.locked is not None:
                free = ~np.moveaxis(self.locked[region], self.axis, 0)[seen]
                differs &= free
                compared = int(np.count_nonzero(free))
            else:
                compared = int(old.size)
            changed = int(np.count_nonzero(differs))
        write_slices(self.layer, prediction, self.locked, refresh=refresh)
        self.streamed[prediction.start : prediction.stop] = True
        return changed, compared

    def _mask(self) -> np.ndarray:
        if self.locked is None:
            self.locked = np.zeros(layer_shape(self.layer), dtype=bool)
        return self.locked

    def _on_paint(self, event) -> None:
        self._history = history_lengths(self.layer)  # napari saved the stroke before emitting the event
        for atom in event.value:
            self.record_atom(atom)

    def _on_refresh(self, event=None) -> None:
        # An undo or redo refreshes the layer (as moving the slider does); only they move the history.
        lengths = history_lengths(self.layer)
        move, self._history = history_move(self._history, lengths), lengths
        if move == "redo":
            for atom in last_redone_atoms(self.layer):
                self.record_atom(atom)
        elif move == "undo" and self.locked is not None:
            undone = undone_voxels(self.layer, self.locked.shape)
            if self.pinned:
                undone[axis_index(self.axis, sorted(self.pinned), undone.ndim)] = False
            self.locked &= ~undone
            other = tuple(d for d in range(self.locked.ndim) if d != self.axis)
            self.edited_slices = {int(s) for s in np.flatnonzero(self.locked.any(axis=other))}

    def record_atom(self, atom) -> None:
        """Lock the voxels of one history atom (mask + bbox, or indices tuple)."""
        if hasattr(atom, "slice_key"):
            self._record_masked(atom.slice_key, atom.mask)
        else:
            indices = atom[0]
            self.lock_indices(tuple(np.asarray(i) for i in indices))

    def _record_masked(self, slice_key: tuple, mask: np.ndarray | None) -> None:
        # The mask spans the bounding box in every dimension; None = whole box changed.
        region = self._mask()[slice_key]
        if mask is None:
            region[...] = True
            hit = np.ones(region.shape[self.axis], dtype=bool)
        else:
            region[mask] = True
            other = tuple(d for d in range(region.ndim) if d != self.axis)
            hit = mask.any(axis=other)
        first = slice_key[self.axis].start or 0
        self.edited_slices.update(int(first + s) for s in np.flatnonzero(hit))

    def lock_indices(self, indices: tuple[np.ndarray, ...]) -> None:
        """Lock voxels given as a numpy multi-index (the ``data_setitem`` form)."""
        if len(indices) == 0 or np.size(indices[0]) == 0:
            return
        self._mask()[indices] = True
        self.edited_slices.update(int(s) for s in np.unique(indices[self.axis]))
