"""GUI test of the whole-volume writes into the "<image> ACTION" layers (same scene and tiny budget as test_widget)."""

from __future__ import annotations

import numpy as np

from tests.helpers.gui import TIMEOUT, edit_slice, wait_finished


def test_a_prediction_finished_during_a_brush_stroke_waits_for_its_end_and_keeps_it(scene, qtbot):
    # The stroke's voxels are locked only when it is committed: the prediction wrote over what the
    # brush had painted so far, and the committed stroke locked the prediction's values.
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    layer = viewer.layers["vol ACTION"]
    layer.data[7] = 0  # not an edit: the next prediction writes it again
    before = layer.data[0].copy()
    layer.brush_size = 5
    layer._begin_stroke()  # the mouse button held down, as napari's brush does
    layer.paint((0, 2, 2), 3)
    layer.paint((0, 16, 16), 3)
    stroke = layer.data[0] != before
    assert stroke.any()
    widget.predict_all()
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)
    qtbot.wait(300)
    assert (layer.data[0][stroke] == 3).all() and not layer.data[7].any()  # the write waits
    layer._commit_stroke()
    qtbot.waitUntil(lambda: layer.data[7].any(), timeout=TIMEOUT)  # then it comes, around the stroke
    assert (layer.data[0][stroke] == 3).all()


def test_a_prediction_layer_predicted_again_lies_where_its_image_lies_now_with_its_corrections(scene, qtbot):
    # Reused in place, the layer kept the scale and translate the image had when it was made: after the user set the
    # image's voxel size and moved it, the new prediction lay beside the image it segments.
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    layer, image = viewer.layers["vol ACTION"], viewer.layers["vol"]
    edit_slice(layer, 3, 2)
    image.scale, image.translate = (2.0, 0.5, 0.5), (-4.0, 7.0, 1.0)
    widget.predict_all()
    wait_finished(qtbot, widget)

    assert viewer.layers["vol ACTION"] is layer
    np.testing.assert_array_equal(layer.scale, image.scale)
    np.testing.assert_array_equal(layer.translate, image.translate)
    assert (layer.data[3, 0:6, 0:6] == 2).all()


def test_a_prediction_layer_streamed_into_by_a_new_training_lies_where_its_image_lies_now(scene, qtbot):
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    layer, image = viewer.layers["vol ACTION"], viewer.layers["vol"]
    for painted in (image, labels):  # the user moves both: the training still pairs them
        painted.translate = (20.0, -3.0, 0.0)
    widget.train_button.click()
    wait_finished(qtbot, widget)

    assert viewer.layers["vol ACTION"] is layer
    np.testing.assert_array_equal(layer.translate, image.translate)
