"""Colour tables: the names and colours of a mask's label values, in a file beside it.

A NIfTI mask holds numbers only; the names a user gave the classes in napari would be lost in
3D Slicer, FreeSurfer's freeview or an ITK pipeline. The table uses the plain format that 3D Slicer
reads as a colour table (``.ctbl``, "Add Data") and that FreeSurfer's lookup tables use: one line
per value, ``value name R G B A`` with colour components from 0 to 255, ``#`` starting a comment.
Names are single words there, so white space in a name becomes ``_``.

Tables are read back too (:func:`read_label_table`): that format, and ITK-SNAP's label description
files (``IDX R G B A VIS MSH "LABEL"``, alpha from 0 to 1, the name in quotes), so a mask opened or
trained on keeps the names a user gave its classes here or in those tools.
"""

from __future__ import annotations

import colorsys
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_action.io.atomic import write_atomically
from napari_action.io.nifti import nifti_suffix

__all__ = [
    "TABLE_SUFFIX",
    "LabelEntry",
    "class_entries",
    "has_named_class",
    "label_table_text",
    "read_label_table",
    "table_beside",
    "table_path",
    "write_label_table",
]

#: Extension of a colour table; 3D Slicer recognises it as one.
TABLE_SUFFIX = ".ctbl"


@dataclass(frozen=True)
class LabelEntry:
    """One label value with its name and colour (red, green, blue, alpha; 0-255)."""

    value: int
    name: str
    rgba: tuple[int, int, int, int]


def has_named_class(names: Mapping[int, str]) -> bool:
    """Whether any class but the background has a name other than its number (else numbers say it all)."""
    return any(str(name).strip() not in ("", str(value)) for value, name in names.items() if value != 0)


def class_entries(class_values: Iterable[int], names: Mapping[int, str]) -> list[LabelEntry]:
    """A model's classes as table entries, in colours of their own; none when no class is named."""
    if not has_named_class(names):
        return []
    return [
        LabelEntry(int(v), names.get(int(v)) or ("background" if v == 0 else f"class_{v}"), _distinct_rgba(int(v)))
        for v in class_values
    ]


def _distinct_rgba(value: int) -> tuple[int, int, int, int]:
    """A colour for ``value``: hues a golden-ratio turn apart, so neighbouring values never look alike."""
    if value == 0:
        return (0, 0, 0, 0)
    hue = (value * 0.6180339887) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return (round(255 * red), round(255 * green), round(255 * blue), 255)


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


def table_beside(mask: str | os.PathLike) -> Path | None:
    """The colour table written beside ``mask`` (:func:`table_path`), if there is one."""
    path = table_path(mask)
    return path if path.is_file() else None


def read_label_table(path: str | os.PathLike) -> list[LabelEntry]:
    """The entries of a colour table (``value name R G B A``) or of an ITK-SNAP label description file.

    Raises
    ------
    ValueError
        On a line that is neither, naming the file and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")  # tables written by older tools on Windows
    entries = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        entry = _valid(_parse_line(line))
        if entry is None:
            raise ValueError(
                f"{path}, line {number}: {line!r} is not 'value name R G B A' (3D Slicer, FreeSurfer) nor "
                "'value R G B A VIS MSH \"name\"' (ITK-SNAP); fix that line or choose the label table again."
            )
        entries[entry.value] = entry
    return [entries[value] for value in sorted(entries)]


def _parse_line(line: str) -> LabelEntry | None:
    try:
        fields = shlex.split(line, posix=True) if '"' in line else line.split()
        if '"' in line and len(fields) == 8:  # ITK-SNAP: IDX R G B A VIS MSH "LABEL", alpha from 0 to 1
            value, red, green, blue, alpha = int(fields[0]), *(float(f) for f in fields[1:5])
            return LabelEntry(value, fields[7], (int(red), int(green), int(blue), round(255 * alpha)))
        if len(fields) >= 5:  # value name R G B [A]
            value, name, *colour = fields[:6]
            rgba = [int(float(c)) for c in colour] + [255] * (4 - len(colour))
            return LabelEntry(int(value), name, tuple(rgba))
    except ValueError:  # a number that is not one, or an unclosed quote
        return None
    return None


def _valid(entry: LabelEntry | None) -> LabelEntry | None:
    return entry if entry is not None and entry.value >= 0 else None  # label values are never negative
