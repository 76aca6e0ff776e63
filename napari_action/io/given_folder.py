"""A folder given where a NIfTI image or label map is expected, told apart by what it holds: a zarr store not named
as one, NIfTI files, a DICOM series, neither.

Zarr stores are folders too, read as stores before they get here when their names end in ``.zarr``. One named
otherwise is told by its metadata file and the user asked to rename it, not read: the ending decides in every
command and in the napari reader (whether an image is read slice by slice, a label file scanned for its paint, an
output named), so a store read here by its content would work in one place and be refused in the next.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, NamedTuple

from napari_action.io.not_nifti import is_dicom_file

#: Files looked into for the DICOM mark: a series is one kind of file throughout, so a few tell.
_FILES_LOOKED_INTO = 20
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_NAMES_SHOWN = 3
#: The file that makes a folder a zarr store: format 3's, then format 2's array and group.
_ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup")


class FolderDescription(NamedTuple):
    """What a folder given as a file is and what to do, for a front end to reword the advice (``_replace``)."""

    #: What the folder is, naming it (no full stop).
    problem: str
    #: What to give instead, one or more sentences.
    advice: str
    #: The NIfTI files directly inside it, sorted: the files the user most likely meant.
    nifti_files: list[Path]
    #: What decided the description: the advice fitting an option depends on it.
    holds: Literal["zarr", "nifti", "dicom", "nothing"]


def describe_folder(folder: Path, expected: str = "an image") -> FolderDescription:
    """What ``folder``, given where ``expected`` (``"an image"``, ``"a label map"``) belongs, is; what to give."""
    zarr_metadata = zarr_metadata_file(folder)
    if zarr_metadata is not None:
        if folder.name.lower().endswith(".zarr"):
            # Only a reader of NIfTI files alone (load_volume, load_labels from a script) gets here with one.
            return _zarr_store_to_nifti_reader(folder)
        return _misnamed_zarr_store(folder, zarr_metadata)
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


def zarr_metadata_file(folder: Path) -> str | None:
    """The name of the metadata file that makes ``folder`` a zarr store; None if it holds none."""
    return next((name for name in _ZARR_METADATA if (folder / name).is_file()), None)


def _zarr_store_to_nifti_reader(folder: Path) -> FolderDescription:
    problem = f"{folder} is a zarr store, and this function reads NIfTI files only"
    advice = (
        "Read a store with napari_action.io.volume_source.open_volume_source (an image) or "
        "napari_action.io.label_map.load_label_map (a label map), or give it to the command line, which reads both."
    )
    return FolderDescription(problem, advice, [], "zarr")


def _misnamed_zarr_store(folder: Path, metadata: str) -> FolderDescription:
    problem = f"{folder} is a zarr store (it holds {metadata}) whose name does not end in .zarr"
    advice = f"napari-action knows a zarr store by that ending: rename it to {folder.name}.zarr and give that."
    if is_zarr_group(folder, metadata):  # renamed, it would be refused still: say what it must hold
        advice += " It must hold one 3D array, as `napari-action convert` writes it, not a group of arrays."
    return FolderDescription(problem, advice, [], "zarr")


def is_zarr_group(folder: Path, metadata: str) -> bool:
    """Whether the store ``folder``, made one by its ``metadata`` file, holds a group rather than one array."""
    if metadata != "zarr.json":
        return metadata == ".zgroup"
    try:
        return json.loads((folder / metadata).read_text(encoding="utf-8")).get("node_type") == "group"
    except (OSError, ValueError, AttributeError):  # unreadable or not an object: leave it to the reader to say
        return False


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
    return any(is_dicom_file(path) for path in files[:_FILES_LOOKED_INTO])
