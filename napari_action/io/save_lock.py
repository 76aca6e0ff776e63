"""One save of a store at a time, across processes: two napari windows saving one session take turns.

A session is saved by writing ``<name>.partial`` and switching it in with renames
(:mod:`napari_action.io.session_store`). Two processes doing that at once (two windows
autosaving into the same ``work.autosave.action.zarr``) removed each other's partial store
and backup halfway, and could leave no session at all under that name.

The lock is a hidden file beside the store, ``.<name>.lock``, locked with ``flock`` (POSIX)
or ``msvcrt.locking`` (Windows). The OS lets go of it when its process dies, so a crash
leaves no lock held. On POSIX the file is removed when the save is done.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["lock_path", "saving_alone"]


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in its folder."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def saving_alone(target: str | os.PathLike) -> Iterator[None]:
    """Hold ``target``'s lock for the block, waiting while another process (or thread) holds it.

    The folder of ``target`` must exist.

    Raises
    ------
    OSError
        The lock file cannot be created (a folder that is not writable).
    """
    lock = lock_path(target)
    handle = _acquire(lock)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # Windows keeps a file that is open; an empty one does no harm
            os.unlink(lock)  # still held here: whoever waits on this file finds it gone and locks a new one
        os.close(handle)


def _acquire(lock: Path) -> int:
    while True:
        handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _lock(handle)
            if _is_current(handle, lock):
                return handle
        except BaseException:
            os.close(handle)
            raise
        os.close(handle)  # the holder removed this file as it let go: lock the one now there


def _is_current(handle: int, lock: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle), os.stat(lock))
    except FileNotFoundError:
        return False


def _lock(handle: int) -> None:
    # By what the OS offers, not by its name: fcntl everywhere but on Windows.
    try:
        import fcntl
    except ImportError:
        import msvcrt

        msvcrt.locking(handle, msvcrt.LK_LOCK, 1)  # Windows tries for 10 s, then raises OSError
    else:
        fcntl.flock(handle, fcntl.LOCK_EX)
