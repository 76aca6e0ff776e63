"""Finding the autosave of an earlier window: what a user looks for after napari crashed.

Autosaves go into ``~/.napari-action/autosave``, a hidden folder that file dialogs do not show by
default. So the panel names the latest autosave there when it opens, and *Open session…* starts in
that folder until the user saves or opens a session elsewhere.
"""

from __future__ import annotations

import time
from pathlib import Path

from napari_action.io.save_lock import lock_path
from napari_action.io.session_store import SESSION_SUFFIX, session_saved_at

__all__ = ["latest_autosave", "new_autosave_path", "recovery_hint", "session_dialog_folder"]


def latest_autosave(folder: Path) -> tuple[Path, float] | None:
    """The most recently saved session store in ``folder`` and when it was saved; None if it holds none."""
    try:
        candidates = [path for path in folder.iterdir() if path.name.endswith(SESSION_SUFFIX)]
    except OSError:  # no autosave folder yet (a first start), or one that cannot be listed
        return None
    saved = [(path, session_saved_at(path)) for path in candidates]
    complete = [(path, when) for path, when in saved if when is not None]
    return max(complete, key=lambda item: item[1], default=None)


def recovery_hint(folder: Path, now: float | None = None) -> str | None:
    """One line naming the latest autosave in ``folder`` and how to open it; None without one."""
    found = latest_autosave(folder)
    if found is None:
        return None
    path, saved_at = found
    return f"The latest autosave is {path.name}, from {_when(saved_at, now)}: Open session… starts in its folder."


def _when(saved_at: float, now: float | None) -> str:
    now = time.time() if now is None else now
    same_day = time.strftime("%Y%m%d", time.localtime(saved_at)) == time.strftime("%Y%m%d", time.localtime(now))
    return time.strftime("today %H:%M" if same_day else "%Y-%m-%d %H:%M", time.localtime(saved_at))


def session_dialog_folder(last_used: Path | None, autosave_folder: Path) -> Path:
    """Where *Open session…* starts: the folder of the session last saved or opened here, else the autosaves'
    folder when it holds one, else the current folder."""
    if last_used is not None:
        return last_used
    return autosave_folder if latest_autosave(autosave_folder) is not None else Path.cwd()


def new_autosave_path(folder: Path, stamp: str) -> Path:
    """``<folder>/<stamp>.action.zarr``, or ``<stamp>-2…`` when that name is taken (another window started
    autosaving in the same second: each would replace the other's autosave)."""
    path, count = folder / f"{stamp}{SESSION_SUFFIX}", 1
    while any(p.exists() for p in (path, path.with_name(f"{path.name}.partial"), lock_path(path))):
        count += 1
        path = folder / f"{stamp}-{count}{SESSION_SUFFIX}"
    return path
