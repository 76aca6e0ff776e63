"""Tests of napari_action._napari.layers: pairing, edit tracking, streamed writes, prediction layers.

Most tests use no viewer: napari layers work without a canvas. The last one
needs a viewer to find the prediction layer of an image.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_action._napari.layers import (
    EditTracker,
    axis_index,
    class_names_of,
    colours_of_every_label,
    is_mid_stroke,
    is_prediction_layer,
    label_features,
    layer_shape_text,
    pair_labels_to_images,
    prediction_layer_for,
    write_slices,
)
from napari_action._napari.training_plan import TrainingPlan
from napari_action.progress import SlicePrediction
from tests.helpers.gui import SHAPE, disc_volume


def prediction(labels: np.ndarray, start: int, axis: int = 0, volume: int = 0) -> SlicePrediction:
    return SlicePrediction(volume, axis, start, labels, np.ones(labels.shape, np.float32))


def test_pairing_prefers_same_shape_then_name():
    images = [
        Image(np.zeros((4, 8, 8)), name="mr"),
        Image(np.zeros((4, 8, 8)), name="ct"),
        Image(np.zeros((5, 8, 8)), name="pet"),
    ]
    labels = [
        Labels(np.zeros((4, 8, 8), np.uint8), name="ct labels"),
        Labels(np.zeros((5, 8, 8), np.uint8), name="seg"),
        Labels(np.zeros((3, 8, 8), np.uint8), name="stray"),
    ]
    assert pair_labels_to_images(labels, images) == {"ct labels": "ct", "seg": "pet", "stray": None}


def test_pairing_prefers_the_image_the_labels_lie_over_to_a_name_prefix():
    # A cohort of one shape, each scan at its own place: the painted file lies over the first scan,
    # but shares a longer name prefix ("p") with the second. Was paired with the second, and Train
    # refused with "placed elsewhere", naming remedies for a file that needed none.
    first, second = np.eye(4), np.eye(4)
    first[:3, 3], second[:3, 3] = (10.0, -5.0, 2.0), (-20.0, 7.0, 30.0)
    images = [
        Image(np.zeros((4, 8, 8)), name="with space ü", affine=first),
        Image(np.zeros((4, 8, 8)), name="phantom-2", affine=second),
    ]
    labels = [Labels(np.zeros((4, 8, 8), np.uint8), name="painted ü", affine=first)]
    assert pair_labels_to_images(labels, images) == {"painted ü": "with space ü"}


def test_pairing_prefers_the_image_named_in_full_to_a_longer_shared_prefix():
    # Two scans of one grid, "vol" and "vol 2": "vol labels" shares the longer prefix "vol " with
    # "vol 2", was paired with it, and Train learnt the labels painted on "vol" on the other scan.
    images = [Image(np.zeros((4, 8, 8)), name="vol"), Image(np.zeros((4, 8, 8)), name="vol 2")]
    labels = [Labels(np.zeros((4, 8, 8), np.uint8), name="vol labels")]
    assert pair_labels_to_images(labels, images) == {"vol labels": "vol"}
    # A sample (or a session) opened twice: napari marks the second copies " [1]"; each labels layer
    # goes with its own image (both went to "ct [1]", and Train refused).
    images = [Image(np.zeros((4, 8, 8)), name="ct"), Image(np.zeros((4, 8, 8)), name="ct [1]")]
    labels = [
        Labels(np.zeros((4, 8, 8), np.uint8), name="ct labels"),
        Labels(np.zeros((4, 8, 8), np.uint8), name="ct labels [1]"),
    ]
    assert pair_labels_to_images(labels, images) == {"ct labels": "ct", "ct labels [1]": "ct [1]"}


def test_shape_text_reads_the_full_resolution_shape():
    assert layer_shape_text(Labels(np.zeros((4, 8, 16), np.uint8))) == "4×8×16"
    pyramid = [np.zeros((4, 8, 16)), np.zeros((2, 4, 8))]
    assert layer_shape_text(Image(pyramid, multiscale=True)) == "4×8×16"  # level 0, not the coarsest


@pytest.mark.parametrize("slices", [2, [0, 3], slice(1, 3)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_index_takes_slices_along_one_axis_only(axis, slices):
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    np.testing.assert_array_equal(volume[axis_index(axis, slices)], np.take(volume, np.arange(6)[slices], axis=axis))
    assert axis_index(1, 0, ndim=2) == (slice(None), 0)


def test_tracker_locks_brush_strokes_and_data_setitem():
    layer = Labels(np.zeros((6, 16, 16), np.uint8))
    tracker = EditTracker(layer, axis=0)
    layer.brush_size = 3
    layer.paint((4, 8, 8), 5)  # napari >= 0.8: a mask + bounding-box atom
    layer.data_setitem((np.array([1, 1]), np.array([0, 1]), np.array([2, 2])), 7)  # (indices, old, new)
    assert tracker.edited_slices == {1, 4}
    np.testing.assert_array_equal(tracker.locked, layer.data > 0)
    tracker.set_axis(2)
    assert tracker.edited_slices == set(np.flatnonzero((layer.data > 0).any(axis=(0, 1))))
    tracker.disconnect()
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), 3)
    assert not tracker.locked[0, 0, 0]


def test_an_undone_correction_goes_back_to_the_stream_and_a_redo_locks_it_again():
    # Undone corrections stayed locked: the stream never wrote those voxels again, and "Accept all edited
    # slices" accepted slices the user had taken every correction back from.
    layer = Labels(np.zeros((6, 16, 16), np.uint8))
    tracker = EditTracker(layer, axis=0)
    layer.data_setitem((np.array([1, 1]), np.array([0, 1]), np.array([2, 2])), 7)  # a first correction
    layer.brush_size = 1
    layer.paint((3, 8, 8), 5)  # a brush stroke (mask atom) on slice 3
    layer.data_setitem((np.array([1]), np.array([1]), np.array([2])), 4)  # again on a voxel of the first
    layer.undo()  # that voxel is still the first correction's
    assert tracker.locked[1, 1, 2] and tracker.locked[1, 0, 2] and tracker.edited_slices == {1, 3}
    layer.undo()  # the brush stroke taken back: slice 3 is the network's again
    assert not tracker.locked[3].any() and tracker.edited_slices == {1}
    labels = np.full((1, 16, 16), 2, np.uint8)
    write_slices(layer, prediction(labels, 3), tracker.locked)
    assert (layer.data[3] == 2).all()
    layer.redo()  # the stroke again: locked again
    assert tracker.locked[3, 8, 8] and tracker.edited_slices == {1, 3}
    layer.undo()
    layer.undo()
    assert not tracker.locked.any() and tracker.edited_slices == set()
    tracker.set_axis(0)  # moving the slider and other refreshes change nothing
    layer.refresh()
    assert tracker.edited_slices == set()


def test_fill_of_whole_slice_is_locked():
    layer = Labels(np.zeros((3, 8, 8), np.uint8))
    tracker = EditTracker(layer, axis=0)
    layer.fill((2, 0, 0), 4)  # whole bounding box changed: atom without mask
    assert tracker.locked[2].all() and not tracker.locked[:2].any()
    assert tracker.edited_slices == {2}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_write_slices_moves_axis_and_skips_locked(axis):
    layer = Labels(np.zeros((4, 5, 6), np.uint8))
    shape = list(layer.data.shape)
    n_slices = 2
    shape[axis] = n_slices
    labels = np.full(tuple(np.moveaxis(np.zeros(shape), axis, 0).shape), 3, np.uint8)
    locked = np.zeros(layer.data.shape, bool)
    region = [slice(None)] * 3
    region[axis] = 1
    locked[tuple(region)] = True
    changed = write_slices(layer, prediction(labels, 1, axis), locked)
    expected = np.zeros(layer.data.shape, np.uint8)
    region[axis] = 2
    expected[tuple(region)] = 3
    np.testing.assert_array_equal(layer.data, expected)
    assert changed == expected.astype(bool).sum()
    assert write_slices(layer, prediction(labels, 1, axis), locked) == 0


def test_write_widens_dtype_for_new_large_values():
    layer = Labels(np.zeros((2, 4, 4), np.uint8))
    write_slices(layer, prediction(np.full((1, 4, 4), 300, np.int32), 0))
    assert layer.data.dtype == np.int32 and layer.data[0].max() == 300


def test_tracker_write_measures_agreement_on_streamed_slices():
    layer = Labels(np.zeros((4, 2, 5), np.uint8))
    tracker = EditTracker(layer, axis=0)
    ones = np.ones((2, 2, 5), np.uint8)
    assert tracker.write(prediction(ones, 0)) == (0, 0)  # first stream: nothing to compare
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), 9)  # locked edit
    changed, compared = tracker.write(prediction(np.where(np.arange(5) < 2, 2, 1) * ones, 0))
    assert (changed, compared) == (7, 19)
    assert layer.data[0, 0, 0] == 9


def test_mid_stroke_flag():
    layer = Labels(np.zeros((2, 4, 4), np.uint8))
    assert not is_mid_stroke(layer)
    layer._begin_stroke()
    assert is_mid_stroke(layer)
    layer._commit_stroke()
    assert not is_mid_stroke(layer)


def test_class_names_from_features():
    layer = Labels(np.zeros((2, 4, 4), np.uint8), features={"index": [0, 3], "name": ["bg", "liver"]})
    assert class_names_of(layer) == {0: "bg", 3: "liver"}
    assert class_names_of(Labels(np.zeros((2, 4, 4), np.uint8))) is None
    table = label_features([0, 3, 5], {3: "liver"})
    assert list(table["name"]) == ["background", "liver", "5"]


def test_prediction_layers_are_known_by_their_source_not_their_name(viewer):
    image, _ = disc_volume()
    first, second = viewer.add_image(image, name="first"), viewer.add_image(image, name="vol")
    own = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol ACTION")  # the user's layer, named like ours
    layer = prediction_layer_for(viewer, second)
    assert layer is not own and is_prediction_layer(layer) and not is_prediction_layer(own)
    layer.name = "my corrections"
    assert prediction_layer_for(viewer, second) is layer  # renamed, still the prediction of "vol"
    assert TrainingPlan(images=[first, second]).volume_of(layer) == 1
    assert not own.data.any()


class _PydanticOneColormap:
    """A label colormap as napari 0.5 and 0.6 hand it out: a pydantic 1 model, copied by copy(), no model_copy."""

    def __init__(self, colormap):
        self._colormap = colormap
        self.use_selection = colormap.use_selection

    def copy(self, deep=False):
        return copy.deepcopy(self._colormap) if deep else copy.copy(self._colormap)


def test_every_label_is_coloured_with_the_colormaps_of_napari_before_0_7():
    # napari 0.5 and 0.6 (pyproject allows napari>=0.5): Train and Export called model_copy,
    # which their colormaps lack, and ended in AttributeError.
    layer = Labels(np.zeros((2, 4, 4), np.uint8))
    layer.colormap.use_selection = True
    colours = colours_of_every_label(_PydanticOneColormap(layer.colormap))
    assert not colours.use_selection
    assert layer.colormap.use_selection  # the painted layer's own mode is left as it was
    assert colours.map(np.array([1, 2]))[:, 3].tolist() == [1.0, 1.0]  # not transparent
