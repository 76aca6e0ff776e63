"""Atomic writes: the target holds the old content or the new one, never a broken file.

The failures are real: a folder the child process may not write into, a file size
limit that makes the kernel refuse writes (as a full disk does), a SIGKILL half-way
(see :mod:`tests.helpers.os_limits`).
"""

from __future__ import annotations

import errno
import os

import pytest

from napari_action.io.atomic import STALE_AFTER_S, remove_stale_parts, write_atomically
from napari_action.io.errors import FileInUseError, describe_error
from tests.helpers.os_limits import Outcome, kill_when, make_old, parts_of, read_only, run_save, start_save
from tests.helpers.windows import windows_locks

# Child code: write args[1] repeated int(args[2]) times to args[0].
_WRITE = """
from napari_action.io.atomic import write_atomically
write_atomically(args[0], lambda stream: stream.write(args[1].encode() * int(args[2])))
"""
# Child code: create the folder of args[0].
_MAKE_FOLDER = """
from napari_action.io.atomic import make_folder_for
make_folder_for(args[0])
"""
# Child code: write 4 bytes of args[0], then hang until killed.
_WRITE_HALF_THEN_HANG = """
import time
from napari_action.io.atomic import write_atomically

def write_half(stream):
    stream.write(b"half")
    stream.flush()
    time.sleep(60)

write_atomically(args[0], write_half)
"""


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def test_writes_the_content_with_normal_permissions(tmp_path):
    target = write_atomically(tmp_path / "out.bin", lambda stream: stream.write(b"new"))
    assert target == tmp_path / "out.bin" and target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_replacing_keeps_the_permissions_of_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomically(target, lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640


def test_refuses_an_existing_file_before_writing_anything(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    calls = []
    with pytest.raises(FileExistsError, match=r"out\.bin already exists; .*overwrite=True"):
        write_atomically(target, calls.append, overwrite=False)
    assert calls == [] and target.read_bytes() == b"old"


def test_refuses_a_file_that_appeared_while_writing(tmp_path):
    target = tmp_path / "out.bin"

    def write_while_someone_else_creates_the_target(stream):
        stream.write(b"mine")
        target.write_bytes(b"theirs")

    with pytest.raises(FileExistsError, match="already exists"):
        write_atomically(target, write_while_someone_else_creates_the_target, overwrite=False)
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path, error):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail_half_way(stream):
        stream.write(b"half")
        raise error

    with pytest.raises(type(error)):
        write_atomically(target, fail_half_way)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_on_windows_a_file_open_in_another_program_is_named_as_such_and_kept(tmp_path, monkeypatch):
    # Windows renames nothing over a file a program holds open (a viewer showing out.nii); the
    # folder is writable (the temporary file was written there): "not writable" would be wrong.
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    tried = windows_locks(monkeypatch, lambda path: path == target)
    with pytest.raises(FileInUseError) as raised:
        write_atomically(target, lambda stream: stream.write(b"new"))
    message = describe_error(raised.value)
    assert message.startswith(f"cannot replace {target}: Windows refused (Access is denied) because it is open")
    assert "close it there and save again, or choose another name" in message and "not writable" not in message
    assert len(tried) == 6  # tried again for a while first
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_on_windows_a_file_opened_for_a_moment_is_waited_for(tmp_path, monkeypatch):
    # An antivirus or the search indexer opens a file just written for a moment.
    target = tmp_path / "out.bin"
    windows_locks(monkeypatch, lambda path: path.name.endswith(".part"), opened_for=2)
    write_atomically(target, lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "no" / "out.bin", lambda stream: stream.write(b"x"))


def test_a_folder_given_as_target_is_refused_in_plain_words(tmp_path):
    with pytest.raises(IsADirectoryError) as refused:
        write_atomically(tmp_path, lambda stream: stream.write(b"x"))
    assert str(refused.value) == f"cannot write {tmp_path}: it is a folder; choose a file name."


def test_a_folder_that_is_not_writable_is_named_with_what_to_do(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "out.bin"
    target.write_bytes(b"old")
    with read_only(folder):
        outcome = run_save(_WRITE, target, "new", 1, unwritable=True)
    # Not the OS's "Permission denied: '.out.bin.x7k2.part'" about a file the user never named.
    assert outcome == Outcome(
        "PermissionError",
        errno.EACCES,
        f"cannot write {target}: the folder {folder} is not writable (Permission denied); "
        "choose another folder (or fix its permissions).",
    )
    assert target.read_bytes() == b"old" and list(folder.iterdir()) == [target]


def test_a_folder_that_cannot_be_created_names_the_folder_that_is_not_writable(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "new" / "model.pt"
    with read_only(folder):
        outcome = run_save(_MAKE_FOLDER, target, unwritable=True)
    assert outcome == Outcome(
        "PermissionError",
        errno.EACCES,
        f"cannot write {target}: the folder {folder} is not writable (Permission denied); "
        "choose another folder (or fix its permissions).",
    )
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("existed", [True, False], ids=["replacing", "new file"])
def test_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, existed):
    target = tmp_path / "out.bin"
    if existed:
        target.write_bytes(b"old" * 1000)  # larger than the limit: only new writes are limited
    outcome = run_save(_WRITE, target, "new", 2000, file_size_limit=1000)
    unchanged = f" — {target} is unchanged" if existed else ""
    assert outcome == Outcome(
        "OSError",
        errno.EFBIG,
        f"could not write {target}: the disk is full or the file is too large (File too large); "
        f"free some space and save again{unchanged}.",
    )
    assert list(tmp_path.iterdir()) == ([target] if existed else [])
    if existed:
        assert target.read_bytes() == b"old" * 1000


def test_a_write_killed_half_way_keeps_the_old_file_and_the_next_save_removes_its_leftover(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    process = start_save(_WRITE_HALF_THEN_HANG, target)
    kill_when(process, lambda: any(part.stat().st_size == 4 for part in parts_of(target)))
    assert target.read_bytes() == b"old"
    [leftover] = parts_of(target)
    # A young temporary file may belong to a write still running elsewhere: kept.
    write_atomically(target, lambda stream: stream.write(b"new"))
    assert target.read_bytes() == b"new" and parts_of(target) == [leftover]
    make_old(leftover, STALE_AFTER_S + 1)
    write_atomically(target, lambda stream: stream.write(b"newer"))
    assert target.read_bytes() == b"newer" and list(tmp_path.iterdir()) == [target]


def test_stale_clean_up_touches_only_old_leftovers_of_the_same_target(tmp_path):
    target = tmp_path / "out.bin"
    old_mine, young_mine = tmp_path / ".out.bin.a1b2.part", tmp_path / ".out.bin.c3d4.part"
    old_other, old_not_part = tmp_path / ".other.bin.e5f6.part", tmp_path / ".out.bin.g7h8"
    for path in (old_mine, young_mine, old_other, old_not_part):
        path.write_bytes(b"leftover")
    for path in (old_mine, old_other, old_not_part):
        make_old(path)
    assert remove_stale_parts(target) == [old_mine]
    assert sorted(tmp_path.iterdir()) == sorted([young_mine, old_other, old_not_part])
