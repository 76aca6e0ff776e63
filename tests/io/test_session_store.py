"""Session stores: full round trip, changed sources, and saves that fail.

Failures are real (see :mod:`tests.helpers.os_limits`): a folder the child process may
not write into, a file size limit that makes writes fail as on a full disk, a SIGKILL.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_action.io.checkpoint import CheckpointError
from napari_action.io.session_store import (
    HashCache,
    Session,
    SessionError,
    SessionVolume,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
    content_sha256,
    file_sha256,
    is_session_store,
    load_session,
    save_session,
    session_content,
    source_changed,
)
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config
from tests.helpers.os_limits import Outcome, read_only, run_save, start_save
from tests.helpers.windows import windows_locks


def _session(seed: int = 0, checkpoint: bytes | None = None) -> Session:
    rng = np.random.default_rng(seed)
    painted = rng.integers(0, 3, (20, 24, 6)).astype(np.uint8)
    prediction = rng.integers(0, 3, (20, 24, 6)).astype(np.uint8)
    edited = rng.random((20, 24, 6)) > 0.9
    volume = SessionVolume(
        name="scan",
        shape=(20, 24, 6),
        meta={"affine": np.eye(4).tolist()},
        source_path="/data/scan.nii.gz",
        source_sha256="ab" * 32,
        painted=painted,
        prediction=prediction,
        edited=edited,
        accepted_slices=[1, 4],
    )
    unlabeled = SessionVolume(name="other", shape=(8, 8, 3), image=rng.random((8, 8, 3)).astype(np.float32))
    return Session(
        volumes=[volume, unlabeled],
        class_names={1: "core", 2: "ring"},
        config={"seed": seed},
        axis=2,
        checkpoint=checkpoint,
    )


def _assert_same(a: Session, b: Session) -> None:
    assert a.class_names == b.class_names and a.config == b.config and a.axis == b.axis
    assert a.checkpoint == b.checkpoint
    for va, vb in zip(a.volumes, b.volumes, strict=True):
        assert (va.name, va.shape, va.meta, va.source_path, va.source_sha256, va.accepted_slices) == (
            vb.name,
            vb.shape,
            vb.meta,
            vb.source_path,
            vb.source_sha256,
            vb.accepted_slices,
        )
        for name in ("painted", "prediction", "edited", "image"):
            x, y = getattr(va, name), getattr(vb, name)
            assert (x is None) == (y is None), name
            if x is not None:
                np.testing.assert_array_equal(x, y)
                assert x.dtype == y.dtype


def test_round_trip(tmp_path):
    session = _session(checkpoint=b"\x00\x01weights")
    save_session(tmp_path / "work.action.zarr", session)
    _assert_same(session, load_session(tmp_path / "work.action.zarr"))


def test_saving_again_replaces_the_session_and_leaves_no_debris(tmp_path):
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    save_session(path, _session(1))
    _assert_same(_session(1), load_session(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.action.zarr"]


def test_on_windows_a_session_with_a_file_open_elsewhere_is_kept_and_named(tmp_path, monkeypatch):
    # Windows renames no folder with a file open in it (another napari reading the session).
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    windows_locks(monkeypatch, lambda folder: folder == path)
    with pytest.raises(PermissionError, match=r"cannot replace .*work\.action\.zarr: Windows refused .* a file in it"):
        save_session(path, _session(1))
    _assert_same(_session(0), load_session(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.action.zarr"]


def test_checkpoint_inside_the_session(tmp_path):
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(method="supervised"))
    trainer.train()
    save_session(tmp_path / "s.zarr", _session(checkpoint=checkpoint_to_bytes(trainer.checkpoint())))
    restored = checkpoint_from_bytes(load_session(tmp_path / "s.zarr").checkpoint)
    assert restored.class_values == [0, 1, 2] and restored.step == trainer.step


def test_a_stored_model_that_cannot_be_read_is_named_by_its_session_not_a_temporary_file(tmp_path):
    # It was read through a temporary file, which the message named ("/tmp/tmpx1y2.pt is a damaged ...").
    cut_short = checkpoint_to_bytes(_trained_checkpoint())[:1000]
    save_session(tmp_path / "s.zarr", _session(checkpoint=cut_short))
    with pytest.raises(CheckpointError) as refused:
        checkpoint_from_bytes(load_session(tmp_path / "s.zarr").checkpoint, tmp_path / "s.zarr")
    assert str(refused.value).startswith(f"the model stored in {tmp_path / 's.zarr'} is a damaged or truncated")
    assert tempfile.gettempdir() not in str(refused.value).replace(str(tmp_path), "")


def _trained_checkpoint():
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(method="supervised"))
    trainer.train()
    return trainer.checkpoint()


def test_changed_source_is_detected(tmp_path):
    source = tmp_path / "scan.nii"
    source.write_bytes(b"original")
    volume = SessionVolume(name="scan", shape=(1, 1, 1), source_path=str(source), source_sha256=file_sha256(source))
    assert source_changed(volume) is False
    source.write_bytes(b"changed")
    assert source_changed(volume) is True
    source.unlink()
    assert source_changed(volume) is None


def test_hash_cache_hashes_a_file_again_only_once_it_changed(tmp_path):
    source = tmp_path / "scan.nii"
    source.write_bytes(b"original")
    hashes = HashCache()
    first = hashes.sha256(source)
    assert first == file_sha256(source)
    stat = source.stat()
    source.write_bytes(b"ORIGINAL")  # same size...
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ...and same time: taken as unchanged
    assert hashes.sha256(source) == first
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert hashes.sha256(source) == file_sha256(source) != first


def test_a_zarr_store_source_is_hashed_file_by_file_and_again_once_one_changed(tmp_path):
    store = tmp_path / "scan.zarr"  # a folder: zarr.json and a chunk file per run of slices
    (store / "c" / "0").mkdir(parents=True)
    (store / "zarr.json").write_text("{}")
    chunk = store / "c" / "0" / "0"
    chunk.write_bytes(b"original")
    hashes = HashCache()
    first = hashes.sha256(store)
    volume = SessionVolume(name="scan", shape=(1, 1, 1), source_path=str(store), source_sha256=first)
    assert first == file_sha256(store) and source_changed(volume) is False
    stat = chunk.stat()
    chunk.write_bytes(b"CHANGED!")
    os.utime(chunk, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = hashes.sha256(store)
    assert changed == file_sha256(store) != first and source_changed(volume) is True
    chunk.rename(store / "c" / "0" / "1")  # the same bytes in another chunk: another volume
    assert hashes.sha256(store) == file_sha256(store) != changed


def test_not_a_session(tmp_path):
    with pytest.raises(SessionError, match="not a napari-action session"):
        load_session(tmp_path)
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=3)
    with pytest.raises(SessionError, match="not a napari-action session"):
        load_session(tmp_path / "plain.zarr")


def test_a_session_with_a_damaged_chunk_is_named_and_says_what_to_do(tmp_path):
    # zarr's codec raised its own RuntimeError ("Zstd decompression error: invalid input data"):
    # the panel's status line said only that, naming neither the session nor what to do.
    path = tmp_path / "work.action.zarr"
    save_session(path, _session())
    chunk = next(p for p in (path / "volumes" / "0" / "painted").rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"not a compressed chunk")
    with pytest.raises(SessionError, match="damaged or incomplete") as refused:
        load_session(path)
    assert str(refused.value).startswith(f"{path}: part of the session cannot be read")


_SAVER = textwrap.dedent("""
    import sys, numpy as np
    from napari_action.io.session_store import Session, SessionVolume, save_session
    big = np.random.default_rng(1).integers(0, 255, (256, 256, 256), dtype=np.uint8)
    volumes = [SessionVolume(name=f"v{i}", shape=big.shape, painted=big, prediction=big) for i in range(40)]
    print("saving", flush=True)
    save_session(sys.argv[1], Session(volumes=volumes, class_names={1: "new"}))
