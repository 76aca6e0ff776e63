"""GUI tests of what reaches a running training from the viewer: paint in a layer made after Train.

Real viewer, the docked widget with the tiny budget of tests/helpers/gui.py; every worker is waited for.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from tests.helpers import engine, gui
from tests.helpers.gui import TIMEOUT, messages_since, start_long_training, wait_finished, wait_first_step


def test_paint_in_a_labels_layer_added_while_training_runs_is_pointed_out_once(scene, qtbot):
    # The second scan's labels, made and painted while training ran: the strokes were left out of training
    # without a word, where strokes in the painted layers join it at once (docs/usage.md).
    viewer, widget, labels, truth = scene
    second, second_truth = gui.disc_volume(1)
    viewer.add_image(second, name="second", **gui.GRID)
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    before = len(notification_manager.records)
    late = viewer.add_labels(np.zeros(gui.SHAPE, np.uint8), name="second labels", **gui.GRID)
    gui.paint(late, second_truth, slices=(3,))
    qtbot.waitUntil(lambda: bool(messages_since(before, "warning")), timeout=TIMEOUT)
    gui.paint(late, second_truth, slices=(6,))  # told once per layer
    qtbot.wait(100)

    (warning,) = messages_since(before, "warning")
    assert warning.startswith("ACTION: 'second labels' was added after Train, and this training goes on with")
    assert "press Stop, then Train" in warning
    assert widget.training_state.trainer.annotation.labeled_slices(1) == []
    widget.stop_training()
    wait_finished(qtbot, widget)

    assert {layer.name: image for layer, image in widget.picker.selected_labels()}["second labels"] == "second"
    widget.config_overrides = engine.tiny_overrides()  # a short run: the 400 steps above were to act during one
    widget.train_button.click()  # what the warning says to do
    wait_finished(qtbot, widget)
    assert widget.training_state.trainer.annotation.labeled_slices(1) == [3, 6]
    np.testing.assert_array_equal(late.data[[3, 6]], second_truth[[3, 6]])  # the user's paint as it was


def test_labels_put_into_the_painted_layer_while_training_runs_reach_the_training(scene, qtbot):
    # Labels loaded into the layer from the console (layer.data = ...) came with no paint event: training
    # went on with slices the layer no longer held.
    viewer, widget, labels, truth = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    replaced = np.zeros(gui.SHAPE, np.uint8)
    replaced[6] = truth[6]
    labels.data = replaced
    trainer = widget.training_state.trainer
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == [6], timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)

    assert labels.data is replaced and np.array_equal(replaced[6], truth[6])  # the layer is only read


def test_an_image_given_new_data_while_training_runs_stops_it_and_predict_reads_the_new_data(scene, qtbot):
    # A crop (or another scan) put into the image layer from the console: the stream of the old data no longer
    # fitted the layer, every write failed and the run never ended, leaving Train greyed out for good.
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    before = len(notification_manager.records)
    cropped = np.ascontiguousarray(gui.disc_volume(5)[0][:, :16, :16])
    viewer.layers["vol"].data = cropped
    wait_finished(qtbot, widget)

    (warning,) = [m for m in messages_since(before, "warning") if "new data" in m]
    assert warning.startswith("ACTION: image 'vol' was given new data while training ran, so training stops")
    assert run.error is None and widget.train_button.isEnabled() and widget.predict_button.isEnabled()
    widget.predict_all()
    qtbot.waitUntil(lambda: widget.training_state.job is None and widget.predict_button.isEnabled(), timeout=TIMEOUT)
    assert messages_since(before, "error") == []
    predicted = [layer for layer in viewer.layers if layer.name.startswith("vol ACTION")]
    assert (16, 16) in [layer.data.shape[1:] for layer in predicted]  # the new data, predicted on its own grid
    assert np.array_equal(labels.data, painted)


def test_labels_of_another_shape_put_into_the_painted_layer_while_training_runs_are_refused_by_the_layer_name(
    scene, qtbot
):
    # The refusal came from the trainer, as "Labels of volume 0 have shape (8, 16, 16), but the volume has shape
    # (8, 32, 32).": no layer name, no way back.
    viewer, widget, labels, truth = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    before = len(notification_manager.records)
    labels.data = np.ascontiguousarray(labels.data[:, :16, :16])
    qtbot.waitUntil(lambda: any("shape" in m for m in messages_since(before, "warning")), timeout=TIMEOUT)
    assert run.is_running  # training goes on with the labels it had
    widget.stop_training()
    wait_finished(qtbot, widget)

    (warning,) = [m for m in messages_since(before, "warning") if "shape" in m]
    assert warning.startswith("ACTION: 'vol labels' now holds labels of shape (8, 16, 16), but its image 'vol' has")
    assert "Training keeps the labels it had until then." in warning
