"""Colour tables: the names and colours of a mask's label values, in a file beside it.

A NIfTI mask holds numbers only; the names a user gave the classes in napari would be lost in
3D Slicer, FreeSurfer's freeview or an ITK pipeline. The table uses the plain format that 3D Slicer
reads as a colour table (``.ctbl``, "Add Data") and that FreeSurfer's lookup tables use: one line
per value, ``value name R G B A`` with colour components from 0 to 255, ``#`` starting a comment.
Names are single words there, so white space in a name becomes ``_``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_action.io.atomic import write_atomically
from napari_action.io.nifti import nifti_suffix

__all__ = ["TABLE_SUFFIX", "LabelEntry", "label_table_text", "table_path", "write_label_table"]

#: Extension of a colour table; 3D Slicer recognises it as one.
TABLE_SUFFIX = ".ctbl"


@dataclass(frozen=True)
class LabelEntry:
    """One label value with its name and colour (red, green, blue, alpha; 0-255)."""

    value: int
    name: str
    rgba: tuple[int, int, int, int]


def table_path(mask: str | os.PathLike) -> Path:
    """The table beside ``mask``: ``liver_action.nii.gz`` -> ``liver_action.ctbl``."""
    mask = Path(mask)
    suffix = nifti_suffix(mask)
    stem = mask.name[: -len(suffix)] if suffix else mask.stem
    return mask.with_name(stem + TABLE_SUFFIX)


def label_table_text(entries: Sequence[LabelEntry], source: str = "") -> str:
    """The table's text: a comment naming ``source`` (the mask), then one line per entry, by value."""
    lines = [f"# Label names and colours of {source or 'a napari-action mask'}: value name R G B A"]
    for entry in sorted(entries, key=lambda entry: entry.value):
        name = re.sub(r"\s+", "_", entry.name.strip()) or f"class_{entry.value}"
        red, green, blue, alpha = (min(255, max(0, int(c))) for c in entry.rgba)
        lines.append(f"{entry.value} {name} {red} {green} {blue} {alpha}")
    return "\n".join(lines) + "\n"


def write_label_table(
    path: str | os.PathLike, entries: Sequence[LabelEntry], *, source: str = "", overwrite: bool = False
) -> Path:
    """Write the table of ``entries`` to ``path``, atomically; an existing file is replaced only with ``overwrite``."""
    text = label_table_text(entries, source).encode("utf-8")
    return write_atomically(path, lambda stream: stream.write(text), overwrite=overwrite)