""")


def test_killed_autosave_leaves_previous_session_readable(tmp_path):
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    process = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "saving"
    partial = tmp_path / "work.action.zarr.partial"
    deadline = time.monotonic() + 60
    while not partial.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let it write part of the new store
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the save finished before it could be killed"
    _assert_same(_session(0), load_session(path))
    # The next save cleans up the half-written store.
    save_session(path, _session(2))
    _assert_same(_session(2), load_session(path))
    assert not partial.exists()


def test_crash_between_the_two_renames_falls_back_to_previous(tmp_path):
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    path.rename(tmp_path / "work.action.zarr.previous")  # what a crash right after the first rename leaves
    _assert_same(_session(0), load_session(path))


def test_saving_after_a_crash_between_the_renames_replaces_the_backup(tmp_path):
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    path.rename(tmp_path / "work.action.zarr.previous")
    save_session(path, _session(1))
    _assert_same(_session(1), load_session(path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work.action.zarr"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_a_file_or_folder_that_is_not_a_session_is_never_replaced(tmp_path, kind):
    path = tmp_path / "work.action.zarr"
    if kind == "file":
        path.write_bytes(b"user data")
    else:
        path.mkdir()
        (path / "notes.txt").write_bytes(b"user data")
    before = _files(tmp_path)
    with pytest.raises(FileExistsError) as refused:
        save_session(path, _session(0))
    assert str(refused.value) == (
        f"cannot save the session to {path}: it exists and is not a napari-action session; "
        f"choose another name. {path} is unchanged."
    )
    assert _files(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["work.action.zarr"]


def test_an_empty_folder_becomes_the_session(tmp_path):
    path = tmp_path / "work.action.zarr"
    path.mkdir()  # e.g. made with the save dialog's "new folder" button
    assert not is_session_store(path)
    save_session(path, _session(0))
    assert is_session_store(path)
    _assert_same(_session(0), load_session(path))


# Child code: a session holding 256 KiB of random (incompressible) labels, then saved to args[0].
_BIG_SESSION = """
import numpy as np
import zarr
from napari_action.io.session_store import Session, SessionVolume, save_session
data = np.random.default_rng(1).integers(0, 255, (64, 64, 64), dtype=np.uint8)
session = Session(volumes=[SessionVolume(name="big", shape=data.shape, painted=data)])
"""
_SAVE = "save_session(args[0], session)"


def test_saving_into_a_folder_that_is_not_writable_says_what_to_do(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "work.action.zarr"
    save_session(path, _session(0))
    before = _files(folder)
    with read_only(folder):
        outcome = run_save(_SAVE, path, setup=_BIG_SESSION, unwritable=True)
    assert outcome == Outcome(
        "PermissionError",
        errno.EACCES,
        f"cannot write {path}: the folder {folder} is not writable (Permission denied); "
        "choose another folder (or fix its permissions).",
    )
    assert _files(folder) == before and [p.name for p in folder.iterdir()] == ["work.action.zarr"]


def test_a_full_disk_says_so_keeps_the_session_and_removes_the_partial_store(tmp_path):
    path = tmp_path / "work.action.zarr"
    save_session(path, _session(0))
    before = _files(tmp_path)
    outcome = run_save(_SAVE, path, setup=_BIG_SESSION, file_size_limit=64 << 10)
    assert outcome == Outcome(
        "OSError",
        errno.EFBIG,
        f"could not write {path}: the disk is full or the file is too large (File too large); "
        f"free some space and save again — {path} is unchanged.",
    )
    assert _files(tmp_path) == before and [p.name for p in tmp_path.iterdir()] == ["work.action.zarr"]
    _assert_same(_session(0), load_session(path))


# Child code: save a session of volumes filled with args[1] to args[0], args[2] times; the first failure ends it.
_SAVES_AGAIN_AND_AGAIN = """
import numpy as np
from napari_action.io.session_store import Session, SessionVolume, save_session
value = int(args[1])
filled = np.full((8, 64, 64), value, np.uint8)
volumes = [SessionVolume(name=f"window {value}", shape=filled.shape, painted=filled, prediction=filled)] * 2
for _ in range(int(args[2])):
    save_session(args[0], Session(volumes=volumes, config={"window": value}))
