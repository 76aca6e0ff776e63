"""Stop during Predict: a prediction of large volumes took minutes in the widget, and nothing stopped it."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from napari_action._napari.layers import SOURCE_KEY, is_prediction_layer
from tests.helpers.gui import TIMEOUT, messages_since, start_long_training, wait_finished, wait_first_step


def _large_volume(seed: int) -> np.ndarray:
    """40 slices of 256 x 256 along axis 0, the slicing axis: several batches of slices for the tiny network."""
    return np.random.default_rng(seed).normal(size=(40, 256, 256)).astype(np.float32)


def test_stop_ends_a_prediction_after_its_current_slices_and_says_what_it_left(scene, qtbot):
    viewer, widget, _, _ = scene
    widget.options.predict_when_done.value = False
    widget.train_button.click()
    wait_finished(qtbot, widget)
    for seed in (1, 2):
        viewer.add_image(_large_volume(seed), name=f"large {seed}")
    widget.predict_all()
    assert widget.training_state.job is not None and widget.stop_button.isEnabled()
    widget.stop_button.click()
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)

    predicted = {layer.metadata.get(SOURCE_KEY) for layer in viewer.layers if is_prediction_layer(layer)}
    assert not {"large 1", "large 2"} <= predicted  # it stopped before predicting every volume
    status = widget.status_label.text()
    assert status.startswith("Prediction stopped: ") and "Press Predict to predict them." in status
    assert widget.predict_button.isEnabled() and widget.train_button.isEnabled()
    assert not widget.stop_button.isEnabled()


def test_a_prediction_stopped_while_training_waits_for_it_is_still_told_once_training_resumes(scene, qtbot):
    # Predict pauses a running training and resumes it when its job ends: the job's end ("Prediction stopped: …")
    # never reached the status line, which the training's steps took back at once.
    viewer, widget, _, _ = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    viewer.add_image(_large_volume(1), name="large 1")
    widget.predict_all()
    qtbot.waitUntil(lambda: widget.training_state.predicting, timeout=TIMEOUT)
    before = len(notification_manager.records)
    widget.stop_button.click()  # stops the prediction, not the training
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)

    assert run.is_running and not widget.training_state.resume_after_job  # training goes on
    (told,) = [message for message in messages_since(before, "info") if "Prediction stopped" in message]
    assert told.startswith("ACTION: Prediction stopped: ") and told.endswith("Press Predict to predict them.")
    widget.stop_training()
    wait_finished(qtbot, widget)
