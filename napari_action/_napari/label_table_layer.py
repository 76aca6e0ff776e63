"""The names and colours of a mask's classes, from the colour table beside its file, as Labels layer arguments.

Export writes ``<image>_action.ctbl`` beside each mask (:mod:`napari_action.io.label_table`); opening
that mask again, or one with a table from 3D Slicer, FreeSurfer or ITK-SNAP under the same name,
brings the names back (napari shows them under the cursor and Train keeps them) and the colours.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_action.io.label_table import LabelEntry, read_label_table, table_beside

__all__ = ["LabelTableWarning", "table_layer_kwargs"]

# Values napari's default label colours are kept for, where the table names no colour of its own.
_DEFAULT_COLOURED_VALUES = 256


class LabelTableWarning(UserWarning):
    """The table beside a mask could not be read; the mask opens without its names."""


def table_layer_kwargs(mask: Path) -> dict[str, Any]:
    """``features``, ``metadata["class_names"]`` and ``colormap`` from the table beside ``mask``; {} without one."""
    table = table_beside(mask)
    if table is None:
        return {}
    try:
        entries = read_label_table(table)
    except (OSError, ValueError) as error:
        warnings.warn(f"{mask.name} opened without its class names: {error}", LabelTableWarning, stacklevel=2)
        return {}
    names = {entry.value: entry.name for entry in entries}
    values = sorted(set(names) | {0})
    features = {"index": np.asarray(values), "name": np.asarray([names.get(v, "background") for v in values])}
    return {"features": features, "metadata": {"class_names": names}, "colormap": _colours(entries)}


def _colours(entries: Sequence[LabelEntry]) -> dict:
    """The table's colours over napari's default ones: a value the table does not list keeps its usual colour."""
    from napari.utils.colormaps import label_colormap  # napari is there whenever its reader runs

    values = np.arange(1, _DEFAULT_COLOURED_VALUES)
    colours: dict = {int(v): tuple(rgba) for v, rgba in zip(values, label_colormap().map(values), strict=True)}
    for entry in entries:
        if entry.value != 0:  # background stays transparent, whatever the table says
            colours[entry.value] = (*(c / 255 for c in entry.rgba[:3]), 1.0)
    colours[0] = (0.0, 0.0, 0.0, 0.0)
    colours[None] = (0.5, 0.5, 0.5, 1.0)  # values beyond those listed: grey rather than invisible
    return colours
