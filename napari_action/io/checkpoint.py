"""One checkpoint file: weights, config, classes, axis and version.

The file is a ``torch.save`` dictionary of tensors and plain Python values,
read back with ``weights_only=True`` so that opening a checkpoint never runs
pickled code. Writes are atomic: a crash while saving leaves the previous
file intact, and a folder that is not writable or a full disk get a message
that says what to do (see :mod:`napari_action.io.atomic`).

Reading fails with one :class:`CheckpointError` whatever the cause, worded for
the user: the OS's refusals as :mod:`napari_action.io.errors` words them, and,
instead of torch's messages, what the file is (empty, truncated, an image,
another program's file, a newer napari-action's).
"""

from __future__ import annotations

import errno
import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_action import __version__
from napari_action.config import TrainConfig
from napari_action.io.atomic import make_folder_for, write_atomically
from napari_action.io.errors import describe_os_error, os_error_in_chain, written_by_newer
from napari_action.io.nifti import NIFTI_EXTENSIONS

FORMAT = "napari-action-checkpoint"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file and says what to do."""


@dataclass
class Checkpoint:
    """The content of a checkpoint file."""

    config: TrainConfig
    class_values: list[int]
    axis: int
    student: dict[str, torch.Tensor]
    teacher: dict[str, torch.Tensor]
    class_names: dict[int, str] = field(default_factory=dict)
    step: int = 0
    version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_values)


def weights_fingerprint(ckpt: Checkpoint) -> str:
    """A short hash of the weights that predict (the teacher's) and the classes: the same model, saved under
    any name, gives the same text; a model trained on, or another one, a different one."""
    digest = hashlib.sha256(repr(list(ckpt.class_values)).encode())
    for name in sorted(ckpt.teacher):
        digest.update(name.encode())
        digest.update(ckpt.teacher[name].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(path: str | Path, ckpt: Checkpoint, *, overwrite: bool = True) -> Path:
    """Write ``ckpt`` to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or Path
        Target file; missing folders are created.
    ckpt : Checkpoint
        What to write.
    overwrite : bool
        Replace an existing file (the default: a trainer saves to the same file
        again and again, and save dialogs ask the user before they return an
        existing name); False refuses it before anything is written.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        ``ckpt`` is not a :class:`Checkpoint` (a trainer: ``trainer.save_checkpoint(path)`` saves its model).
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    PermissionError
        The folder is not writable; the message names it and says what to do.
    OSError
        The disk is full (or the file too large) or another write failure; an
        existing file at ``path`` is unchanged either way.
    """
    if not isinstance(ckpt, Checkpoint):  # a trainer raised AttributeError: 'Trainer' object has no attribute 'version'
        raise TypeError(
            f"save_checkpoint writes a Checkpoint; got a {type(ckpt).__name__}. "
            "Save a trainer's model with trainer.save_checkpoint(path)."
        )
    path = Path(path)
    make_folder_for(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "version": ckpt.version,
        "config": ckpt.config.to_dict(),
        "class_values": [int(v) for v in ckpt.class_values],
        "class_names": {int(k): str(v) for k, v in ckpt.class_names.items()},
        "axis": int(ckpt.axis),
        "step": int(ckpt.step),
        "student": ckpt.student,
        "teacher": ckpt.teacher,
        "extra": ckpt.extra,
    }
    write_atomically(path, lambda stream: torch.save(payload, stream), overwrite=overwrite)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_checkpoint`.

    Returns
    -------
    Checkpoint
        Its content.

    Raises
    ------
    CheckpointError
        The file cannot be opened (missing, a folder, no permission: the OS's error in
        the words of :mod:`napari_action.io.errors`), is empty, damaged or truncated, is
        not a napari-action checkpoint, or was written by a newer napari-action. The
        message names the file and says what to do; the original error is its ``__cause__``.
    """
    path = Path(path)
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(_not_a_checkpoint(path))
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(written_by_newer(path, payload.get("version")))
    try:
        return _checkpoint_of(payload)
    except (KeyError, TypeError, ValueError) as error:
        # A newer release may add settings without changing the format: unknown fields then
        # mean "upgrade", not "damaged".
        if _is_newer(payload.get("version")):
            raise CheckpointError(written_by_newer(path, payload.get("version"))) from error
        raise CheckpointError(_incomplete(path, error)) from error


def _with_legacy_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the settings it predates set as they were then (today's defaults would
    change what the model was trained on)."""
    # Models saved before intensity_reference existed were trained on whole-volume moments.
    return {"intensity_reference": "whole", **config}


def _checkpoint_of(payload: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        config=TrainConfig.from_dict(_with_legacy_defaults(payload["config"])),
        class_values=list(payload["class_values"]),
        axis=int(payload["axis"]),
        student=payload["student"],
        teacher=payload["teacher"],
        class_names={int(k): v for k, v in payload.get("class_names", {}).items()},
        step=int(payload.get("step", 0)),
        version=str(payload.get("version", "?")),
        extra=dict(payload.get("extra", {})),
    )


def _read_payload(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:  # a whole checkpoint that does not fit: no fault of the file
        raise
    except Exception as error:
        # torch's own words ("PytorchStreamReader failed reading zip archive", "invalid load
        # key") mean nothing to the user; they stay in __cause__ for a debugger.
        raise CheckpointError(_why_unreadable(path, error)) from error


def _why_unreadable(path: Path, error: Exception) -> str:
    """Why torch could not read ``path``: the OS refused it, or what the file holds instead of a checkpoint."""
    refused = os_error_in_chain(error)
    if refused is not None and refused.errno != errno.EINVAL:
        return describe_os_error(refused, path)
    # EINVAL is torch's zip reader seeking before the start of a file too short for a checkpoint (a truncated one),
    # not the OS refusing the path; a path the OS does find invalid fails to open below and is described there.
    try:
        head = _first_bytes(path)
    except OSError as gone:  # removed or locked since torch tried it
        return describe_os_error(gone, path)
    if not head:
        return (
            f"{path} is empty (0 bytes), not a checkpoint: the save or copy that made it did not finish; "
            "save or copy the model again."
        )
    if head.startswith(_ZIP_MAGIC) and not _is_foreign_zip(path):
        return (
            f"{path} is a damaged or truncated checkpoint (incomplete or corrupt, e.g. a copy or download "
            "that stopped early); copy or save the model again."
        )
    if path.name.lower().endswith(NIFTI_EXTENSIONS):
        return (
            f"{path} is a NIfTI image, not a napari-action checkpoint (save one with 'Save model…' "
            "or 'napari-action train --out MODEL.pt')."
        )
    return _not_a_checkpoint(path)


def _first_bytes(path: Path, count: int = 4) -> bytes:
    with path.open("rb") as stream:
        return stream.read(count)


def _is_foreign_zip(path: Path) -> bool:
    """A complete zip archive without torch's ``data.pkl``: some other program's file, not a damaged checkpoint."""
    try:
        with zipfile.ZipFile(path) as archive:
            return not any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):  # cut short or corrupt: a damaged checkpoint
        return False


def _not_a_checkpoint(path: Path) -> str:
    return (
        f"{path} is not a napari-action checkpoint (save one with 'Save model…' "
        "or 'napari-action train --out MODEL.pt')."
    )


def _incomplete(path: Path, error: Exception) -> str:
    detail = f"no {error.args[0]!r} entry" if isinstance(error, KeyError) and error.args else str(error)
    return f"{path} is a damaged or incomplete napari-action checkpoint ({detail}); save the model again."


def _is_newer(version: object) -> bool:
    """Whether ``version`` (as stored in a checkpoint) is a later release than this one."""
    return _release(version) > _release(__version__)


def _release(version: object) -> tuple[int, ...]:
    """``"0.2.1.dev3"`` -> ``(0, 2, 1)``; ``()`` for anything that is no version number."""
    match = re.match(r"\d+(\.\d+)*", str(version))
    return tuple(int(part) for part in match.group(0).split(".")) if match else ()
