"""Quality records kept beside the masks, so that ``predict --skip-existing`` still rates the masks it keeps.

A mask's quality score compares it with the cohort's median structure volumes, and its doubt is
the network's, known only while predicting. A run continued with ``--skip-existing`` therefore
needs the records of the masks it does not predict again: each written mask's record is kept in
``<out-dir>/.napari-action-quality/<mask name>.json``, with the mask's size and modification time.
A mask changed since (a correction, another tool) does not match its record and is not rated from
it: its row says so, and ``--overwrite`` predicts and rates it again. The records also let every run rate
the masks other runs wrote into the same folder (:func:`recorded_masks`): the tasks of a job array, each
predicting its own scans into one ``--out-dir``. Each record names the model that predicted the mask (a hash of
its weights): only masks of the same model are rated together, as their scores compare one network's doubt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from napari_action.io.atomic import write_atomically

__all__ = ["RECORDS_FOLDER", "keep_record", "kept_record", "record_path", "recorded_masks"]

#: Folder of the kept records, inside ``--out-dir``.
RECORDS_FOLDER = ".napari-action-quality"


def record_path(mask: Path) -> Path:
    """Where the record of ``mask`` is kept."""
    return mask.parent / RECORDS_FOLDER / f"{mask.name}.json"


def keep_record(mask: Path, record: dict, image: str | None = None, model: str | None = None) -> Path:
    """Keep ``record`` (:meth:`PredictionStats.to_dict`) for the mask just written from ``image`` by ``model`` (its
    :attr:`~napari_action.inference.loaded_model.LoadedModel.fingerprint`); return the file."""
    path = record_path(mask)
    path.parent.mkdir(exist_ok=True)
    text = json.dumps({"mask": _fingerprint(mask), "record": record, "image": image, "model": model}, indent=1)
    return write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def kept_record(mask: Path, model: str | None) -> dict | None:
    """The record kept for ``mask``; None if there is none, it cannot be read, the mask changed since, or another
    model predicted it (``model``: this run's fingerprint; a record older than fingerprints has none)."""
    kept = _matching_record(mask)
    return None if kept is None or kept.get("model") != model else dict(kept["record"])


def recorded_masks(folder: Path) -> list[tuple[str, Path, dict, str | None]]:
    """Every mask in ``folder`` with a record that still matches it: the image it was predicted from (as that
    run named it; the mask for records older than the name), the mask, its record and the fingerprint of the
    model that predicted it (None for records older than fingerprints), sorted by mask name."""
    try:
        records = sorted((folder / RECORDS_FOLDER).glob("*.json"))
    except OSError:
        return []
    found = []
    for path in records:
        mask = folder / path.name.removesuffix(".json")
        kept = _matching_record(mask)
        if kept is not None:
            image = kept.get("image")
            name = image if isinstance(image, str) else str(mask)
            found.append((name, mask, dict(kept["record"]), kept.get("model")))
    return found


def _matching_record(mask: Path) -> dict | None:
    """The kept file of ``mask`` (a dict with its ``record``) if the mask is as it was written, else None."""
    try:
        kept = json.loads(record_path(mask).read_text(encoding="utf-8"))
        if kept["mask"] != _fingerprint(mask) or not isinstance(kept["record"], dict):
            return None
        return kept
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record, or a damaged one: the mask is listed as not rated


def _fingerprint(mask: Path) -> list[int]:
    """Bytes and latest modification (ns) of a mask file, or of every file in a zarr folder."""
    files = [mask] if mask.is_file() else sorted(p for p in mask.rglob("*") if p.is_file())
    stats = [os.stat(f) for f in files]
    return [sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0), len(stats)]
