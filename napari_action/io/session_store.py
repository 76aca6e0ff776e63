"""Sessions on disk: one zarr (v3) store that survives a crash.

A session holds everything a user would hate to lose: the painted labels,
accepted slices, prediction layers with their record of edited voxels, class
names, the model checkpoint, the training config and seed, and references to
the source images (path plus a SHA-256 of the file, or of the files of a zarr store, to notice
a changed source).

Saving is crash-safe: the new store is written next to the old one (``<name>.partial``)
and only then switched in with renames. At every instant one complete session exists on
disk — the old one until the switch, the new one after it. If a crash falls between the
two renames, :func:`load_session` finds the previous session under its backup name
(``<name>.previous``); a killed save's partial store is removed by the next save. Two
processes saving one store take turns (:mod:`napari_action.io.save_lock`).

A save that fails (folder not writable, disk full) removes its partial store and raises
an error that says what to do (the messages of :mod:`napari_action.io.atomic`). A save
replaces an existing session but nothing else: a file or a non-empty folder of that name
that is not a napari-action session is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_action import __version__
from napari_action.io.atomic import explained_errors, make_folder_for, replace
from napari_action.io.errors import describe_os_error, os_error_in_chain, written_by_newer
from napari_action.io.save_lock import saving_alone

if TYPE_CHECKING:  # zarr and torch are imported only when a store is read or written
    import zarr

    from napari_action.io.checkpoint import Checkpoint

FORMAT = "napari-action-session"
FORMAT_VERSION = 1
#: How a session store's folder is named (``work.action.zarr``), so that file dialogs and readers tell it apart.
SESSION_SUFFIX = ".action.zarr"
_BACKUP = ".previous"
_PARTIAL = ".partial"


class SessionError(ValueError):
    """A folder that is not a session, or a damaged one."""


@dataclass
class SessionVolume:
    """One opened volume and everything made on it."""

    name: str
    shape: tuple[int, ...]
    meta: dict[str, Any] | None = None
    source_path: str | None = None
    source_sha256: str | None = None
    painted: np.ndarray | None = None
    prediction: np.ndarray | None = None
    edited: np.ndarray | None = None
    accepted_slices: list[int] = field(default_factory=list)
    image: np.ndarray | None = None


@dataclass
class Session:
    """What a session store holds."""

    volumes: list[SessionVolume]
    class_names: dict[int, str] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    axis: int | None = None
    checkpoint: bytes | None = None
    saved_at: float = 0.0
    version: str = ""

    def volume(self, name: str) -> SessionVolume:
        for volume in self.volumes:
            if volume.name == name:
                return volume
        raise KeyError(name)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, or of a folder's (a zarr store: each file's path in it and bytes), to
    detect a source image changed since saving."""
    digest = hashlib.sha256()
    for relative, member in _members(Path(path)):
        if relative is not None:
            digest.update(f"{relative}\0{member.stat().st_size}\0".encode())
        with open(member, "rb") as stream:
            while block := stream.read(chunk):
                digest.update(block)
    return digest.hexdigest()


def _members(path: Path) -> list[tuple[str | None, Path]]:
    """``[(None, path)]`` for a file; for a folder, every file in it under its relative path, sorted."""
    if not path.is_dir():
        return [(None, path)]
    return sorted((member.relative_to(path).as_posix(), member) for member in path.rglob("*") if member.is_file())


class HashCache:
    """SHA-256 of source files (and zarr stores), recomputed only when a file's size or mtime changed.

    Saving a session every minute would otherwise re-read every source image each time.
    """

    def __init__(self):
        self._known: dict[tuple, str] = {}

    def sha256(self, path: str | os.PathLike) -> str:
        """The SHA-256 of :func:`file_sha256`, hashed again only if the size or mtime of a file in it changed."""
        key = _cache_key(path)
        if key not in self._known:
            self._known[key] = file_sha256(path)
        return self._known[key]

    def known(self, path: str | os.PathLike) -> str | None:
        """The SHA-256 :meth:`sha256` gave for ``path`` as it is now; None if it has not hashed it since it changed
        (never reads the file: an export must not read a scan of gigabytes to name it)."""
        try:
            return self._known.get(_cache_key(path))
        except OSError:  # gone or unreadable since
            return None


