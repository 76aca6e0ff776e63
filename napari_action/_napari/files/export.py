"""Export of the "<image> ACTION" prediction layers as NIfTI files with their source geometry.

Each prediction layer becomes ``<image name>_action.nii.gz`` holding the label
values as shown. The geometry is that of the source image layer: the NIfTI
header the reader kept in ``metadata["napari_action"]`` (restored bit for bit
by :func:`napari_action.io.nifti_writer.save_labels`), or, for images that did not come from
a NIfTI file, the layer's own transform (qform/sform code 2, "aligned"); the
rule is the npe2 writer's (:func:`napari_action._napari.writer.meta_for_layer`).

When the user named classes (the painted layer's features; docs/usage.md), a colour table with
their names and colours goes beside each mask, ``<image name>_action.ctbl``
(:mod:`napari_action.io.label_table`), under the same rules for existing files.

Each mask says where it came from: its header's ``descrip`` names napari-action's version and the
model that made the layer's last prediction (:func:`napari_action.io.provenance.mask_descrip`), and
a sidecar ``<image name>_action.json`` beside it holds the rest (:mod:`.provenance`), again under
the same rules for existing files.

The work is split by thread: :func:`plan_export` copies the layers on the GUI
thread, :func:`write_export` writes the files in a worker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_action._napari.layers import (
    SOURCE_KEY,
    class_names_of,
    colours_of_every_label,
    is_prediction_layer,
    layer_array,
    layer_shape,
)
from napari_action._napari.made_layers import is_duplicate
from napari_action._napari.prediction_writer import made_by
from napari_action._napari.view_plane import layer_volume_meta
from napari_action.io.errors import describe_error
from napari_action.io.label_table import LabelEntry, has_named_class, table_path, write_label_table
from napari_action.io.nifti_writer import save_labels
from napari_action.io.provenance import mask_descrip, sidecar_path, write_sidecar
from napari_action.io.volume_meta import VolumeMeta

logger = logging.getLogger(__name__)

#: Suffix of exported file names: ``<image name>_action.nii.gz``.
EXPORT_SUFFIX = "_action.nii.gz"
#: ``overwrite`` argument: a flag, or a function asked with the files that already exist.
Overwrite = bool | Callable[[list[Path]], bool]
#: ``describe`` argument of :func:`plan_export`: the provenance record of a layer exported to a path.
Describe = Callable[[object, Path], dict]


def export_name(image_name: str) -> str:
    """File name of the export of ``image_name``: path separators, and what Windows refuses in a name, replaced."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", image_name) + EXPORT_SUFFIX


@dataclass
class ExportItem:
    """One prediction layer, copied for writing."""

    layer_name: str
    path: Path
    labels: np.ndarray
    meta: VolumeMeta
    table: list[LabelEntry] = field(default_factory=list)  # names and colours; empty when no class is named
    provenance: dict | None = None  # the sidecar's record; None: no sidecar
    descrip: str = field(default_factory=lambda: mask_descrip(None))  # the header's line: version, model

    @property
    def paths(self) -> list[Path]:
        """The files this item writes: the mask, its colour table if it has one, its sidecar if it has one."""
        tables = [table_path(self.path)] if self.table else []
        sidecars = [sidecar_path(self.path)] if self.provenance is not None else []
        return [self.path, *tables, *sidecars]


@dataclass
class ExportResult:
    """Files written and files left alone because they existed."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)


def _geometry_layer(viewer, layer):
    """The source image of a prediction layer if it is still open and fits, else the layer itself.

    Prediction layers copy the image's transform and header metadata, so they
    are a faithful fallback once the image is closed.
    """
    name = layer.metadata.get(SOURCE_KEY)
    if name in viewer.layers and layer_shape(viewer.layers[name]) == layer_shape(layer):
        return viewer.layers[name]
    return layer


def plan_export(viewer, folder: str | Path, describe: Describe | None = None) -> list[ExportItem]:
    """Copy every prediction layer with its geometry and target path (GUI thread); ``describe(layer, path)``
    gives the record of its sidecar (None: no sidecars)."""
    items, taken = [], set()
    for layer in _made_layers_first(viewer):
        if not is_prediction_layer(layer) or len(layer_shape(layer)) != 3:
            continue
        meta = layer_volume_meta(_geometry_layer(viewer, layer))
        labels = np.array(layer_array(layer), copy=True)  # the user may paint on while we write
        path = _free_path(Path(folder), _file_name_of(layer), layer.name, taken)
        record = None if describe is None else describe(layer, path)
        model = made_by(layer)
        descrip = mask_descrip(None if model is None else model.get("fingerprint"))
        items.append(ExportItem(layer.name, path, labels, meta, _label_table(layer), record, descrip))
    return items


def _made_layers_first(viewer) -> list:
    """The viewer's layers, those napari-action made before the user's copies of them (in layer-list order else).

    So the layer Predict writes into gets its image's file name wherever the user moved a copy in the list: a copy
    above it took ``<image>_action.nii.gz`` and pushed the original to a file named after its layer.
    """
    return sorted(viewer.layers, key=is_duplicate)


def _file_name_of(layer) -> str:
    """What a prediction layer's file is named after: its image, or its own name for the user's copy of one (napari's
    Duplicate Layer), which is never written under the image's name, even with the original deleted."""
    if is_duplicate(layer):
        return layer.name
    return layer.metadata.get(SOURCE_KEY) or layer.name


