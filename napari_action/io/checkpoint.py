"""One checkpoint file: weights, config, classes, axis and version.

The file is a ``torch.save`` dictionary of tensors and plain Python values,
read back with ``weights_only=True`` so that opening a checkpoint never runs
pickled code. Writes are atomic: a crash while saving leaves the previous
file intact, and a folder that is not writable or a full disk get a message
that says what to do (see :mod:`napari_action.io.atomic`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from napari_action import __version__
from napari_action.config import TrainConfig
from napari_action.io.atomic import make_folder_for, write_atomically
from napari_action.networks.action_net import ActionNet

FORMAT = "napari-action-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a napari-action checkpoint, or a damaged one."""


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
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    PermissionError
        The folder is not writable; the message names it and says what to do.
    OSError
        The disk is full (or the file too large) or another write failure; an
        existing file at ``path`` is unchanged either way.
    """
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
    """Read a checkpoint; raise :class:`CheckpointError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(_not_a_checkpoint(path))
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} was written by a newer napari-action ({payload.get('version')}); "
            f"this is {__version__}. Upgrade napari-action to read it."
        )
    try:
        return Checkpoint(
            config=TrainConfig.from_dict(payload["config"]),
            class_values=list(payload["class_values"]),
            axis=int(payload["axis"]),
            student=payload["student"],
            teacher=payload["teacher"],
            class_names={int(k): v for k, v in payload.get("class_names", {}).items()},
            step=int(payload.get("step", 0)),
            version=str(payload.get("version", "?")),
            extra=dict(payload.get("extra", {})),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged or incomplete: {error}") from error


def _read_payload(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{path} cannot be read as a checkpoint (damaged or truncated?): {error}") from error
    except Exception as error:
        # Any other file: the unpickler's own words ("list index out of range",
        # "unsupported global") mean nothing to the user; they stay in __cause__.
        raise CheckpointError(_not_a_checkpoint(path)) from error


def _not_a_checkpoint(path: Path) -> str:
    return (
        f"{path} is not a napari-action checkpoint (save one with 'Save model…' "
        "or 'napari-action train --out MODEL.pt')."
    )


def build_inference_net(ckpt: Checkpoint, which: str = "teacher") -> torch.nn.Module:
    """Rebuild the network and load the ``teacher`` (default) or ``student`` weights."""
    config = ckpt.config
    net = ActionNet(config.model.in_channels, ckpt.num_classes, config.model)
    state = ckpt.teacher if which == "teacher" else ckpt.student
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"Checkpoint weights do not fit the network: {error}") from error
    return net.eval()
