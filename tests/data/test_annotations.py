"""Tests for napari_action.data.annotations (numpy only, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.annotations import IGNORE_INDEX, SparseAnnotation

SHAPE = (12, 16, 20)


def painted_on(axis: int, slices=(2, 6, 9), shape=SHAPE, values=(3, 7)) -> np.ndarray:
    """Labels with a structure of each value painted on a few slices of ``axis``."""
    labels = np.zeros(shape, dtype=np.uint16)
    for s in slices:
        plane = np.zeros([n for a, n in enumerate(shape) if a != axis], dtype=np.uint16)
        plane[2:9, 3:10] = values[0]
        plane[10:12, 12:15] = values[1]
        index = [slice(None)] * 3
        index[axis] = s
        labels[tuple(index)] = plane
    return labels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_painted_axis_becomes_the_slicing_axis(axis):
    labels = painted_on(axis, slices=(1, 4, 7), shape=(24, 24, 24))
    annotation = SparseAnnotation([labels], [labels.shape])
    assert annotation.axis == axis
    assert annotation.labeled_slices(0) == [1, 4, 7]


def test_value_mapping_both_ways():
    annotation = SparseAnnotation([painted_on(0)], [SHAPE])
    np.testing.assert_array_equal(annotation.class_values, [0, 3, 7])
    assert annotation.num_classes == 3
    np.testing.assert_array_equal(annotation.to_class_ids(np.array([[7, 0], [3, 3]])), [[2, 0], [1, 1]])
    values = np.array([0, 3, 7, 7, 3])
    np.testing.assert_array_equal(annotation.class_values[annotation.to_class_ids(values)], values)
    with pytest.raises(ValueError, match="Unknown label values \\[5\\]"):
        annotation.to_class_ids([0, 5])


def test_slice_mode_targets():
    labels = painted_on(0)
    annotation = SparseAnnotation([labels], [SHAPE])
    target = annotation.target(0, 2)
    assert target.dtype == np.int64 and target.shape == (16, 20)
    np.testing.assert_array_equal(target, annotation.to_class_ids(labels[2]))
    assert target.min() == 0  # unpainted = background in slice mode
    assert annotation.unlabeled_slices(0) == [s for s in range(12) if s not in (2, 6, 9)]
    with pytest.raises(ValueError, match="not labeled"):
        annotation.target(0, 3)


def test_scribble_mode_targets():
    labels = painted_on(0, values=(3, 7))
    annotation = SparseAnnotation([labels], [SHAPE], mode="scribble", background_value=7)
    np.testing.assert_array_equal(annotation.class_values, [7, 3])
    target = annotation.target(0, 6)
    np.testing.assert_array_equal(target[labels[6] == 0], IGNORE_INDEX)
    np.testing.assert_array_equal(target[labels[6] == 7], 0)
    np.testing.assert_array_equal(target[labels[6] == 3], 1)
    assert annotation.unlabeled_slices(0) == list(range(12))
    np.testing.assert_array_equal(annotation.to_class_ids([0, 7]), [IGNORE_INDEX, 0])


def test_explicit_empty_labeled_slices():
    labels = painted_on(0)
    annotation = SparseAnnotation([labels, None], [SHAPE, (5, 16, 20)], labeled_slices={0: [0], 1: [4]})
    assert annotation.labeled_slices(0) == [0, 2, 6, 9]
    assert annotation.labeled_slices(1) == [4]
    np.testing.assert_array_equal(annotation.target(0, 0), 0)
    np.testing.assert_array_equal(annotation.target(1, 4), 0)
    assert 4 not in annotation.unlabeled_slices(1)
    # Scribble mode: an empty slice carries no supervision, so it is not added.
    scribble = SparseAnnotation([labels], [SHAPE], mode="scribble", background_value=3, labeled_slices={0: [0]})
    assert scribble.labeled_slices(0) == [2, 6, 9]


def test_painted_volumes_are_those_with_a_labeled_slice():
    labels = painted_on(0)
    annotation = SparseAnnotation([None, labels, None], [SHAPE, SHAPE, SHAPE], labeled_slices={2: [4]})
    assert annotation.painted_volumes == [1, 2]  # an explicitly marked empty slice counts as painted
    assert SparseAnnotation([labels, None], [SHAPE, SHAPE]).painted_volumes == [0]


def test_only_explicit_slices_need_axis():
    with pytest.raises(ValueError, match="pass `axis`"):
        SparseAnnotation([None], [SHAPE], labeled_slices={0: [1]})
    annotation = SparseAnnotation([None], [SHAPE], axis=1, labeled_slices={0: [1]})
    np.testing.assert_array_equal(annotation.class_values, [0])
    assert annotation.target(0, 1).shape == (12, 20)


def test_inputs_are_not_modified_or_shared():
    labels = painted_on(2).astype(np.float32)
    original = labels.copy()
    annotation = SparseAnnotation([labels], [SHAPE])
    np.testing.assert_array_equal(labels, original)
    target = annotation.target(0, 2)
    assert not np.shares_memory(target, labels)
    with pytest.raises(ValueError):
        target[0, 0] = 5  # read-only: callers cannot corrupt the snapshot
    labels[:] = 0  # a later stroke in the viewer must not leak into the snapshot
    assert annotation.class_counts()[1:].sum() > 0


def test_forced_class_values_and_new_classes():
    labels = painted_on(0, values=(3, 9))
    with pytest.raises(ValueError, match="allow_new_classes"):
        SparseAnnotation([labels], [SHAPE], class_values=[0, 3, 7])
    annotation = SparseAnnotation([labels], [SHAPE], class_values=[0, 7, 3], allow_new_classes=True)
    np.testing.assert_array_equal(annotation.class_values, [0, 7, 3, 9])
    assert annotation.to_class_ids(9) == 3
    np.testing.assert_array_equal(annotation.class_counts()[1] == 0, True)
    assert annotation.summary()["missing_classes"] == [7]
    with pytest.raises(ValueError, match="start with 0"):
        SparseAnnotation([labels], [SHAPE], class_values=[3, 9])


def test_class_counts_and_summary():
    labels = np.zeros((4, 6, 6), dtype=np.int32)
    labels[1, 0, :2] = 2
    annotation = SparseAnnotation([labels], [labels.shape], axis=0)
    np.testing.assert_array_equal(annotation.class_counts(), [34, 2])
    summary = annotation.summary()
    assert summary["num_labeled"] == 1 and summary["num_unlabeled"] == 3
    assert summary["labeled_slices"] == {0: [1]}
    assert summary["class_values"] == [0, 2]


@pytest.mark.parametrize(
    ("labels", "kwargs", "match"),
    [
        ([np.ones((12, 16, 19))], {}, "volume 0 have shape"),
        ([np.full(SHAPE, 0.5)], {}, "volume 0 must be whole numbers"),
        ([np.full(SHAPE, np.nan)], {}, "volume 0 contain NaN"),
        ([np.full(SHAPE, "a")], {}, "volume 0 must be integers"),
        ([None, -np.ones(SHAPE, dtype=int)], {}, "volume 1 contain negative"),
        ([np.zeros(SHAPE)], {}, "Paint at least one slice"),
        ([None], {"mode": "scribble", "background_value": 1, "labeled_slices": {0: [1]}}, "Paint at least"),
        ([np.ones(SHAPE)] * 3, {}, "3 label arrays for 2 volumes"),
        ([np.ones(SHAPE)], {"mode": "scribble"}, "needs background_value"),
        ([np.ones(SHAPE)], {"mode": "scribble", "background_value": 0}, "positive integer"),
        ([np.ones(SHAPE)], {"background_value": 2}, "only used in scribble mode"),
        ([np.ones(SHAPE)], {"mode": "dense"}, "mode must be"),
        ([np.ones(SHAPE)], {"axis": 3}, "out of range"),
        ([np.ones(SHAPE)], {"labeled_slices": {5: [0]}}, "names volume 5"),
        ([np.ones(SHAPE)], {"axis": 0, "labeled_slices": {0: [12]}}, "slice 12 of volume 0 is out of range"),
        ([np.ones(SHAPE)], {"labeled_slices": {0: [-1]}}, "must be >= 0"),
        ([np.ones(SHAPE)], {"class_values": [0, 1, 1]}, "unique"),
        ([np.ones(SHAPE)], {"mode": "scribble", "background_value": 1, "class_values": [1, 0]}, "unpainted"),
    ],
)
def test_validation_errors(labels, kwargs, match):
    shapes = [SHAPE, SHAPE]
    with pytest.raises(ValueError, match=match):
        SparseAnnotation(labels, shapes, **kwargs)


def test_bad_volume_shape():
    with pytest.raises(ValueError, match="Volume 0 must be a non-empty 3D"):
        SparseAnnotation([None], [(4, 4)])
