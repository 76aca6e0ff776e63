"""Atomic file writes: whoever reads the target sees the old file or the new one, never half.

The content goes to a temporary file in the target's folder (``.<name>.<random>.part``),
is flushed to disk and then renamed over the target (a rename within one folder is
atomic). A failure at any point removes the temporary file and leaves the target as it
was. Used for label maps and checkpoints; session stores reuse the error messages.

Failures the user can fix get a message that says what is wrong and what to do instead
of the OS's words about a hidden temporary file: a folder that is not writable, a full
disk (or a file over the size limit). A process killed while writing cannot remove its
temporary file; the next successful write of the same target removes such leftovers
once they are :data:`STALE_AFTER_S` seconds old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from napari_action.io.errors import (
    DISK_FULL,
    NOT_WRITABLE,
    FileInUseError,
    disk_full_message,
    in_use_message,
    not_writable_message,
    os_error_in_chain,
)

__all__ = [
    "STALE_AFTER_S",
    "accepts_files",
    "explain_write_error",
    "explained_errors",
    "make_folder_for",
    "new_file_mode",
    "remove_stale_parts",
    "replace",
    "require_writable_folder",
    "write_atomically",
    "write_text_atomically",
]

#: Age (seconds since the last change) after which a temporary file counts as left by a dead write.
STALE_AFTER_S = 60.0
_PART = ".part"
_EXISTS = "{path} already exists; choose another name or pass overwrite=True to replace it."
#: Pauses (seconds) before a rename Windows refused is tried again: an antivirus or the search indexer
#: opens a file just written for a moment, and Windows renames no file that is open (1.55 s in all).
_IN_USE_PAUSES_S = (0.05, 0.1, 0.2, 0.4, 0.8)


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
    PermissionError
        The folder is not writable (see :func:`explain_write_error` for the message).
    OSError
        The write failed (disk full, file too large, ...); the target is unchanged.
        Full disks and read-only file systems get a message that says what to do.
    """
    path = Path(path)
    existed = os.path.exists(path)  # False, not an error, for a folder this process cannot look into
    with explained_errors(path, existed=existed):
        _refuse_existing(path, overwrite)
        mode = new_file_mode(path)
        handle, temporary = _create_temporary(path)
        try:
            _fill(handle, write)
            os.chmod(temporary, mode)
            # Check again: the file may have appeared while the content was being written.
            _refuse_existing(path, overwrite)
            replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):  # never hide the error that stopped the write
                temporary.unlink()
            raise
    _fsync_folder(path.parent)
    remove_stale_parts(path)
    return path


