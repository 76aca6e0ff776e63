"""Label volumes written slice by slice: ``.nii`` through a memory map, zarr in chunks, ``.nii.gz`` at the end."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.io.errors import FileInUseError
from napari_action.io.label_writers import NiftiLabelWriter, open_label_writer, write_label_volume
from napari_action.io.nifti import load_labels
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import open_volume_source
from tests.helpers.os_limits import make_old
from tests.helpers.windows import windows_locks


def labels_and_meta(shape=(12, 9, 7), dtype=np.uint8):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, shape).astype(dtype)
    affine = np.diag([0.8, 0.9, 3.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.5)
    return labels, VolumeMeta.from_affine(affine, shape)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_nii_written_slice_by_slice_equals_save_labels_byte_for_byte(tmp_path, axis):
    labels, meta = labels_and_meta()
    expected = save_labels(tmp_path / "whole.nii", labels, meta).read_bytes()
    writer = open_label_writer(tmp_path / "sliced.nii", meta, labels.dtype, axis)
    assert isinstance(writer, NiftiLabelWriter)
    for index, plane in enumerate(np.moveaxis(labels, axis, 0)):
        writer.write(index, plane)
    assert not (tmp_path / "sliced.nii").exists()  # nothing in place before the end
    assert writer.commit().read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sliced.nii", "whole.nii"]


def test_zarr_labels_are_chunked_along_the_axis_with_the_geometry(tmp_path):
    labels, meta = labels_and_meta(shape=(12, 9, 40), dtype=np.uint16)
    target = write_label_volume(tmp_path / "labels.zarr", labels, meta, axis=2)
    source = open_volume_source(target)
    assert source.array.chunks == (12, 9, 16) and source.array.dtype == np.uint16
    assert source.meta == meta
    np.testing.assert_array_equal(source.read(2, 0, 40), np.moveaxis(labels, 2, 0))


def test_nii_gz_labels_are_gathered_then_saved(tmp_path):
    labels, meta = labels_and_meta()
    target = write_label_volume(tmp_path / "labels.nii.gz", labels, meta, axis=1)
    np.testing.assert_array_equal(load_labels(target)[0], labels)


@pytest.mark.parametrize("name", ["labels.nii", "labels.zarr", "labels.nii.gz"])
def test_existing_targets_stay_unless_overwrite_and_failures_leave_nothing(tmp_path, name):
    labels, meta = labels_and_meta()
    target = write_label_volume(tmp_path / name, labels, meta, axis=0)
    with pytest.raises(FileExistsError, match="already exists"):
        open_label_writer(target, meta, labels.dtype, 0)
    writer = open_label_writer(target, meta, labels.dtype, 0, overwrite=True)
    writer.write(0, labels[0])
    with pytest.raises(ValueError, match="in order; expected 1, got 2"):
        writer.write(2, labels[2])
    writer.discard()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left
    write_label_volume(target, np.zeros_like(labels), meta, axis=0, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert not open_volume_source(target).read(0, 0, 12).any()


def test_the_next_zarr_write_removes_the_store_a_killed_run_left(tmp_path):
    labels, meta = labels_and_meta(shape=(12, 9, 40))
    # What a run killed half way through leaves: a hidden store with some chunks written.
    writer = open_label_writer(tmp_path / "labels.zarr", meta, labels.dtype, 2)
    for index, plane in enumerate(np.moveaxis(labels, 2, 0)[:20]):
        writer.write(index, plane)
    [leftover] = [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert any(p.is_file() for p in (leftover / "c").rglob("*"))
    young = tmp_path / ".labels.zarr.young.part"
    (young / "c").mkdir(parents=True)
    for path in [leftover, *leftover.rglob("*")]:
        make_old(path)
    write_label_volume(tmp_path / "labels.zarr", labels, meta, axis=2)
    # The old leftover goes; a young one may belong to a write still running in another process.
    assert sorted(p.name for p in tmp_path.iterdir()) == [young.name, "labels.zarr"]


def test_a_nii_writer_refuses_to_commit_a_partial_volume(tmp_path):
    labels, meta = labels_and_meta()
    writer = NiftiLabelWriter(tmp_path / "short.nii", meta, labels.dtype, 2)
    writer.write(0, labels[..., 0])
    with pytest.raises(ValueError, match="1 of 7 slices were written"):
        writer.commit()
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_on_windows_a_zarr_store_with_a_file_open_is_kept_whole(tmp_path, monkeypatch):
    # The old store moves aside before the new one moves in; Windows refuses to move the new one
    # while a file in it is open (an antivirus scan): the old store goes back, nothing is lost.
    labels, meta = labels_and_meta()
    target = write_label_volume(tmp_path / "labels.zarr", labels, meta, axis=0)
    windows_locks(monkeypatch, lambda path: path.name.endswith(".part") and ".old." not in path.name)
    with pytest.raises(FileInUseError, match=r"cannot replace .*labels\.zarr: Windows refused"):
        write_label_volume(target, np.zeros_like(labels), meta, axis=0, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.zarr"]
    np.testing.assert_array_equal(open_volume_source(target).read(0, 0, 12), labels)
