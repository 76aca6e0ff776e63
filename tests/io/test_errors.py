"""Errors in plain words: every family of OS error names the path, what is wrong and what to do.

The errors are the OS's own wherever a test can make them (a folder created over a
file, a file opened as a folder...); a full disk and a refused permission are
``OSError`` objects as the OS raises them (``errno``, its wording, the file name):
root ignores permissions and no test may fill a disk. Real refusals by the kernel
are in ``tests/io/test_checkpoint.py`` and ``tests/cli/test_errors.py``.
"""

from __future__ import annotations

import errno
import os

import pytest

from napari_action.io.errors import describe_error, describe_os_error, path_error, plain_os_error
from napari_action.io.nifti import VolumeError


def raised_by(action, *args) -> OSError:
    """The OSError the OS raises for ``action(*args)``."""
    with pytest.raises(OSError) as caught:
        action(*args)
    return caught.value


def os_error(code: int, path) -> OSError:
    """An error as the OS raises it for ``code`` on ``path`` (type by code, its wording, the file name)."""
    return OSError(code, os.strerror(code), str(path))


def assert_plain(text: str) -> None:
    assert "Errno" not in text, text
    assert text.endswith("."), text


def test_a_folder_asked_for_where_a_file_is(tmp_path):
    file = tmp_path / "notes.txt"
    file.write_text("not a folder")
    text = describe_error(raised_by(os.mkdir, file))
    assert text == f"{file} is a file, but a folder is needed there; give the path of a folder, or move the file away."
    assert_plain(text)


def test_an_existing_folder_where_a_new_one_was_to_be_made(tmp_path):
    text = describe_error(raised_by(os.mkdir, tmp_path))
    assert text == f"{tmp_path} already exists; choose another name, or move it away first."


def test_a_folder_given_where_a_file_is_needed(tmp_path):
    text = describe_error(raised_by(open, tmp_path))
    assert text == f"{tmp_path} is a folder, but a file is needed there; give the path of a file."


def test_a_file_in_the_middle_of_a_path_is_named(tmp_path):
    file = tmp_path / "scans.txt"
    file.write_text("a list, not a folder")
    target = file / "out" / "model.pt"
    text = describe_error(raised_by(os.makedirs, target))
    assert text == (
        f"{file / 'out'} cannot be used: {file} is a file, not a folder; choose another path, or move {file} away."
    )
    # The same file named as a folder itself reads like the EEXIST case.
    assert describe_error(raised_by(os.listdir, file)) == (
        f"{file} is a file, but a folder is needed there; give the path of a folder, or move the file away."
    )


def test_a_missing_file_and_a_missing_folder(tmp_path):
    missing = tmp_path / "model.pt"
    assert describe_error(raised_by(open, missing)) == (
        f"{missing} does not exist; check its name and the folder it is in."
    )
    deeper = tmp_path / "runs" / "week1" / "model.pt"
    assert describe_error(raised_by(open, deeper)) == (
        f"{deeper} does not exist: there is no folder {tmp_path / 'runs'}; check the path (or create the folder)."
    )


def test_permission_denied_on_an_existing_file_and_in_a_locked_folder(tmp_path):
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"weights")
    text = describe_error(os_error(errno.EACCES, existing))
    assert text == (
        f"cannot open {existing}: you do not have permission (Permission denied); fix its permissions, "
        "or use a copy you own."
    )
    new = tmp_path / "out" / "scan_action.nii.gz"  # neither the file nor its folder exists yet
    assert describe_error(os_error(errno.EACCES, new)) == (
        f"cannot write {new}: the folder {tmp_path} is not writable (Permission denied); "
        "choose another folder (or fix its permissions)."
    )


def test_a_read_only_disk_names_the_folder(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    assert describe_error(os_error(errno.EROFS, target)) == (
        f"cannot write {target}: the folder {tmp_path} is not writable (Read-only file system); "
        "choose another folder (or fix its permissions)."
    )


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EFBIG], ids=["ENOSPC", "EDQUOT", "EFBIG"])
def test_a_full_disk_names_the_file_and_says_to_free_space(tmp_path, code):
    target = tmp_path / "scan_action.nii.gz"
    text = describe_error(os_error(code, target))
    assert text == (
        f"could not write {target}: the disk is full or the file is too large ({os.strerror(code)}); "
        "free some space and save again."
    )


def test_a_write_that_names_no_file_takes_the_path_it_is_given(tmp_path):
    # A write() that fills the disk half-way names no file: the caller knows which one it was.
    half_way = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    target = tmp_path / "scores.json"
    assert str(target) in describe_error(half_way, target)
    assert describe_error(half_way).startswith("could not write the file: the disk is full")


def test_an_os_error_behind_another_error_is_the_one_described(tmp_path):
    target = tmp_path / "model.pt"
    # torch reports a refused write as a RuntimeError whose context is the OSError.
    wrapped = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    wrapped.__context__ = os_error(errno.ENOSPC, target)
    text = describe_error(wrapped)
    assert text.startswith(f"could not write {target}: the disk is full") and "Pytorch" not in text


def test_codes_without_a_family_keep_the_os_wording_without_the_number(tmp_path):
    link = tmp_path / "loop"
    link.symlink_to(link)
    text = describe_error(raised_by(open, link))
    assert text == f"{link}: too many levels of symbolic links; check the path and try again."


def test_the_projects_own_messages_pass_unchanged():
    refusal = VolumeError("scan.nii.gz: the image is 4D (a series of 2 volumes); take one volume with fslroi.")
    assert describe_error(refusal) == str(refusal)
    exists = FileExistsError("out.nii.gz already exists; pass --overwrite to replace it.")
    assert describe_error(exists) == str(exists)


def test_a_reworded_error_keeps_its_type_and_errno_and_is_not_reworded_twice(tmp_path):
    raw = raised_by(open, tmp_path / "missing.pt")
    plain = plain_os_error(raw)
    assert type(plain) is FileNotFoundError and plain.errno == errno.ENOENT
    assert str(plain) == describe_error(raw) == describe_error(plain)
    assert_plain(str(plain))


def test_problems_found_by_looking_first_read_like_the_os_refusals(tmp_path):
    made = path_error(errno.EISDIR, tmp_path)
    assert isinstance(made, IsADirectoryError) and made.errno == errno.EISDIR
    assert str(made) == describe_error(raised_by(open, tmp_path))


def test_an_unexpected_error_without_os_cause_keeps_its_message():
    assert describe_error(RuntimeError("CUDA out of memory")) == "CUDA out of memory"
    assert describe_error(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_the_os_file_name_wins_over_the_callers_path(tmp_path):
    # The OS names the part that failed (a folder on the way); the caller only knows its target.
    inner = tmp_path / "store.action.zarr" / "zarr.json"
    assert str(inner) in describe_os_error(os_error(errno.EACCES, inner), tmp_path / "store.action.zarr")
