"""Windows' file locking, simulated at the OS boundary: what a rename meets there that Linux never shows.

Windows refuses to rename a file that a program holds open, or to rename another file over it:
``os.replace`` raises ``PermissionError`` ("Access is denied", or "being used by another
process"). A folder with an open file in it cannot be renamed either.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path


def windows_locks(monkeypatch, is_open: Callable[[Path], bool], *, opened_for: int | None = None) -> list[tuple]:
    """Run as on Windows: ``os.replace`` refuses to move or replace a path for which ``is_open`` says True.

    Parameters
    ----------
    monkeypatch : pytest.MonkeyPatch
    is_open : callable
        Whether a path (a rename's source or target) is held open by some program.
    opened_for : int, optional
        Refuse only this many renames, then let them through (an antivirus scan that ends).

    Returns
    -------
    list of tuple
        Every rename tried, ``(source, target)``, in order; the waits between tries take no time.
    """
    real_replace, tried = os.replace, []

    def replace(source, target, *args, **kwargs):
        tried.append((Path(source), Path(target)))
        refused = sum(1 for pair in tried if _held(pair, is_open)) - 1
        if _held(tried[-1], is_open) and (opened_for is None or refused < opened_for):
            raise PermissionError(errno.EACCES, "Access is denied", os.fspath(source), 5, os.fspath(target))
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return tried


def _held(pair: tuple[Path, Path], is_open: Callable[[Path], bool]) -> bool:
    source, target = pair
    return is_open(source) or (target.exists() and is_open(target))
