"""Saving label maps when the OS refuses: a folder that is not writable, a full disk, a crash.

Each failure is real and happens in a child process (see :mod:`tests.helpers.os_limits`);
the previous file must come out byte for byte unchanged, and no temporary file may stay
behind except the one of a killed process, which the next save removes once it is stale.
(An existing file without ``overwrite`` is tested in ``test_nifti.py``.)
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from napari_action.io.atomic import STALE_AFTER_S
from napari_action.io.nifti import load_labels
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta
from tests.helpers.os_limits import (
    Outcome,
    kill_when,
    make_old,
    parts_of,
    read_only,
    run_on_small_disk,
    run_save,
    start_save,
)

AFFINE = np.diag([2.0, 2.0, 3.0, 1.0])
# Child code: random labels of shape args[1] ("AxBxC"), then saved over args[0].
_LABELS = """
import numpy as np
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta
shape = tuple(int(n) for n in args[1].split("x"))
labels = np.random.default_rng(1).integers(0, 3, shape).astype(np.uint8)
meta = VolumeMeta.from_affine(np.diag([2.0, 2.0, 3.0, 1.0]), shape)
"""
_SAVE = "save_labels(args[0], labels, meta, overwrite=True)"


def _old_labels(target, shape=(16, 16, 8)) -> tuple[np.ndarray, bytes]:
    labels = np.zeros(shape, np.uint8)
    labels[4:12, 4:12, 2:6] = 1
    save_labels(target, labels, VolumeMeta.from_affine(AFFINE, shape))
    return labels, target.read_bytes()


def _assert_unchanged(target, labels: np.ndarray, content: bytes) -> None:
    assert target.read_bytes() == content
    np.testing.assert_array_equal(load_labels(target)[0], labels)


def test_a_folder_that_is_not_writable_is_named_with_what_to_do(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "seg.nii.gz"
    labels, content = _old_labels(target)
    with read_only(folder):
        outcome = run_save(_SAVE, target, "16x16x8", setup=_LABELS, unwritable=True)
    assert outcome == Outcome(
        "PermissionError",
        errno.EACCES,
        f"cannot write {target}: the folder {folder} is not writable (Permission denied); "
        "choose another folder (or fix its permissions).",
    )
    _assert_unchanged(target, labels, content)
    assert list(folder.iterdir()) == [target]


@pytest.mark.parametrize("name", ["seg.nii.gz", "seg.nii"])
def test_a_full_disk_says_so_and_keeps_the_old_file(tmp_path, name):
    target = tmp_path / name
    labels, content = _old_labels(target)
    # 4 KiB: far less than the new file (about 30 KiB compressed, 128 KiB not).
    outcome = run_save(_SAVE, target, "64x64x32", setup=_LABELS, file_size_limit=4096)
    assert outcome == Outcome(
        "OSError",
        errno.EFBIG,
        f"could not write {target}: the disk is full or the file is too large (File too large); "
        f"free some space and save again — {target} is unchanged.",
    )
    _assert_unchanged(target, labels, content)
    assert list(tmp_path.iterdir()) == [target]


def test_a_save_killed_half_way_keeps_the_old_file(tmp_path):
    target = tmp_path / "seg.nii.gz"
    labels, content = _old_labels(target)
    # Compressing 10 M voxels takes about a second after the temporary file appears.
    process = start_save(_SAVE, target, "256x256x160", setup=_LABELS)
    kill_when(process, lambda: bool(parts_of(target)))
    _assert_unchanged(target, labels, content)
    [leftover] = parts_of(target)
    assert not leftover.name.endswith((".nii", ".nii.gz"))  # no reader or "*.nii.gz" glob takes it for a volume
    make_old(leftover, STALE_AFTER_S + 1)
    save_labels(target, labels, VolumeMeta.from_affine(AFFINE, labels.shape), overwrite=True)
    assert list(tmp_path.iterdir()) == [target]


# Child code: args[0] is a small file system, args[1] the name written there; what the failed write
# left in that folder goes to the file args[2] (the small file system vanishes with the child).
_SLICED_SAVE = """
import json, os
from pathlib import Path
import numpy as np
from napari_action.io.label_writers import write_label_volume
from napari_action.io.volume_meta import VolumeMeta
shape = (128, 128, 64)
labels = np.random.default_rng(1).integers(0, 200, shape).astype(np.uint8)
try:
    write_label_volume(Path(args[0]) / args[1], labels, VolumeMeta.from_affine(np.eye(4), shape), axis=2)
finally:
    Path(args[2]).write_text(json.dumps(os.listdir(args[0])))
"""


@pytest.mark.parametrize(("name", "disk_kib"), [("seg.nii", 256), ("seg.nii", 4), ("seg.zarr", 4), ("seg.zarr", 256)])
def test_a_mask_written_slice_by_slice_onto_a_full_disk_says_so_and_leaves_nothing(tmp_path, name, disk_kib):
    # predict --output-format nii|zarr on a real disk with less room than the 1 MiB mask: the .nii was a
    # sparse file written through a memory map, and the first page past the free space killed the
    # process with SIGBUS (no message; a cohort's later scans never predicted); the temporary file or
    # store of a write refused at its start stayed behind, and zarr's error named "the file".
    disk, left = tmp_path / "disk", tmp_path / "left.json"
    disk.mkdir()
    outcome = run_on_small_disk(_SLICED_SAVE, disk, disk_kib, disk, name, left)
    assert (outcome.type, outcome.errno) == ("OSError", errno.ENOSPC)
    assert outcome.message.startswith(f"could not write {disk / name}: the disk is full")
    assert json.loads(left.read_text()) == []
