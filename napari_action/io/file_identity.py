"""One file however it is named: ``./scan.nii.gz``, its absolute path, a symlink or a hard link to it."""

from __future__ import annotations

import os


def file_identity(path: str | os.PathLike) -> object:
    """What one file is known by however it is named: the OS's device and inode, or the absolute path of a file
    that does not exist (reading it will say so). Two paths name one file when their identities are equal."""
    try:
        status = os.stat(path)
    except OSError:
        return os.path.abspath(path)
    return (status.st_dev, status.st_ino)
