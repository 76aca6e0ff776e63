"""Stop during Predict: a prediction of large volumes took minutes in the widget, and nothing stopped it."""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import SOURCE_KEY, is_prediction_layer
from tests.helpers.gui import TIMEOUT, wait_finished


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
