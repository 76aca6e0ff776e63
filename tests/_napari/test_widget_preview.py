"""What the prediction layer shows, in a real (hidden) napari viewer: the preview of the painted labels
until the network fits them, the status line that says which, and the final network on every slice
once training has run to its end.

Tiny budgets, as in tests/_napari/test_widget.py; every test waits for every worker it started.
"""

from __future__ import annotations

import numpy as np

from napari_action.io.session_store import load_session
from tests.helpers.engine import tiny_overrides
from tests.helpers.gui import TIMEOUT, prediction_layer, start_long_training, wait_finished, wait_first_step


def test_streamed_predictions_wait_until_the_network_fits_the_painted_slices(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.config_overrides = tiny_overrides(steps_stage3=12, stream_min_fit=1.0)  # a fit never reached
    widget.train_button.click()
    wait_finished(qtbot, widget)
    progress = widget.run.last_progress
    assert progress.painted_fit is not None and not progress.streaming
    trainer = widget.training_state.trainer  # the preview on screen is the trainer's prior, untouched by the network
    preview = trainer.class_values[trainer.prior(0).result.classes()]
    np.testing.assert_array_equal(prediction_layer(viewer).data, preview)
    assert "preview of your labels stays" in widget.status_label.text()


def test_status_line_says_when_the_preview_is_still_shown():
    from napari_action._napari.status import status_text
    from napari_action.progress import TrainProgress

    common = dict(
        stage="stage iii: ACTION",
        step=120,
        total_steps=900,
        losses={"total": 0.5, "sup": 0.3},
        lr=1e-3,
        steps_per_second=2.0,
        eta_seconds=390.0,
        device="CPU, 1 thread",
    )
    waiting = status_text(TrainProgress(**common, painted_fit=0.42, streaming=False))
    assert "step 120/900" in waiting and "ETA 6:30" in waiting
    assert "Dice on your slices 0.42 (the preview of your labels stays until the network fits" in waiting
    streaming = status_text(TrainProgress(**common, painted_fit=0.81, streaming=True))
    assert streaming.endswith("Dice on your slices 0.81")
    kept = status_text(TrainProgress(**common, painted_fit=0.81, streaming=True, preview_kept=True))
    assert "the network fills the slices your labels do not reach; Predict shows it everywhere" in kept
    assert "Dice" not in status_text(TrainProgress(**common))  # no check made yet


def test_a_run_that_ends_shows_the_final_network_on_every_slice(scene, qtbot):
    viewer, widget, labels, _ = scene
    painted = labels.data.copy()
    assert widget.options.predict_when_done.value  # the default
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer = widget.training_state.trainer
    *_, final = trainer.predict_volume(0)
    # The layer is the whole-volume prediction Predict makes, not the preview and streamed slices.
    np.testing.assert_array_equal(prediction_layer(viewer).data, final.labels)
    assert "the layers show the final network on every slice" in widget.status_label.text()
    assert labels.data.tobytes() == painted.tobytes()
    # The run's autosave waits for that prediction: closing napari now keeps what is on screen.
    panel = widget.files_panel
    qtbot.waitUntil(lambda: panel.last_autosave is not None and not panel.is_busy, timeout=TIMEOUT)
    session = load_session(panel.autosave_path)
    np.testing.assert_array_equal(session.volume("vol").prediction, final.labels)


def test_no_prediction_when_training_ends_if_unchecked_or_stopped(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.options.predict_when_done.value = False
    widget.train_button.click()
    qtbot.waitUntil(lambda: widget.run is not None and not widget.run.is_running, timeout=TIMEOUT)
    assert widget.training_state.job is None and widget.status_label.text().startswith("Done.")
    widget.options.predict_when_done.value = True
    wait_first_step(qtbot, start_long_training(widget))
    widget.stop_button.click()  # stopped before its last step: the user takes it from here
    qtbot.waitUntil(lambda: not widget.run.is_running, timeout=TIMEOUT)
    assert widget.training_state.job is None and "final network" not in widget.status_label.text()
