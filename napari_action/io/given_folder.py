"""A folder given where a NIfTI image or label map is expected, told apart by what it holds: NIfTI files, a DICOM
series, neither.

Zarr stores are folders too, but they are read as stores before they get here (names ending in ``.zarr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, NamedTuple

#: Files looked into for the DICOM mark: a series is one kind of file throughout, so a few tell.
_FILES_LOOKED_INTO = 20
#: A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
_DICOM_MARK, _DICOM_MARK_AT = b"DICM", 128
_DICOM_SUFFIXES = (".dcm", ".ima")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_NAMES_SHOWN = 3


class FolderDescription(NamedTuple):
    """What a folder given as a file is and what to do, for a front end to reword the advice (``_replace``)."""

    #: What the folder is, naming it (no full stop).
    problem: str
    #: What to give instead, one or more sentences.
    advice: str
    #: The NIfTI files directly inside it, sorted: the files the user most likely meant.
    nifti_files: list[Path]
    #: What decided the description: the advice fitting an option depends on it.
    holds: Literal["nifti", "dicom", "nothing"]


def describe_folder(folder: Path, expected: str = "an image") -> FolderDescription:
    """What ``folder``, given where ``expected`` (``"an image"``, ``"a label map"``) belongs, is; what to give."""
    files = _files_in(folder)
    nifti = [path for path in files if path.name.lower().endswith(_NIFTI_SUFFIXES)]
    if nifti:
        problem = f"{folder} is a folder, not {expected}: it holds {len(nifti)} NIfTI files ({_names(nifti)})"
        return FolderDescription(problem, f"Give one of them, such as {nifti[0]}.", nifti, "nifti")
    if _holds_dicom(files):
        problem = f"{folder} is a folder of DICOM files, not {expected}; napari-action reads NIfTI"
        advice = f"Convert the series to one NIfTI file first, e.g. `dcm2niix -z y {folder}`, and give that file."
        return FolderDescription(problem, advice, [], "dicom")
    problem = f"{folder} is a folder holding no NIfTI or DICOM file"
    advice = "Give a NIfTI file (.nii or .nii.gz), or a zarr store (a folder whose name ends in .zarr)."
    return FolderDescription(problem, advice, [], "nothing")


def _files_in(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.startswith("."))
    except OSError:  # a folder this process may not list: nothing to tell from it
        return []


def _names(files: list[Path]) -> str:
    more = f", and {len(files) - _NAMES_SHOWN} more" if len(files) > _NAMES_SHOWN else ""
    return ", ".join(path.name for path in files[:_NAMES_SHOWN]) + more


def _holds_dicom(files: list[Path]) -> bool:
    """DICOM by name (``.dcm``, ``.ima``, ``DICOMDIR``) or by the mark scanners write into files named ``IM0001``."""
    return any(_is_dicom(path) for path in files[:_FILES_LOOKED_INTO])


def _is_dicom(path: Path) -> bool:
    if path.name.lower().endswith(_DICOM_SUFFIXES) or path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as stream:
            stream.seek(_DICOM_MARK_AT)
            return stream.read(len(_DICOM_MARK)) == _DICOM_MARK
    except OSError:
        return False