def write_text_atomically(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """:func:`write_atomically` of ``text`` in UTF-8, with a failure said in words (:func:`explained_errors`)."""
    target = Path(path)
    with explained_errors(target, existed=target.exists()):
        return write_atomically(target, lambda stream: stream.write(text.encode("utf-8")), overwrite=overwrite)


def replace(source: str | os.PathLike, target: str | os.PathLike, *, named: str | os.PathLike | None = None) -> None:
    """``os.replace(source, target)``; on Windows, a file in use is waited for briefly, then named in plain words.

    Windows refuses to rename a file that a program holds open, or to rename over one (POSIX systems
    do both): the rename is tried again for about 1.5 s (an antivirus scan of a file just written ends
    by then), after which the error says which file is in use and what to do.

    Parameters
    ----------
    source, target : str or os.PathLike
        As for ``os.replace``.
    named : str or os.PathLike, optional
        The user's file or folder, named in the error (default ``target``).

    Raises
    ------
    FileInUseError
        On Windows, the rename was still refused after the last try; ``target`` is unchanged.
    """
    for pause in (*_IN_USE_PAUSES_S, None):
        try:
            os.replace(source, target)
            return
        except PermissionError as error:
            if sys.platform != "win32":
                raise  # a folder this process may not change: explain_write_error says so
            if pause is None:
                reason = error.strerror or "access denied"
                in_use = FileInUseError(in_use_message(Path(target if named is None else named), reason))
                in_use.errno = error.errno
                raise in_use from error
            time.sleep(pause)


def _create_temporary(path: Path) -> tuple[int, Path]:
    handle, name = tempfile.mkstemp(prefix=_part_prefix(path), suffix=_PART, dir=path.parent)
    return handle, Path(name)


def _part_prefix(path: Path) -> str:
    # Hidden and ending in ".part": file browsers, readers and globs for "*.nii.gz" skip it.
    return f".{path.name}."


def _fill(handle: int, write: Callable[[BinaryIO], object]) -> None:
    with os.fdopen(handle, "wb") as stream:
        write(stream)
        stream.flush()
        os.fsync(stream.fileno())


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        # os.replace would fail naming the hidden temporary file; say it plainly.
        raise IsADirectoryError(f"cannot write {path}: it is a folder; choose a file name.")
    if not overwrite and path.exists():
        raise FileExistsError(_EXISTS.format(path=path))


def new_file_mode(path: Path) -> int:
    """Permissions for a file written at ``path``: the old file's, else what a plain ``open()`` would give."""
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


def remove_stale_parts(target: str | os.PathLike, *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temporary files that interrupted writes of ``target`` left in its folder.

    Only files (and the folders of zarr stores) unchanged for ``older_than_s`` seconds go: a younger one may belong
    to a write still running in another process (a running write keeps touching
    its file). Files that cannot be inspected or removed are left alone.

    Parameters
    ----------
    target : str or os.PathLike
        The file whose leftovers (``.<name>.<random>.part``) are removed.
    older_than_s : float
        Minimum age, in seconds since the last modification.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    target = Path(target)
    prefix, cutoff = _part_prefix(target), time.time() - older_than_s
    removed = []
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(_PART) and _remove_if_older(entry, cutoff):
                removed.append(Path(entry.path))
    return removed


def _remove_if_older(entry: os.DirEntry, cutoff: float) -> bool:
    try:
        if entry.is_dir(follow_symlinks=False):
            # A zarr store being built: a running write keeps adding chunks deep inside, so its newest file counts.
            if _newest_change(entry.path) >= cutoff:
                return False
            shutil.rmtree(entry.path)
            return True
        if not entry.is_file(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= cutoff:
            return False
        os.unlink(entry.path)
    except OSError:  # gone already, or not ours to remove
        return False
    return True


def _newest_change(folder: str) -> float:
    newest = os.stat(folder, follow_symlinks=False).st_mtime
    for root, folders, files in os.walk(folder):
        for name in folders + files:
            newest = max(newest, os.stat(os.path.join(root, name), follow_symlinks=False).st_mtime)
    return newest


def make_folder_for(target: str | os.PathLike) -> None:
    """Create the folder of ``target`` (and its parents) if missing, with the messages of a failed write.

    Raises
    ------
    PermissionError
        A folder on the way cannot be created: the message names the folder that is not writable.
    """
    target = Path(target)
    with explained_errors(target, existed=False):
        target.parent.mkdir(parents=True, exist_ok=True)


def require_writable_folder(folder: str | os.PathLike, *, instead: str) -> None:
    """Create ``folder`` if missing, and refuse one where no file can be written, before long work meant for it.

    Raises
    ------
    PermissionError
        The folder (or one on the way to it) is not writable; the message names it and ``instead``, what
        the user can choose in its place (``"another --out-dir"``).
    """
    folder = Path(folder)
    with explained_errors(folder, existed=False):
        folder.mkdir(parents=True, exist_ok=True)
    if not accepts_files(folder):
        raise PermissionError(
            f"cannot write into {folder}: the folder is not writable; choose {instead} (or fix its permissions)."
        )


def accepts_files(folder: str | os.PathLike) -> bool:
    """Whether a file can be created in the existing ``folder``, found by creating (and removing) one.

    ``os.access`` cannot tell: on Windows it ignores folder permissions (a folder such as
    ``C:\\Program Files`` reads as writable), and on macOS it knows nothing of the privacy
    controls that keep a program out of Desktop, Documents or a removable disk.

    Raises
    ------
    OSError
        Creating the file failed for another reason than permissions (a full disk).
    """
    try:
        handle, name = tempfile.mkstemp(prefix=".napari-action-probe.", suffix=_PART, dir=folder)
    except OSError as error:
        if error.errno in NOT_WRITABLE:
            return False
        raise
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(name)
    return True


@contextlib.contextmanager
def explained_errors(target: str | os.PathLike, *, existed: bool) -> Iterator[None]:
    """Re-raise a failed write's OS error as one that says what is wrong and what to do.

    Errors :func:`explain_write_error` does not know pass unchanged.

    Parameters
    ----------
    target : str or os.PathLike
        The file or store being written, named in the message.
    existed : bool
        Whether ``target`` existed before the write (the message then says it is unchanged).
    """
    try:
        yield
    except Exception as error:
        explained = explain_write_error(error, Path(target), existed=existed)
        if explained is None:
            raise
        raise explained from error


def explain_write_error(error: BaseException, target: Path, *, existed: bool) -> OSError | None:
    """The error to show for a failed write of ``target``, or None if ``error`` is no known case.

    Known cases, found anywhere in the chain of causes (torch, for one, turns a
    failed write into a ``RuntimeError`` whose context is the ``OSError``):

    * ``ENOSPC``, ``EFBIG``, ``EDQUOT``: an ``OSError`` "could not write <target>:
      the disk is full or the file is too large (...); free some space and save
      again — <target> is unchanged" (the last part only if it existed);
    * ``EACCES``, ``EPERM``, ``EROFS``: a ``PermissionError`` (``OSError`` for
      ``EROFS``) "cannot write <target>: the folder <folder> is not writable
      (...); choose another folder (or fix its permissions)".

    The wording is :mod:`napari_action.io.errors`'s, named after ``target`` rather
    than the hidden temporary file the OS saw. The returned error keeps the
    ``errno`` of the cause.
    """
    if isinstance(error, FileInUseError):
        return None  # worded by replace() already: the folder is writable, the file is in use
    cause = os_error_in_chain(error)
    if cause is None:
        return None
    reason = cause.strerror or os.strerror(cause.errno)
    if cause.errno in DISK_FULL:
        message = disk_full_message(target, reason, existed=existed)
    elif cause.errno in NOT_WRITABLE:
        message = not_writable_message(target, reason)
    else:
        return None
    explained = (PermissionError if cause.errno in (errno.EACCES, errno.EPERM) else OSError)(message)
    explained.errno = cause.errno  # for callers that test it; the message alone is shown
    return explained
