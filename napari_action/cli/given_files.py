"""The files named on the command line: one image given twice (checked before any is read), a folder given as an
image or a label map (advice on how to give the NIfTI files it holds, in the options of each command)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_action.io.file_identity import file_identity
from napari_action.io.given_folder import describe_folder
from napari_action.io.nifti import FolderGivenError

#: What each option taking a label map wants, said where a folder was given to it.
_LABEL_MAP_WANTED = {
    "--labels": "Give one label map per --image, in --image order (the k-th --labels belongs to the k-th --image)",
    "--truth": "--truth takes one label map, the expert mask of the image --pred was predicted on",
    "--pred": "--pred takes one label map, napari-action's mask (*_action.nii.gz) of the image --truth was drawn on",
}


def refuse_repeated_images(images: Sequence[Path], labels: Sequence[Path]) -> None:
    """Refuse an ``--image`` given twice: it would train as two volumes, its unlabeled slices counted twice.

    Parameters
    ----------
    images : sequence of pathlib.Path
        The --image values, in the order given.
    labels : sequence of pathlib.Path
        The --labels values; the k-th belongs to the k-th image.

    Raises
    ------
    ValueError
        Two --image values name one file; the message names both, as given, and the file.
    """
    first_given: dict[object, int] = {}
    for second, path in enumerate(images):
        first = first_given.setdefault(file_identity(path), second)
        if first != second:
            raise ValueError(_repeated_message(images, labels, first, second))


def _repeated_message(images: Sequence[Path], labels: Sequence[Path], first: int, second: int) -> str:
    both = f"--image {images[first]} (number {first + 1}) and --image {images[second]} (number {second + 1})"
    advice = f"Give each image once: drop --image number {second + 1}"
    if second < len(labels):  # both carry paint (labels belong to the first images): one file must hold it all
        advice += f", and copy the slices painted in {labels[second]} into {labels[first]}"
    return (
        f"{both} are the same file, {os.path.realpath(images[first])}: it would train as two volumes, its "
        f"unlabeled slices counted twice. {advice}."
    )


def folder_advice_for_train(error: FolderGivenError) -> FolderGivenError:
    """A folder of NIfTI files given as --image: each file takes an --image of its own (a shell glob cannot give it
    them: ``--image scans/*.nii.gz`` puts the second file where an option belongs)."""
    if not error.nifti_files:
        return error
    options = " ".join(f"--image {path}" for path in error.nifti_files[:2])
    more = " …" if len(error.nifti_files) > 2 else ""
    return error.with_advice(f"Give each image with an --image of its own: {options}{more}.")


def folder_advice_for_predict(error: FolderGivenError) -> FolderGivenError:
    """A folder of NIfTI files given as --image: one quoted pattern names them all, or a list file does."""
    if not error.nifti_files:
        return error
    suffixes = {".nii.gz" if path.name.lower().endswith(".nii.gz") else ".nii" for path in error.nifti_files}
    pattern = error.folder / (f"*{suffixes.pop()}" if len(suffixes) == 1 else "*.nii*")
    return error.with_advice(
        f"Give them all with --image '{pattern}' (in quotes: napari-action expands the pattern), or list them, one "
        "path a line, in a text file given with --image-list."
    )


def folder_advice_for_label_map(error: FolderGivenError, option: str) -> FolderGivenError:
    """A folder given as ``option`` (train's --labels, evaluate's --truth and --pred): called a folder, not a label
    map, with what that option takes; the advice to convert a DICOM series stays as it is."""
    described = describe_folder(error.folder, expected="a label map")
    wanted = _LABEL_MAP_WANTED[option]
    if described.holds == "nifti":
        advice = f"{wanted}: {_label_map_example(described.nifti_files, option)}."
    elif described.holds == "nothing":
        # Never a folder named .zarr: every option taking a label map reads such a folder as a store.
        advice = f"{wanted}: a NIfTI file (.nii or .nii.gz) or a zarr store (a folder whose name ends in .zarr)."
    else:
        advice = described.advice
    return FolderGivenError(error.folder, described._replace(advice=advice))


def _label_map_example(nifti_files: list[Path], option: str) -> str:
    """--labels takes one file per image (the first two shown); --truth and --pred take one."""
    if option != "--labels":
        return f"give one of them, such as {nifti_files[0]}"
    more = " …" if len(nifti_files) > 2 else ""
    return "such as " + " ".join(f"--labels {path}" for path in nifti_files[:2]) + more
