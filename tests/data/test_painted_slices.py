"""Painted slices of label files read a block at a time: the same targets as whole arrays, in little memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.painted_slices import read_painted_slices, scan_paint
from napari_action.data.slicing_axis import crossing_slice_advice, infer_axis
from napari_action.io.nifti import NonFiniteVoxelsError
from napari_action.io.volume_source import open_volume_source
from tests.helpers.engine import disc_volume, sparse, write_nifti


@pytest.fixture
def painted_file(tmp_path):
    _, truth = disc_volume(0)
    labels = sparse(truth, slices=(2, 7), axis=2)
    return write_nifti(tmp_path / "labels.nii", labels), labels


def test_the_scan_finds_the_painted_slices_along_every_axis(painted_file):
    path, labels = painted_file
    profile = scan_paint(open_volume_source(path), block_slices=3)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        np.testing.assert_array_equal(profile.painted[axis], labels.any(axis=others))
    assert infer_axis([profile]) == infer_axis([labels]) == 2


def test_a_file_read_a_few_slices_at_a_time_is_sliced_along_the_axis_its_whole_array_is(tmp_path):
    # Thick slices painted on 2 of 10, a stroke in another view crossing 8 of them: the whole array and the
    # scanned file must decide the same axis, the painted one (the scan counts each slice's voxels for that).
    labels = np.zeros((60, 60, 10), np.uint8)
    labels[15:45, 18:42, 3] = 1
    labels[15:45, 18:42, 6] = 2
    labels[20:28, 30, 1:9] = 1
    profile = scan_paint(open_volume_source(write_nifti(tmp_path / "stroke.nii", labels)), block_slices=3)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        np.testing.assert_array_equal(profile.voxels[axis], np.count_nonzero(labels, axis=others))
    assert infer_axis([profile]) == infer_axis([labels]) == 2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_stroke_in_another_view_is_found_in_the_painted_slices_of_a_file_read_lazily(tmp_path, axis):
    # Only the painted slices along the slicing axis are kept of such a file, and they were not looked at.
    labels = np.zeros((20, 22, 24), np.uint8)
    for s in (5, 12):
        index = [slice(4, 16)] * 3
        index[axis] = s
        labels[tuple(index)] = 1
    stroke = [slice(6, 10)] * 3
    stroke[axis] = slice(2, 10)
    stroke[(axis + 1) % 3] = 15  # at index 15 along the next axis: a line on 7 unpainted slices
    labels[tuple(stroke)] = 2
    source = open_volume_source(write_nifti(tmp_path / "stroke.nii", labels))
    lazy = read_painted_slices(source, axis=axis)
    advice = crossing_slice_advice([lazy], axis)
    assert advice == crossing_slice_advice([labels], axis)
    assert advice.startswith(f"Paint on slice 15 along axis {(axis + 1) % 3} crosses 7 slices along axis {axis}")
    assert crossing_slice_advice([read_painted_slices(source, axis=(axis + 2) % 3)], axis) is None  # other axis


def test_training_targets_are_those_of_the_whole_array(painted_file):
    path, labels = painted_file
    lazy = read_painted_slices(open_volume_source(path), axis=2, extra=[4])
    assert sorted(lazy.slices) == [2, 4, 7]
    whole = SparseAnnotation([labels], [labels.shape], labeled_slices={0: [4]})
    read = SparseAnnotation([lazy], [labels.shape], labeled_slices={0: [4]})
    assert read.axis == whole.axis == 2 and read.labeled_slices(0) == whole.labeled_slices(0) == [2, 4, 7]
    np.testing.assert_array_equal(read.class_values, whole.class_values)
    for index in (2, 4, 7):
        np.testing.assert_array_equal(read.target(0, index), whole.target(0, index))


def test_slices_along_another_axis_are_not_made_up(painted_file):
    path, _ = painted_file
    lazy = read_painted_slices(open_volume_source(path), axis=2)
    with pytest.raises(ValueError, match="read along axis 2, not 0"):
        lazy.take(3, 0)
    with pytest.raises(ValueError, match="read along axis 2, not 0"):
        SparseAnnotation([lazy], [lazy.shape], axis=0)


def test_the_scan_holds_one_block_not_the_volume(tmp_path):
    labels = np.zeros((256, 128, 128), np.uint8)  # 4 MiB
    labels[:, :, 100] = 3
    path = write_nifti(tmp_path / "big_labels.nii", labels)
    source = open_volume_source(path)
    tracemalloc.start()
    painted = read_painted_slices(source, axis=2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert sorted(painted.slices) == [100]
    # A block of 8 slices along axis 0 is 1/32 of the volume; its copies and masks take a few of those.
    assert peak < labels.nbytes / 4


def test_nan_voxels_in_a_labels_file_say_how_to_fix_the_file(tmp_path):
    labels = np.zeros((8, 8, 6), np.float32)
    labels[2, 2, 3] = np.nan
    path = write_nifti(tmp_path / "holes.nii", labels)
    with pytest.raises(NonFiniteVoxelsError, match="holes.nii") as raised:
        scan_paint(open_volume_source(path))
    assert "Set those voxels to 0 (not painted) or to their class" in str(raised.value)
    assert "nan_policy" not in str(raised.value)


def test_negative_label_values_name_the_file(tmp_path):
    labels = np.zeros((8, 8, 6), np.int16)
    labels[1, 1, 1] = -4
    with pytest.raises(ValueError, match="negative.nii: labels"):
        scan_paint(open_volume_source(write_nifti(tmp_path / "negative.nii", labels)))


@pytest.mark.parametrize(
    "stored_axes, reversed_axes",
    [((2, 0, 1), (False, False, False)), ((0, 1, 2), (True, True, False)), ((1, 2, 0), (True, False, True))],
)
def test_painted_slices_turned_are_the_slices_of_the_turned_whole_array(tmp_path, stored_axes, reversed_axes):
    # A large label file of a scan stored in another voxel order than the painted ones: its slices, read along
    # the stored axis, must be what the trainer would take from the whole array read in the training order.
    from napari_action.io.reoriented import Reorientation

    rng = np.random.default_rng(0)
    labels = np.zeros((12, 9, 7), np.uint8)
    labels[:, :, [1, 4]] = rng.integers(0, 3, (12, 9, 2))
    path = write_nifti(tmp_path / "labels.nii", labels)
    turn = Reorientation(stored_axes, reversed_axes)
    axis = stored_axes.index(2)  # the painted stored axis, in the training order
    turned = read_painted_slices(open_volume_source(path), 2).turned(turn)
    whole = turn.from_stored(labels)
    assert turned.shape == whole.shape and turned.axis == axis
    for index in range(whole.shape[axis]):
        np.testing.assert_array_equal(turned.take(index, axis), np.take(whole, index, axis=axis))
    for a in range(3):
        others = tuple(b for b in range(3) if b != a)
        np.testing.assert_array_equal(turned.painted[a], whole.any(axis=others))
        np.testing.assert_array_equal(turned.voxels[a], (whole != 0).sum(axis=others))
    assert infer_axis([turned]) == infer_axis([whole]) == axis
