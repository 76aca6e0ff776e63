"""Train pressed again over a trained model: the model stays usable until the new one has trained a step.

A new Train builds its trainer in the worker and shows the preview before its first step. Until that
step, the previous model is the one Predict and Save model use: a new trainer that fails to build (a
NaN voxel) or a run stopped during the preview gives it back, and an untrained network is never
offered for prediction or saving.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.files.snapshot import take_snapshot
from napari_action._napari.run_state import RunState
from napari_action.io.checkpoint import weights_fingerprint
from tests.helpers import engine
from tests.helpers.engine import tiny_overrides
from tests.helpers.gui import TIMEOUT, dock, messages_since, paint, paused_after_first_step, wait_finished

PREVIOUS_BACK = "The previous model is back: Predict and Save model use it."


def _trained(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None and widget.predict_button.isEnabled()
    return widget.training_state.trainer


def _predicts_with(widget, qtbot, model) -> None:
    """Predict all runs with ``model`` and writes every slice of the trained volume."""
    widget.predict_all()
    assert widget.training_state.job.trainer is model
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)
    assert widget.training_state.target(0).streamed.all()


def test_a_new_trainer_that_fails_to_build_gives_the_previous_model_back(scene, qtbot):
    viewer, widget, labels, _ = scene
    previous = _trained(scene, qtbot)
    painted = labels.data.copy()
    viewer.layers["vol"].data[0, 0, 0] = np.nan  # the new trainer (built in the worker) refuses NaN
    before = len(notification_manager.records)
    assert widget.start_training() is True
    wait_finished(qtbot, widget)

    assert isinstance(widget.run.error, ValueError)
    assert "NaN" in messages_since(before, "error")[0]
    assert widget.training_state.trainer is previous
    assert widget.predict_button.isEnabled() and widget.save_button.isEnabled()
    assert widget.status_label.text().startswith("Training failed") and PREVIOUS_BACK in widget.status_label.text()
    _predicts_with(widget, qtbot, previous)
    assert labels.data.tobytes() == painted.tobytes()


def test_a_run_stopped_before_its_first_step_gives_the_previous_model_back(scene, qtbot):
    viewer, widget, labels, _ = scene
    previous = _trained(scene, qtbot)
    widget.config_overrides = tiny_overrides(steps_stage3=4000)
    widget.train_button.click()
    widget.stop_button.click()  # before the new trainer's first step
    wait_finished(qtbot, widget)

    assert widget.run.last_progress is None and widget.run.error is None
    assert widget.training_state.trainer is previous
    assert widget.predict_button.isEnabled() and widget.save_button.isEnabled()
    assert widget.status_label.text() == f"Stopped before the first training step. {PREVIOUS_BACK}"
    _predicts_with(widget, qtbot, previous)


def _paused_in_the_preview(qtbot, widget):
    """Click Train and Pause the moment the new trainer is ready, as a user would on reading "Propagating your
    labels…": on a 12 x 256 x 256 scan the preview takes long enough that the pause lands before the first step."""
    widget.config_overrides = tiny_overrides(steps_stage3=20)
    widget.train_button.click()
    run = widget.run
    ready = run.callbacks.ready

    def ready_then_pause(trainer):
        ready(trainer)
        run.pause()

    run.callbacks.ready = ready_then_pause
    qtbot.waitUntil(lambda: run.state is RunState.PAUSED, timeout=TIMEOUT)
    assert run.trainer is not None and run.last_progress is None
    return run


@pytest.fixture
def larger_scene(viewer):
    """A 12 x 256 x 256 scan painted on two slices, the widget docked (tiny network)."""
    image, truth = engine.disc_volume(0, shape=(12, 256, 256), axis=0)
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(image.shape, np.uint8), name="vol labels")
    paint(labels, truth, slices=(2, 9))
    return viewer, dock(viewer), labels


def test_a_run_stopped_in_its_preview_leaves_no_untrained_model(larger_scene, qtbot):
    viewer, widget, labels = larger_scene
    _paused_in_the_preview(qtbot, widget)
    widget.stop_button.click()
    wait_finished(qtbot, widget)

    assert widget.run.last_progress is None
    assert widget.training_state.trainer is None
    assert not widget.predict_button.isEnabled() and not widget.save_button.isEnabled()
    assert widget.status_label.text() == "Stopped before the first training step; press Train to start again."


def test_paused_during_the_preview_offers_no_untrained_network(larger_scene, qtbot):
    viewer, widget, labels = larger_scene
    _paused_in_the_preview(qtbot, widget)

    assert not widget.predict_button.isEnabled() and not widget.save_button.isEnabled()
    before = len(notification_manager.records)
    widget.predict_all()  # from a script
    assert widget.training_state.job is None
    assert "has not trained a step yet" in messages_since(before, "error")[0]

    widget.pause_button.click()  # Resume
    wait_finished(qtbot, widget)
    assert widget.run.error is None and widget.predict_button.isEnabled()


def test_a_session_saved_during_the_preview_keeps_the_previous_model(larger_scene, qtbot):
    viewer, widget, labels = larger_scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    previous = widget.training_state.trainer
    _paused_in_the_preview(qtbot, widget)

    # What an autosave or Save session… writes now: the trained model, not the new untrained network.
    snapshot = take_snapshot(viewer, widget.training_state)
    assert weights_fingerprint(snapshot.checkpoint) == weights_fingerprint(previous.checkpoint())
    assert weights_fingerprint(snapshot.checkpoint) != weights_fingerprint(widget.run.trainer.checkpoint())
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert widget.training_state.trainer is previous


def test_predict_asked_while_pausing_leaves_the_run_paused(scene, qtbot):
    viewer, widget, labels, _ = scene
    run = paused_after_first_step(qtbot, widget)
    widget.pause_button.click()  # Resume, then Pause again and Predict before the pause lands
    qtbot.waitUntil(lambda: run.state is RunState.RUNNING, timeout=TIMEOUT)
    widget.pause_button.click()
    assert run.state is RunState.PAUSING
    widget.predict_all()
    qtbot.waitUntil(lambda: widget.training_state.job is not None, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)

    step = run.last_progress.step
    qtbot.wait(500)  # a resumed run would take steps meanwhile
    assert run.state is RunState.PAUSED and run.last_progress.step == step
    assert widget.status_label.text() == "Paused; press Resume to train on."
    widget.stop_training()
    wait_finished(qtbot, widget)