"""


def test_two_windows_autosaving_one_session_take_turns_and_leave_a_whole_one(tmp_path):
    # Two napari windows that opened one session autosave into the same work.autosave.action.zarr. Their
    # saves removed each other's partial store and backup halfway: saves failed with zarr's "An array
    # exists in store", and the store could end as no session at all ("not a napari-action session").
    path = tmp_path / "work.autosave.action.zarr"
    windows = [start_save(_SAVES_AGAIN_AND_AGAIN, path, value, 25) for value in (1, 2)]
    outcomes = [
        Outcome(**json.loads(window.communicate(timeout=120)[0].strip().splitlines()[-1])) for window in windows
    ]
    assert outcomes == [Outcome(None), Outcome(None)]
    session = load_session(path)
    [value] = {int(volume.painted.max()) for volume in session.volumes}
    assert session.config == {"window": value}
    for volume in session.volumes:
        assert (
            volume.name == f"window {value}" and (volume.painted == value).all() and (volume.prediction == value).all()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_store_records_what_it_holds_so_that_a_save_of_the_same_work_is_known_as_such(tmp_path):
    # Autosaves rewrote the whole store every minute with nothing new, and an unchanged one looked like newer
    # work than the session it copied.
    first = save_session(tmp_path / "a.action.zarr", _session(0))
    again = save_session(tmp_path / "b.action.zarr", load_session(first))  # the same work, read back and saved
    assert session_content(first) == session_content(again) == content_sha256(_session(0))
    changed = _session(0)
    changed.volumes[0].painted[0, 0, 0] += 1
    assert content_sha256(changed) != session_content(first)
    assert content_sha256(_session(0, checkpoint=b"model")) != session_content(first)
    assert session_content(tmp_path) is None  # no session


def test_a_full_disk_at_the_first_save_into_a_claimed_empty_folder_does_not_call_the_store_unchanged(tmp_path):
    # An autosave claims its store's name by creating its folder, empty, before the first save (two windows chose
    # one name): a full disk then said "<store> is unchanged", as if an earlier autosave were kept there.
    path = tmp_path / "20261207-101010.action.zarr"
    path.mkdir()
    outcome = run_save(_SAVE, path, setup=_BIG_SESSION, file_size_limit=64 << 10)
    assert outcome.type == "OSError" and outcome.errno == errno.EFBIG
    assert outcome.message.startswith(f"could not write {path}: the disk is full or the file is too large")
    assert "unchanged" not in outcome.message
