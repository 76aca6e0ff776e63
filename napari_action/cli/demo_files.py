"""The files an earlier demo wrote into a folder: the demo replaces those and refuses to replace any other.

``napari-action demo --out-dir .`` in a folder of the user's own would otherwise replace their
``model.pt`` or ``results.json``. Running the demo again into its own folder is what users do (another
seed, fewer slices), so a file the demo wrote and nobody changed since is replaced without asking; the
folder keeps a small record of those files (size and modification time of each).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from napari_action.io.atomic import write_text_atomically

RECORD = ".napari-action-demo.json"


def demo_file_names(subject_names: Iterable[str]) -> list[str]:
    """Every file the demo writes for subjects named ``subject_names`` (the first is the painted one)."""
    subject_names = list(subject_names)
    per_subject = [f"{name}{suffix}.nii.gz" for name in subject_names for suffix in ("", "_action", "_truth")]
    return ["model.pt", "overlay.png", "results.json", f"{subject_names[0]}_painted.nii.gz", *per_subject]


def refuse_to_replace_others(out: Path, names: Iterable[str], *, overwrite: bool) -> None:
    """Raise ``FileExistsError`` when ``out`` holds one of ``names`` that no earlier demo wrote as it is now."""
    if overwrite:
        return
    written = _read_record(out)
    foreign = [name for name in names if (out / name).exists() and written.get(name) != _stamp(out / name)]
    if foreign:
        raise FileExistsError(
            f"{out} already holds {', '.join(foreign)}, not written by an earlier demo (or changed since); "
            "pass --overwrite to replace them, or choose another --out-dir."
        )


def record_written(out: Path, names: Iterable[str]) -> None:
    """Note the files the demo has just written, so that the next demo may replace them."""
    stamps = {name: _stamp(out / name) for name in names if (out / name).exists()}
    # Whole or not at all: a record cut short would make the next demo refuse to replace its own files.
    write_text_atomically(out / RECORD, json.dumps(stamps, indent=1))


def _stamp(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def _read_record(out: Path) -> dict[str, list[int]]:
    try:
        record = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):  # no record (a folder of the user's own) or a damaged one: replace nothing
        return {}
    return record if isinstance(record, dict) else {}
