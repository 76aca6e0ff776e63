"""A folder given where a NIfTI image is expected, told apart by what it holds: NIfTI files, a DICOM series, neither.

Zarr stores are folders too, but they are read as stores before they get here (names ending in ``.zarr``).
"""

from __future__ import annotations

from pathlib import Path

#: Files looked into for the DICOM mark: a series is one kind of file throughout, so a few tell.
_FILES_LOOKED_INTO = 20
#: A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
_DICOM_MARK, _DICOM_MARK_AT = b"DICM", 128
_DICOM_SUFFIXES = (".dcm", ".ima")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_NAMES_SHOWN = 3


def describe_folder(folder: Path) -> tuple[str, str, list[Path]]:
    """What ``folder``, given as an image, is (naming it); how to give an image instead; the NIfTI files directly
    inside it, sorted (the images the user most likely meant)."""
    files = _files_in(folder)
    nifti = [path for path in files if path.name.lower().endswith(_NIFTI_SUFFIXES)]
    if nifti:
        problem = f"{folder} is a folder, not an image: it holds {len(nifti)} NIfTI files ({_names(nifti)})"
        return problem, f"Give one of them, such as {nifti[0]}.", nifti
    if _holds_dicom(files):
        problem = f"{folder} is a folder of DICOM files, not an image; napari-action reads NIfTI"
        advice = f"Convert the series to one NIfTI file first, e.g. `dcm2niix -z y {folder}`, and give that file."
        return problem, advice, []
    problem = f"{folder} is a folder holding no NIfTI or DICOM file"
    advice = "Give a NIfTI file (.nii or .nii.gz), or a zarr store (a folder whose name ends in .zarr)."
    return problem, advice, []


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
