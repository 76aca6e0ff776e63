"""Errors in plain words: one sentence that names the path, says what is wrong and what to do.

Every front end shows an error through :func:`describe_error`: the command line
prints it, the napari widget puts it in its notifications and status lines, so
one failure reads the same wherever it happens. The operating system's errors
(an ``OSError`` carrying an ``errno``) are reworded by family instead of
printed as "[Errno 17] File exists: '…'":

* a file where a folder is needed, or a folder where a file is needed;
* a file in the middle of a path (``scans.txt/out``);
* a path that does not exist;
* no permission, a read-only disk;
* a full disk (or a file over the size limit).

Errors the project raises itself carry plain messages already and are shown as
they are. Code that wraps an OS error in an error of its own (a checkpoint that
cannot be read) takes the message from :func:`describe_os_error`; code that
re-raises one keeps its type and ``errno`` with :func:`plain_os_error`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from napari_action import __version__

__all__ = [
    "DISK_FULL",
    "NOT_WRITABLE",
    "FileInUseError",
    "describe_errno",
    "describe_error",
    "describe_os_error",
    "disk_full_message",
    "in_use_message",
    "is_raw_os_error",
    "nearest_existing",
    "not_writable_message",
    "os_error_in_chain",
    "path_error",
    "plain_os_error",
    "written_by_newer",
]

#: ``errno`` codes of a write that found no room: full disk, file over the size limit, quota.
DISK_FULL = frozenset(code for code in (errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", None)) if code is not None)
#: ``errno`` codes of a location this process may not change.
NOT_WRITABLE = frozenset((errno.EACCES, errno.EPERM, errno.EROFS))
_NO_PATH = "the file"


class FileInUseError(PermissionError):
    """Windows refused to replace or move a file, or a folder, that a program holds open (:func:`in_use_message`)."""


def describe_error(error: BaseException, path: str | os.PathLike | None = None) -> str:
    """The text to show the user for ``error``: one sentence, no ``errno`` numbers, no library internals.

    Parameters
    ----------
    error : BaseException
        What went wrong.
    path : str or os.PathLike, optional
        The file or folder being used, named when the OS's error names none
        (a write that fills the disk half-way names no file).

    Returns
    -------
    str
        The OS's errors in plain words (see :func:`describe_errno`); the project's own
        ``ValueError`` and ``OSError`` messages as they are; for any other error, the OS
        error that caused it if there is one, else its own message.
    """
    if is_raw_os_error(error):
        return describe_os_error(error, path)
    text = str(error)
    if isinstance(error, ValueError | OSError) and text:
        return text  # raised by this project (or reworded already): plain words
    cause = os_error_in_chain(error)
    if cause is not None:  # e.g. torch turns a failed write into a RuntimeError
        return describe_os_error(cause, path)
    return text or type(error).__name__


def is_raw_os_error(error: BaseException) -> bool:
    """True for an ``OSError`` as the OS raised it (``errno`` and ``strerror`` set), not yet reworded."""
    return isinstance(error, OSError) and error.errno is not None and error.strerror is not None


def os_error_in_chain(error: BaseException) -> OSError | None:
    """The first raw OS error among ``error`` and its causes (``__cause__``, ``__context__``), or None."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if is_raw_os_error(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def describe_os_error(error: OSError, path: str | os.PathLike | None = None) -> str:
    """An OS error in plain words; the path it names is the OS's own, else ``path``."""
    named = _filename(error)
    where = named if named is not None else (Path(path) if path is not None else None)
    return describe_errno(error.errno, where, error.strerror or os.strerror(error.errno))


def plain_os_error(error: OSError, path: str | os.PathLike | None = None) -> OSError:
    """``error`` reworded by :func:`describe_os_error`: same type and ``errno``, for ``raise ... from error``."""
    plain = type(error)(describe_os_error(error, path))
    plain.errno = error.errno  # for callers that test it; the message alone is shown
    return plain


def path_error(code: int, path: str | os.PathLike) -> OSError:
    """The error the OS would raise for ``code`` on ``path``, in plain words (for problems found by looking first)."""
    return plain_os_error(OSError(code, os.strerror(code), os.fspath(path)))


def describe_errno(code: int, path: Path | None, reason: str) -> str:
    """One sentence for the ``errno`` ``code`` met at ``path``; ``reason`` is the OS's wording (no number).

    Parameters
    ----------
    code : int
        The ``errno`` code.
    path : pathlib.Path or None
        The file or folder concerned; None when unknown.
    reason : str
        The OS's short description ("No space left on device"), used where one family
        covers several codes and for codes without a family.
    """
    family = _FAMILIES.get(code)
    if family is not None:
        return family(path, code, reason)
    return f"{_name(path)}: {reason[:1].lower()}{reason[1:]}; check the path and try again."


def disk_full_message(target: Path | None, reason: str, *, existed: bool = False) -> str:
    """A write of ``target`` found no room; ``existed``: a previous file at ``target`` is unchanged."""
    unchanged = f" — {target} is unchanged" if existed and target is not None else ""
    return (
        f"could not write {_name(target)}: the disk is full or the file is too large ({reason}); "
        f"free some space and save again{unchanged}."
    )


