"""Finding the autosave of an earlier window: what a user looks for after napari crashed.

Autosaves go into ``~/.napari-action/autosave``, a hidden folder that file dialogs do not show by
default. So the panel names the latest autosave there when it opens, and *Open session…* starts in
that folder until the user saves or opens a session elsewhere.

Every window autosaves to a store of its own, so the folder grows with every napari session (each
store holds label volumes, predictions and a model, and the voxels of images opened from no file:
a brain session is megabytes to tens of megabytes). :func:`prune_autosaves`
keeps every autosave of the last :data:`KEEP_DAYS` days and the :data:`KEEP_LATEST` latest beyond
them, and deletes the rest.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
from pathlib import Path

from napari_action.io.save_lock import lock_path
from napari_action.io.session_store import SESSION_SUFFIX, session_content, session_saved_at

__all__ = [
    "AUTOSAVE_ENV",
    "KEEP_DAYS",
    "KEEP_LATEST",
    "autosave_after_opening",
    "autosave_sibling",
    "default_autosave_dir",
    "latest_autosave",
    "new_autosave_path",
    "prune_autosaves",
    "release_claim",
    "recovery_hint",
    "session_dialog_folder",
]

logger = logging.getLogger(__name__)

#: Environment variable naming the default autosave folder (tests point it at a temporary folder).
AUTOSAVE_ENV = "NAPARI_ACTION_AUTOSAVE_DIR"


def default_autosave_dir() -> Path:
    """``$NAPARI_ACTION_AUTOSAVE_DIR``, else ``~/.napari-action/autosave``."""
    return Path(os.environ.get(AUTOSAVE_ENV) or Path.home() / ".napari-action" / "autosave")


#: Autosaves younger than this many days are never deleted.
KEEP_DAYS = 30
#: However old, this many of the latest autosaves are kept (a crash after a month away is still recoverable).
KEEP_LATEST = 10


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
    autosaving in the same second: each would replace the other's autosave).

    The name is claimed as it is chosen, by creating the store's folder (empty, as a save may find it):
    another window choosing before this one's first save has written anything finds it taken.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # the save that follows says why nothing can be written there
        return folder / f"{stamp}{SESSION_SUFFIX}"
    names = (
        f"{stamp}{SESSION_SUFFIX}" if count == 1 else f"{stamp}-{count}{SESSION_SUFFIX}" for count in itertools.count(1)
    )
    for path in (folder / name for name in names):
        if any(p.exists() for p in (path.with_name(f"{path.name}.partial"), lock_path(path))):
            continue
        try:
            path.mkdir()  # atomic: of two windows choosing this name, one creates it and the other finds it taken
        except FileExistsError:
            continue
        except OSError:  # the save that follows says why nothing can be written there
            pass
        return path
    raise AssertionError("itertools.count never ends")


def release_claim(claimed: Path) -> bool:
    """Remove the folder :func:`new_autosave_path` claimed for a save that failed; True if it went.

    Left, it stayed for good (no prune removes a store that says no time) and Open session… listed it among the
    autosaves. Only while empty: a folder something was written into since is not the claim's to remove.
    """
    try:
        claimed.rmdir()
    except OSError as error:
        logger.warning("kept %s after the failed autosave: %s", claimed, error)
        return False
    return True


def prune_autosaves(folder: Path, current: Path | None = None, now: float | None = None) -> list[Path]:
    """Delete the autosaves of ``folder`` older than :data:`KEEP_DAYS` days beyond the :data:`KEEP_LATEST`
    latest; return those deleted. Never ``current`` (this window's), one being written (its lock or its
    ``.partial`` beside it) or a store that says no time (not an autosave, or a damaged one: left to the user)."""
    now = time.time() if now is None else now
    try:
        candidates = [path for path in folder.iterdir() if path.name.endswith(SESSION_SUFFIX) and path != current]
    except OSError:
        return []
    dated = [(path, session_saved_at(path)) for path in candidates]
    dated = sorted(((path, when) for path, when in dated if when is not None), key=lambda item: -item[1])
    removed = []
    for path, when in dated[KEEP_LATEST:]:
        writing = lock_path(path).exists() or path.with_name(f"{path.name}.partial").exists()
        if now - when < KEEP_DAYS * 86400 or writing:
            continue
        try:
            shutil.rmtree(path)
        except OSError as error:  # another process holds it open (Windows), or no permission: keep it
            logger.warning("could not delete the old autosave %s: %s", path, error)
            continue
        removed.append(path)
    if removed:
        logger.info("deleted %d autosave(s) older than %d days: %s", len(removed), KEEP_DAYS, removed)
    return removed


def autosave_sibling(path: str | Path) -> Path:
    """Autosave store next to a session the user saved or opened: ``work.autosave.action.zarr``."""
    path = Path(path)
    stem = path.name.removesuffix(SESSION_SUFFIX).removesuffix(".zarr")
    return path.with_name(f"{stem}.autosave{SESSION_SUFFIX}")


def autosave_after_opening(opened: Path, saved_at: float) -> tuple[Path, str | None]:
    """Where to autosave after opening the session ``opened`` (saved at ``saved_at``), and what to tell the user.

    Its sibling (:func:`autosave_sibling`), unless an autosave beside it (the sibling, or ``-2``, ``-3``… that
    earlier openings went to) is newer than the session: work done after the last save, before a crash. The
    next autosave would replace it; it goes to a free name instead, and the user is told where the newest is.
    """
    sibling = autosave_sibling(opened)
    stem = sibling.name.removesuffix(SESSION_SUFFIX)
    numbered = (sibling.with_name(f"{stem}-{number}{SESSION_SUFFIX}") for number in itertools.count(2))
    taken = [sibling, *itertools.takewhile(Path.exists, numbered)]
    # An autosave of the very work the session holds (saved, then autosaved unchanged) is no work to get back.
    kept = session_content(opened)
    dated = [
        (when, path)
        for path in taken
        if (when := session_saved_at(path)) is not None and (kept is None or session_content(path) != kept)
    ]
    newer, newest = max(dated, default=(None, sibling), key=lambda item: item[0])
    if newer is None or newer <= saved_at:
        return sibling, None
    free = sibling.with_name(f"{stem}-{len(taken) + 1}{SESSION_SUFFIX}")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(newer))
    message = (
        f"{newest.name} beside this session holds an autosave from {when}, newer than the session: work "
        f"since your last save. Open it (Open session…) to get that work back; it is kept, and autosaves "
        f"now go to {free.name}."
    )
    return free, message
