"""Atomic writes: the target holds the old content or the new one, never a broken file."""

from __future__ import annotations

import os

import pytest

from napari_action.io.atomic import write_atomically


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


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "no" / "out.bin", lambda stream: stream.write(b"x"))
