"""What the ACTION widget's status line says while training stops and while prediction runs, in a real napari viewer.

Budgets as in test_widget.py (the ``scene`` fixture, tests/helpers/gui.py); every test waits for its workers.
"""

from __future__ import annotations

from napari_action._napari.prediction_job import PredictionJob
from napari_action._napari.run_state import RunState
from tests.helpers.gui import (
    TIMEOUT,
    disc_volume,
    paused_after_first_step,
    start_long_training,
    wait_finished,
)


def test_status_line_is_not_left_on_a_finished_stop_or_prediction(scene, qtbot):
    viewer, widget, labels, _ = scene
    run = start_long_training(widget)
    widget.stop_button.click()  # while the volumes are prepared: no step is ever reported
    assert widget.status_label.text() == "Stopping once the volumes are prepared…"  # said "after the current step"
    wait_finished(qtbot, widget)
    assert run.last_progress is None and run.error is None
    assert "Stopping" not in widget.status_label.text()  # was left on "Stopping after the current step…"
    run = paused_after_first_step(qtbot, widget)
    widget.predict_button.click()
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)
    assert run.state is RunState.PAUSED
    assert "Predicting" not in widget.status_label.text()  # was left on "Predicting 1 volume(s)…"
    widget.stop_button.click()
    wait_finished(qtbot, widget)


def test_predict_all_shows_its_progress_in_the_status_line_not_a_napari_bar(scene, qtbot, monkeypatch):
    """napari's progress bar animates the activity dock, repainting the window on every frame: the
    status line says which volume is being predicted instead, and the layers come as before."""
    viewer, widget, _, _ = scene
    other, _ = disc_volume(seed=1)
    viewer.add_image(other[:, :, :24], name="other")
    widget.picker.set_checked("other", False)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    said = []
    real_say = widget.status.say
    monkeypatch.setattr(widget.status, "say", lambda text: said.append(text) or real_say(text))
    widget.predict_button.click()
    job = widget.training_state.job
    assert isinstance(job, PredictionJob)
    assert job._bar is None  # no napari progress bar
    wait_finished(qtbot, widget)
    progress = [text for text in said if text.startswith("Predicting volume")]
    assert "Predicting volume 1 of 2 (vol)" in progress[0]
    assert any(text.startswith("Predicting volume 2 of 2 (other), 100% done") for text in progress)
    assert {"vol ACTION", "other ACTION"} <= {layer.name for layer in viewer.layers}
    assert not widget.status_label.text().startswith("Predicting")  # not left on the job's progress


def test_a_stopped_run_says_where_it_stopped_not_done_with_a_time_left(scene, qtbot):
    # It read "Done. stage i: global distillation · step 2/404 · … · ETA 0:38": done, with 38 s to go.
    viewer, widget, labels, _ = scene
    run = paused_after_first_step(qtbot, widget)
    widget.stop_button.click()
    wait_finished(qtbot, widget)

    step, total = run.last_progress.step, run.last_progress.total_steps
    text = widget.status_label.text()
    assert text.startswith(f"Stopped at step {step}/{total}") and "ETA" not in text and "Done" not in text
    assert "Predict all opened volumes" in text and "Train starts over" in text
    assert widget.predict_button.isEnabled() and widget.train_button.isEnabled()
