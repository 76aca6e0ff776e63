"""The panel closed with its title bar's × (napari takes the widget out of its dock), then reopened."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from napari_action.io.session_store import load_session
from tests.helpers.gui import TIMEOUT, edit_slice, messages_since, start_long_training, wait_first_step


def _close_panel(widget) -> None:
    """Click the × of the widget's dock, as the user does."""
    widget.parent().title.close_button.click()


def _close_window(viewer) -> None:
    """Close napari's window as its ×, File > Close Window and Ctrl+W do (``viewer.close()``, for scripts, removes
    every layer first); forgotten then, as ``Window.close`` forgets it, so that the test's teardown does not close
    it twice."""
    viewer.window._qt_window.close()
    del viewer.window._qt_window


def test_closing_the_panel_while_training_stops_it_and_autosaves_the_model(scene, qtbot):
    """The training of a closed panel went on unseen, and the reopened panel's Train ran a second one beside it."""
    viewer, widget, _, _ = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    before = len(notification_manager.records)
    _close_panel(widget)
    qtbot.waitUntil(lambda: not run.is_running, timeout=TIMEOUT)
    assert run.last_progress.step < run.last_progress.total_steps
    assert messages_since(before, "warning")[-1].startswith("ACTION: the panel was closed, so training stopped")
    # The run's end (on the GUI thread, after its worker thread ended) starts the autosave.
    qtbot.waitUntil(lambda: widget.files_panel.last_autosave is not None, timeout=TIMEOUT)
    assert load_session(widget.files_panel.autosave_path).checkpoint is not None  # with the model it trained


def test_closing_the_viewer_autosaves_what_was_painted_since_the_last_autosave(scene, qtbot):
    """A slice painted less than a minute before napari was closed was in no autosave: gone the next day."""
    viewer, widget, labels, truth = scene
    panel = widget.files_panel
    assert panel.autosave()
    qtbot.waitUntil(lambda: panel.last_autosave is not None and not panel.is_busy, timeout=TIMEOUT)
    edit_slice(labels, 7, 1)  # the last stroke of the day, seconds before closing
    painted = labels.data.copy()
    _close_window(viewer)
    [volume] = load_session(panel.autosave_path).volumes
    assert np.array_equal(volume.painted, painted)


def test_closing_the_viewer_while_training_autosaves_the_model_and_no_step_is_drawn_on_the_closed_window(scene, qtbot):
    """Training for less than the autosave's minute, then closing napari, left nothing: paint and model gone."""
    viewer, widget, _, _ = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    _close_window(viewer)
    # The steps reported meanwhile were drawn 250 ms later on a status line already deleted (a RuntimeError).
    qtbot.waitUntil(lambda: not run.is_running, timeout=TIMEOUT)
    widget.status.progress(run.last_progress)  # a step reported as the window went
    qtbot.wait(500)
    session = load_session(widget.files_panel.autosave_path)
    assert session.checkpoint is not None and session.volumes[0].painted.any()
