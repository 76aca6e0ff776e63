"""A folder named as a zarr store (``*.zarr``) that holds no array zarr can open, told in words: empty, holding
other files, a group, or metadata that is damaged.

zarr's own exceptions (``ArrayNotFoundError: No array found in store file://…``, a ``JSONDecodeError``) name no
folder the user gave and say nothing of what to do. :func:`store_without_array_message` looks at the folder before
zarr opens it; :func:`unreadable_metadata_message` words what zarr refused all the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from napari_action.io.given_folder import is_zarr_group, zarr_metadata_file

_NAMES_SHOWN = 3
_WHAT_TO_GIVE = (
    "A folder whose name ends in .zarr is read as a zarr store: give one napari-action wrote "
    "(`napari-action convert` makes one from a NIfTI file), or a NIfTI file (.nii or .nii.gz)."
)
_ONE_ARRAY = "napari-action reads one 3D array per store, as `napari-action convert` writes it."
_WRITE_AGAIN = (
    "write it again (napari-action convert, or predict --output-format zarr), or give the NIfTI file it was made from."
)


def store_without_array_message(folder: Path) -> str | None:
    """Why ``folder`` holds no zarr array, as far as its files tell; None where they look like an array's.

    Raises
    ------
    OSError
        The folder cannot be listed or its metadata read: the OS's refusal, which the front ends word.
    """
    metadata = zarr_metadata_file(folder)
    if metadata is None:
        return f"{folder} holds no zarr array: {_contents(folder, metadata_named='zarr.json')}. {_WHAT_TO_GIVE}"
    if is_zarr_group(folder, metadata):
        return f"{folder} holds a zarr group, not one array; {_ONE_ARRAY}"
    if not _is_json_object(folder / metadata):
        return (
            f"{folder} holds no readable zarr array: its metadata file {metadata} is not valid JSON, so the store "
            f"is damaged or was not written to the end: {_WRITE_AGAIN}"
        )
    return None


def unreadable_metadata_message(folder: Path) -> str:
    """The refusal of a store whose metadata is JSON that zarr still cannot open as an array's."""
    metadata = zarr_metadata_file(folder) or "zarr.json"
    return (
        f"{folder} holds no readable zarr array: its metadata file {metadata} is not one this zarr reads as an "
        f"array's (damaged, edited, or written by a newer zarr): {_WRITE_AGAIN}"
    )


def _contents(folder: Path, metadata_named: str) -> str:
    """What a folder without zarr metadata holds: nothing, or its first entries (folders ending in /)."""
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir())
    if not names:
        return "the folder is empty"
    more = f", and {len(names) - _NAMES_SHOWN} more," if len(names) > _NAMES_SHOWN else ""
    return f"it holds {', '.join(names[:_NAMES_SHOWN])}{more} and no {metadata_named}"


def _is_json_object(path: Path) -> bool:
    # Only a failed parse counts: an OSError (no permission, a read error) is the OS's to tell.
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")), dict)
    except ValueError:
        return False
