"""Where a mask came from, written with it: a JSON sidecar beside it and a line in its NIfTI header.

A mask found months later in a study folder should say which tool, version and model made it, from
which scan, and whether a person corrected it. The NIfTI header has 80 bytes for such a line
(``descrip``, :func:`mask_descrip`); the sidecar ``<stem>_action.json`` (:func:`sidecar_path`) holds the
rest, the keys documented in docs/usage.md ("Export refined masks…"). Unknown values are written
as null, never guessed.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from napari_action import __version__
from napari_action.io.atomic import write_atomically
from napari_action.io.nifti import nifti_suffix

#: Suffix of the provenance file beside a mask: ``liver_action.nii.gz`` -> ``liver_action.json``.
SIDECAR_SUFFIX = ".json"
#: Hex digits of a model fingerprint in the header line (the sidecar holds the whole fingerprint).
DESCRIP_FINGERPRINT_DIGITS = 12


def mask_descrip(fingerprint: str | None) -> str:
    """The header line of a mask: ``napari-action 0.1.0, model 3f9c0a1b2c4d`` (no model part when unknown)."""
    line = f"napari-action {__version__}"
    return f"{line}, model {fingerprint[:DESCRIP_FINGERPRINT_DIGITS]}" if fingerprint else line


def sidecar_path(mask: str | os.PathLike) -> Path:
    """The provenance file beside ``mask``: ``liver_action.nii.gz`` -> ``liver_action.json``."""
    mask = Path(mask)
    suffix = nifti_suffix(mask)
    stem = mask.name[: -len(suffix)] if suffix else mask.stem
    return mask.with_name(stem + SIDECAR_SUFFIX)


def local_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 with the local offset, to the second: ``2025-03-04T15:20:07+01:00``."""
    return (moment or datetime.now()).astimezone().isoformat(timespec="seconds")


def sidecar_text(record: dict[str, Any]) -> str:
    """The sidecar's text: sorted keys and an indent, so two exports differ only where their records do."""
    return json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_sidecar(path: str | os.PathLike, record: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``record`` to ``path`` atomically; an existing file is replaced only with ``overwrite``."""
    data = sidecar_text(record).encode("utf-8")
    return write_atomically(path, lambda stream: stream.write(data), overwrite=overwrite)
