"""Atomic file writes: whoever reads the target sees the old file or the new one, never half.

The content goes to a temporary file in the target's folder, is flushed to disk
and then renamed over the target (a rename within one folder is atomic). A
failure at any point removes the temporary file and leaves the target as it
was. Used for label maps and checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomically"]

_EXISTS = "{path} already exists; choose another name or pass overwrite=True to replace it."


def write_atomically(path: str | os.PathLike, write: Callable[[BinaryIO], object], *, overwrite: bool = True) -> Path:
    """Write a file through ``write(stream)``, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The target; its folder must exist.
    write : callable
        Called once with a binary stream open for writing, e.g.
        ``lambda stream: torch.save(payload, stream)``. Its return value is ignored.
    overwrite : bool
        Replace an existing target; otherwise an existing target raises
        ``FileExistsError``, checked before and again after writing.

    Returns
    -------
    pathlib.Path
        The target.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    OSError
        The write failed (disk full, file too large, ...); the target is unchanged.
    """
    path = Path(path)
    _refuse_existing(path, overwrite)
    mode = _new_file_mode(path)
    handle, temporary_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    temporary = Path(temporary_name)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        # Check again: the file may have appeared while the content was being written.
        _refuse_existing(path, overwrite)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    _fsync_folder(path.parent)
    return path


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if not overwrite and path.exists():
        raise FileExistsError(_EXISTS.format(path=path))


def _new_file_mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    # mkstemp creates 0600 files; give the result the permissions a plain open() would.
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_folder(folder: Path) -> None:
    # Persist the rename itself (POSIX only: Windows has no O_DIRECTORY and cannot open folders).
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
