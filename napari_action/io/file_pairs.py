""".hdr/.img file pairs (a NIfTI-1 pair, or an Analyze 7.5 image): recognised, to be refused in words.

SPM, FSL (``FSLOUTPUTTYPE=NIFTI_PAIR``) and older tools store a volume as a header file beside a voxel
file. napari-action reads single-file NIfTI only; a pair is refused with the one-line conversion, so
that the user does not take "not a NIfTI file" for the truth (a NIfTI pair is NIfTI), and napari does
not open the ``.img`` with its own reader, which reverses the axes and drops the geometry. The header
is recognised by its first field, the header's size (348 bytes): ENVI's ``.hdr`` files are text.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

__all__ = ["PAIR_EXTENSIONS", "pair_header", "pair_message"]

#: The names of a pair's files: the header, the voxels, either gzipped.
PAIR_EXTENSIONS: tuple[str, ...] = (".hdr.gz", ".img.gz", ".hdr", ".img")
_HEADER_SIZE = 348
_NIFTI_PAIR_MAGIC = b"ni1\x00"  # at byte 344 of a NIfTI-1 pair's header; Analyze leaves it blank


def _pair_stem(name: str) -> tuple[str, str] | None:
    """The name without its pair extension, and whether it was gzipped (``".gz"`` or ``""``)."""
    lower = name.lower()
    extension = next((ext for ext in PAIR_EXTENSIONS if lower.endswith(ext)), None)
    if extension is None or len(name) == len(extension):
        return None
    return name[: -len(extension)], name[-3:] if extension.endswith(".gz") else ""


def _read_header(path: Path) -> bytes:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            return stream.read(_HEADER_SIZE)
    except (OSError, EOFError):
        return b""


def pair_header(path: str | os.PathLike) -> Path | None:
    """The header file of the pair ``path`` belongs to (``path`` itself for a ``.hdr``), or None.

    None where the name has no pair extension, no header lies beside it, or the header is not a
    348-byte NIfTI-1/Analyze header.
    """
    path = Path(path)
    parts = _pair_stem(path.name)
    if parts is None:
        return None
    stem, gz = parts
    for extension in (".hdr", ".HDR"):
        header = path.with_name(stem + extension + gz)
        start = _read_header(header)[:4]
        if start in (_HEADER_SIZE.to_bytes(4, "little"), _HEADER_SIZE.to_bytes(4, "big")):
            return header
    return None


def pair_message(path: str | os.PathLike, header: Path) -> str:
    """What to tell about a pair's file ``path`` (its header ``header``): what it is and how to convert it."""
    nifti_pair = _read_header(header)[344:348] == _NIFTI_PAIR_MAGIC
    stem = _pair_stem(header.name)[0]
    what = (
        "a NIfTI-1 file pair (.hdr/.img)"
        if nifti_pair
        else "an Analyze 7.5 image (.hdr/.img), a format that does not record the voxels' orientation"
    )
    advice = (
        "the conversion keeps its geometry."
        if nifti_pair
        else "check the converted scan's orientation in your viewer before painting: tools guess it differently."
    )
    return (
        f"{path}: one file of {what}; napari-action reads single NIfTI files (.nii, .nii.gz). Convert the pair "
        f"first, e.g. with FSL: `fslchfiletype NIFTI_GZ {header}`, or in Python: "
        f"`nibabel.save(nibabel.load('{header}'), '{header.with_name(stem)}.nii.gz')`; {advice}"
    )