def _label_table(layer) -> list[LabelEntry]:
    """The layer's classes with their names and colours, when the user named any; else none (numbers say it all).

    A prediction layer names every class: unnamed ones by their number, 0 "background".
    """
    names = class_names_of(layer) or {}
    if not has_named_class(names):
        return []
    values = sorted(set(names) | {0})
    # RGBA from 0 to 1, as napari shows them with every label drawn (not only the selected one).
    colours = np.asarray(colours_of_every_label(layer.colormap).map(np.asarray(values)))
    return [
        LabelEntry(value, names.get(value, "background"), tuple(int(round(255 * c)) for c in rgba))
        for value, rgba in zip(values, colours, strict=True)
    ]


def _free_path(folder: Path, wanted: str, layer_name: str, taken: set[str]) -> Path:
    """``<wanted>_action.nii.gz`` (``wanted``: the image's name, a copy's own); a second layer of one image (one made
    by hand with the metadata that marks a prediction layer) is named after itself, so no export writes one file
    twice."""
    path = folder / export_name(wanted)
    count = 1
    while path.name.casefold() in taken:  # macOS and Windows take "Heart" and "heart" for one file
        count += 1
        path = folder / export_name(layer_name if count == 2 else f"{layer_name} {count - 1}")
    taken.add(path.name.casefold())
    return path


def resolve_overwrite(items: Sequence[ExportItem], overwrite: Overwrite) -> tuple[list[ExportItem], list[Path], bool]:
    """Drop the items whose file exists unless ``overwrite`` allows replacing them (GUI thread).

    Returns
    -------
    kept : list of ExportItem
        Items to write.
    skipped : list of Path
        Existing files that stay untouched.
    replace : bool
        Whether writing may replace existing files (pass it on to :func:`write_export`).
    """
    existing = [path for item in items for path in item.paths if path.exists()]
    if not existing:
        return list(items), [], False
    if overwrite(existing) if callable(overwrite) else bool(overwrite):
        return list(items), [], True
    return [item for item in items if not any(path.exists() for path in item.paths)], existing, False


def write_export(items: Sequence[ExportItem], skipped: Sequence[Path] = (), overwrite: bool = False) -> ExportResult:
    """Write the items (worker thread); an existing file is replaced only with ``overwrite``.

    The first failure (folder not writable, disk full...) stops the export: the file it
    hit is unchanged, and its message also lists the files already written, which the
    user would otherwise not know about.
    """
    result = ExportResult(skipped=list(skipped))
    for item in items:
        try:
            saved = save_labels(item.path, item.labels, item.meta, overwrite=overwrite, descrip=item.descrip)
            result.written.append(saved)
            if item.table:
                table = write_label_table(table_path(item.path), item.table, source=item.path.name, overwrite=overwrite)
                result.written.append(table)
            if item.provenance is not None:
                result.written.append(write_sidecar(sidecar_path(item.path), item.provenance, overwrite=overwrite))
        except OSError as error:
            if not result.written:
                raise
            raise _naming_written(error, result.written) from error
        logger.info("exported %s to %s", item.layer_name, item.path)
    return result


def _naming_written(error: OSError, written: Sequence[Path]) -> OSError:
    """``error`` with the files written before it added to its message (same type and errno)."""
    names = ", ".join(path.name for path in written)
    extended = type(error)(f"{describe_error(error)} Exported before this failure: {names}.")
    extended.errno = error.errno
    return extended
