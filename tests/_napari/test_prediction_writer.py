"""GUI test of the whole-volume writes into the "<image> ACTION" layers (same scene and tiny budget as test_widget)."""

from __future__ import annotations

from tests.helpers.gui import TIMEOUT, wait_finished


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