def _cache_key(path: str | os.PathLike) -> tuple:
    """What :class:`HashCache` knows a file's hash by: its path, and the size and mtime of each file in it."""
    return (str(path), *((name, *_size_and_time(member)) for name, member in _members(Path(path))))


def _size_and_time(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns


def save_session(path: str | os.PathLike, session: Session, *, content: str | None = None) -> Path:
    """Write ``session`` to the zarr store ``path`` (a folder, e.g. ``work.action.zarr``).

    An existing session at ``path`` is replaced (autosave writes the same store
    again and again; the save dialog asks the user first); missing folders are created.

    Parameters
    ----------
    path : str or os.PathLike
        The store (a folder).
    session : Session
        What to write.
    content : str, optional
        :func:`content_sha256` of ``session``, when the caller has it already (hashing every array twice
        cost an autosave that first checked whether anything changed).

    Returns
    -------
    Path
        The store.

    Raises
    ------
    FileExistsError
        ``path`` is a file, or a non-empty folder that is not a napari-action session.
    PermissionError
        The folder is not writable; the message names it and says what to do.
    OSError
        The disk is full or another write failure. In every case the session at
        ``path`` is unchanged and the partial store is removed.
    """
    path = Path(path)
    _refuse_to_replace(path)
    make_folder_for(path)
    partial = path.with_name(path.name + _PARTIAL)
    # Another process saving the same store (a second window's autosave) finishes first: its partial
    # store and backup are not this save's to remove.
    # An empty folder (an autosave's claimed name) holds nothing a failed save could leave "unchanged".
    kept = os.path.exists(path) and not (path.is_dir() and not any(path.iterdir()))
    with explained_errors(path, existed=kept), saving_alone(path):
        shutil.rmtree(partial, ignore_errors=True)  # what a killed save left behind
        try:
            _write_store(partial, session, content or content_sha256(session))
            _switch_in(partial, path)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return path


def is_session_store(path: str | os.PathLike) -> bool:
    """True if ``path`` is a complete napari-action session store (its metadata says so)."""
    return _session_attributes(path) is not None


def session_saved_at(path: str | os.PathLike) -> float | None:
    """When the session store at ``path`` was saved (seconds since the epoch); None if there is none."""
    attributes = _session_attributes(path)
    try:
        return None if attributes is None else float(attributes["saved_at"])
    except (KeyError, TypeError, ValueError):
        return None


def _session_attributes(path: str | os.PathLike) -> dict[str, Any] | None:
    """The attributes of the session store at ``path`` from its metadata alone; None if it is no session."""
    try:
        attributes = json.loads((Path(path) / "zarr.json").read_text(encoding="utf-8"))["attributes"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return attributes if isinstance(attributes, dict) and attributes.get("format") == FORMAT else None


def session_content(path: str | os.PathLike) -> str | None:
    """:func:`content_sha256` of the session store at ``path`` as it was written; None if there is none (no
    session, or one saved before the digest)."""
    attributes = _session_attributes(path)
    content = None if attributes is None else attributes.get("content_sha256")
    return content if isinstance(content, str) else None


def content_sha256(session: Session) -> str:
    """A digest of what ``session`` keeps (every array, the model, the volumes' records, the options), not of
    when it was saved: two saves of the same work give the same text."""
    digest = hashlib.sha256()
    settings = [session.axis, session.config, {str(k): v for k, v in session.class_names.items()}]
    records = [settings, [_volume_attrs(v) for v in session.volumes]]
    digest.update(json.dumps(records, sort_keys=True, default=str).encode())
    for volume in session.volumes:
        for name in ("painted", "prediction", "edited", "image"):
            data = getattr(volume, name)
            if data is not None:
                array = np.ascontiguousarray(data)
                digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
                digest.update(array.view(np.uint8).reshape(-1).data if array.size else b"")
    digest.update(session.checkpoint or b"")
    return digest.hexdigest()


def _refuse_to_replace(path: Path) -> None:
    # Switching a store in removes what was there: never a file or folder of the user's.
    if not os.path.exists(path) or is_session_store(path) or (path.is_dir() and not any(path.iterdir())):
        return
    raise FileExistsError(
        f"cannot save the session to {path}: it exists and is not a napari-action session; "
        f"choose another name. {path} is unchanged."
    )


def _write_store(partial: Path, session: Session, content: str) -> None:
    import zarr  # ~0.3 s to import: loaded when a session is first written or read, not with the widget

    group = zarr.open_group(str(partial), mode="w", zarr_format=3)
    for index, volume in enumerate(session.volumes):
        _write_volume(group, index, volume)
    if session.checkpoint is not None:
        _write_array(group, "checkpoint", np.frombuffer(session.checkpoint, dtype=np.uint8))
    group.attrs.update(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": __version__,
            "saved_at": time.time(),
            "content_sha256": content,
            "axis": session.axis,
            "config": session.config,
            "class_names": {str(k): v for k, v in session.class_names.items()},
            "volumes": [_volume_attrs(v) for v in session.volumes],
        }
    )


def _write_array(group: zarr.Group, name: str, data: np.ndarray) -> None:
    group.create_array(name, data=np.ascontiguousarray(data), chunks=_chunks(data.shape))


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    # Blocks of up to 64 whole planes along the first axis (a volume is a
    # handful of files); flat byte arrays in 4 MiB pieces.
    if len(shape) <= 1:
        return (min(shape[0], 1 << 22),) if shape else ()
    return (min(shape[0], 64), *shape[1:])


def _write_volume(group: zarr.Group, index: int, volume: SessionVolume) -> None:
    for name in ("painted", "prediction", "edited", "image"):
        data = getattr(volume, name)
        if data is not None:
            _write_array(group, f"volumes/{index}/{name}", np.asarray(data))


def _volume_attrs(volume: SessionVolume) -> dict[str, Any]:
    return {
        "name": volume.name,
        "shape": list(volume.shape),
        "meta": volume.meta,
        "source_path": volume.source_path,
        "source_sha256": volume.source_sha256,
        "accepted_slices": [int(s) for s in volume.accepted_slices],
    }


def _switch_in(partial: Path, path: Path) -> None:
    backup = path.with_name(path.name + _BACKUP)
    if path.exists():
        # Make room for the current session as backup (a non-empty folder cannot be
        # renamed over). Without a current one, a backup left by a crash stays until
        # the new store is in: it may be the only complete session.
        shutil.rmtree(backup, ignore_errors=True)
        replace(path, backup, named=path)
    replace(partial, path)
    shutil.rmtree(backup, ignore_errors=True)


def load_session(path: str | os.PathLike) -> Session:
    """Read a session store; fall back to the backup a crash mid-switch left behind.

    Raises
    ------
    SessionError
        ``path`` is no session, was written by a newer napari-action, cannot be opened, or is
        damaged (a chunk that cannot be decoded); the message names the store and says what to do.
    """
    import zarr  # see save_session

    path = Path(path)
    backup = path.with_name(path.name + _BACKUP)
    source = path if (path / "zarr.json").is_file() else backup
    if not (source / "zarr.json").is_file():
        raise SessionError(f"{path} is not a napari-action session (no zarr store found).")
    try:
        group = zarr.open_group(str(source), mode="r")
        attrs = dict(group.attrs)
    except Exception as error:  # zarr raises several kinds on damaged metadata
        refused = os_error_in_chain(error)  # or the OS refused to open it: say that, not "damaged"
        message = describe_os_error(refused, path) if refused else f"{path} cannot be read as a session: {error}"
        raise SessionError(message) from error
    if attrs.get("format") != FORMAT:
        raise SessionError(f"{path} is a zarr store but not a napari-action session.")
    if attrs.get("format_version", 0) > FORMAT_VERSION:
        raise SessionError(written_by_newer(path, attrs.get("version")))
    try:
        volumes = [_read_volume(group, i, a) for i, a in enumerate(attrs["volumes"])]
        checkpoint = _read_bytes(group, "checkpoint")
    except MemoryError:  # a session too large for this machine: no fault of the store
        raise
    except Exception as error:  # a damaged chunk: zarr's codecs raise RuntimeError, ValueError, ...
        refused = os_error_in_chain(error)
        if refused is not None:
            raise SessionError(describe_os_error(refused, path)) from error
        raise SessionError(
            f"{path}: part of the session cannot be read ({type(error).__name__}: {error}); the store is damaged "
            "or incomplete. Open a copy of it, or its autosave, instead."
        ) from error
    return Session(
        volumes=volumes,
        class_names={int(k): v for k, v in (attrs.get("class_names") or {}).items()},
        config=attrs.get("config"),
        axis=attrs.get("axis"),
        checkpoint=checkpoint,
        saved_at=float(attrs.get("saved_at", 0.0)),
        version=str(attrs.get("version", "")),
    )


def _read_volume(group: zarr.Group, index: int, attrs: dict[str, Any]) -> SessionVolume:
    arrays = {}
    for name in ("painted", "prediction", "edited", "image"):
        key = f"volumes/{index}/{name}"
        arrays[name] = group[key][...] if key in group else None
    return SessionVolume(
        name=attrs["name"],
        shape=tuple(attrs["shape"]),
        meta=attrs.get("meta"),
        source_path=attrs.get("source_path"),
        source_sha256=attrs.get("source_sha256"),
        accepted_slices=list(attrs.get("accepted_slices", [])),
        **arrays,
    )


def _read_bytes(group: zarr.Group, name: str) -> bytes | None:
    return group[name][...].tobytes() if name in group else None


def source_changed(volume: SessionVolume) -> bool | None:
    """True if the source file (or zarr store) changed since saving, None if it cannot be checked."""
    if not volume.source_path or not volume.source_sha256 or not Path(volume.source_path).exists():
        return None
    return file_sha256(volume.source_path) != volume.source_sha256


def checkpoint_to_bytes(checkpoint: Checkpoint) -> bytes:
    """Serialise a :class:`~napari_action.io.checkpoint.Checkpoint` for a session store."""
    from napari_action.io.checkpoint import save_checkpoint  # torch: loaded only when a model is stored

    with _scratch_file() as scratch:
        save_checkpoint(scratch, checkpoint)
        return scratch.read_bytes()


def checkpoint_from_bytes(data: bytes, session: str | os.PathLike | None = None) -> Checkpoint:
    """Inverse of :func:`checkpoint_to_bytes`.

    A model that cannot be read raises :class:`~napari_action.io.checkpoint.CheckpointError` naming
    "the model stored in ``session``" (the store it came from), not the temporary file it was read through.
    """
    from napari_action.io.checkpoint import CheckpointError, load_checkpoint  # torch: see checkpoint_to_bytes

    with _scratch_file() as scratch:
        scratch.write_bytes(data)
        try:
            return load_checkpoint(scratch)
        except CheckpointError as error:
            named = "the model stored in the session" if session is None else f"the model stored in {session}"
            raise CheckpointError(str(error).replace(str(scratch), named)) from error.__cause__


@contextlib.contextmanager
def _scratch_file() -> Iterator[Path]:
    # torch.save/load want a file; a private temporary one is removed afterwards.
    handle, name = tempfile.mkstemp(suffix=".pt")
    os.close(handle)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


__all__ = [
    "SESSION_SUFFIX",
    "HashCache",
    "Session",
    "SessionError",
    "SessionVolume",
    "checkpoint_from_bytes",
    "checkpoint_to_bytes",
    "content_sha256",
    "file_sha256",
    "is_session_store",
    "load_session",
    "save_session",
    "session_content",
    "source_changed",
]