def not_writable_message(target: Path | None, reason: str) -> str:
    """``target`` cannot be created or replaced: its nearest existing folder is not writable."""
    if target is None:
        return f"cannot write {_NO_PATH}: its folder is not writable ({reason}); choose another folder."
    return (
        f"cannot write {target}: the folder {nearest_existing(target.parent)} is not writable "
        f"({reason}); choose another folder (or fix its permissions)."
    )


def in_use_message(target: Path, reason: str) -> str:
    """Windows refused to replace ``target`` (a file, or a folder with a file in it, open in a program)."""
    what = "a file in it is open" if os.path.isdir(target) else "it is open"
    return (
        f"cannot replace {target}: Windows refused ({reason}) because {what} in another program (another "
        "napari, a viewer) or marked read-only; close it there and save again, or choose another name. "
        f"{target} is unchanged."
    )


def written_by_newer(path: str | os.PathLike, version: object) -> str:
    """``path`` holds a format this version cannot read: upgrading is the remedy."""
    return (
        f"{path} was written by napari-action {version}, newer than this one ({__version__}); "
        "upgrade napari-action (pip install --upgrade napari-action) to open it."
    )


def nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists (a missing folder cannot be created when that one is locked)."""
    while not os.path.exists(folder) and folder != folder.parent:
        folder = folder.parent
    return folder


# -- the families ----------------------------------------------------------------------------
def _already_exists(path: Path | None, code: int, reason: str) -> str:
    if path is None:
        return "a file or folder of that name already exists; choose another name."
    if os.path.lexists(path) and not os.path.isdir(path):
        return _file_where_folder_needed(path)
    return f"{path} already exists; choose another name, or move it away first."


def _folder_where_file_needed(path: Path | None, code: int, reason: str) -> str:
    if path is None:
        return "a folder was given where a file is needed; give the path of a file."
    return f"{path} is a folder, but a file is needed there; give the path of a file."


def _file_on_the_way(path: Path | None, code: int, reason: str) -> str:
    blocking = _first_file_on(path) if path is not None else None
    if blocking is None:
        return f"{_name(path)} cannot be used: part of its path is a file, not a folder; check the path."
    if blocking == path:
        return _file_where_folder_needed(path)
    return f"{path} cannot be used: {blocking} is a file, not a folder; choose another path, or move {blocking} away."


def _missing(path: Path | None, code: int, reason: str) -> str:
    if path is None:
        return "a file or folder does not exist; check the path."
    missing_folder = _first_missing_folder(path)
    if missing_folder is not None:
        return f"{path} does not exist: there is no folder {missing_folder}; check the path (or create the folder)."
    return f"{path} does not exist; check its name and the folder it is in."


def _not_permitted(path: Path | None, code: int, reason: str) -> str:
    if path is None or code == errno.EROFS or not os.path.lexists(path):
        # Nothing there yet: the folder it would be created in refused it.
        return not_writable_message(path, reason)
    return f"cannot open {path}: you do not have permission ({reason}); fix its permissions, or use a copy you own."


def _no_room(path: Path | None, code: int, reason: str) -> str:
    return disk_full_message(path, reason)


def _name_too_long(path: Path | None, code: int, reason: str) -> str:
    return f"{_name(path)}: the name is too long for this disk; choose a shorter name or a folder nearer the top."


def _device_failed(path: Path | None, code: int, reason: str) -> str:
    return (
        f"{_name(path)} could not be read or written: the disk or network share reported an error ({reason}); "
        "check that it is still connected and try again."
    )


_Family = Callable[[Path | None, int, str], str]
_FAMILIES: dict[int, _Family] = {
    errno.EEXIST: _already_exists,
    errno.EISDIR: _folder_where_file_needed,
    errno.ENOTDIR: _file_on_the_way,
    errno.ENOENT: _missing,
    errno.ENAMETOOLONG: _name_too_long,
    errno.EIO: _device_failed,
    **dict.fromkeys(NOT_WRITABLE, _not_permitted),
    **dict.fromkeys(DISK_FULL, _no_room),
}


# -- helpers ---------------------------------------------------------------------------------
def _file_where_folder_needed(path: Path) -> str:
    return f"{path} is a file, but a folder is needed there; give the path of a folder, or move the file away."


def _first_file_on(path: Path) -> Path | None:
    """The outermost part of ``path`` (``path`` itself included) that exists and is not a folder."""
    for part in (*reversed(path.parents), path):
        if os.path.lexists(part) and not os.path.isdir(part):
            return part
    return None


def _first_missing_folder(path: Path) -> Path | None:
    """The outermost folder above ``path`` that does not exist (None when its folder exists)."""
    for folder in reversed(path.parents):
        if not os.path.lexists(folder):
            return folder
    return None


def _filename(error: OSError) -> Path | None:
    name = error.filename
    if isinstance(name, str | bytes | os.PathLike):  # not a file descriptor (an int)
        return Path(os.fsdecode(name))
    return None


def _name(path: Path | None) -> str:
    return str(path) if path is not None else _NO_PATH
