"""The panel closed with its title bar's × (napari takes the widget out of its dock), then reopened."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
from napari.utils.notifications import notification_manager

from napari_action._napari.closing import main_window_of
from napari_action._napari.widget import ActionWidget
from napari_action.io.session_store import load_session
from tests.helpers import gui
from tests.helpers.engine import tiny_overrides
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


def test_a_napari_without_its_private_main_window_still_trains_and_autosaves_and_says_closing_will_not(
    viewer, qtbot, caplog
):
    # The autosave on closing hears napari's window through its private viewer.window._qt_window (no public event
    # tells a window closes). A napari keeping it elsewhere must still load the plugin, and the log says what is off.
    window = viewer.window._qt_window
    assert main_window_of(viewer) is window
    image, truth = gui.disc_volume()
    viewer.add_image(image, name="vol", **gui.GRID)
    gui.paint(viewer.add_labels(np.zeros(gui.SHAPE, np.uint8), name="vol labels", **gui.GRID), truth)
    del viewer.window._qt_window  # as a napari without it
    try:
        with caplog.at_level(logging.WARNING, logger="napari_action._napari.closing"):
            widget = ActionWidget(viewer)
    finally:
        viewer.window._qt_window = window  # napari's own teardown closes it
    [said] = [record.getMessage() for record in caplog.records if record.name == "napari_action._napari.closing"]
    assert "has no Qt main window at viewer.window._qt_window: closing napari will not autosave" in said
    # One there but no Qt window is none either (installing the event filter on it would stop the widget loading).
    assert main_window_of(SimpleNamespace(window=SimpleNamespace(_qt_window="not a Qt window"))) is None

    viewer.window.add_dock_widget(widget, name="ACTION")
    widget.config_overrides = tiny_overrides()
    widget.train_button.click()
    gui.wait_idle(qtbot, widget)
    assert "vol ACTION" in viewer.layers
    qtbot.waitUntil(lambda: widget.files_panel.last_autosave is not None, timeout=TIMEOUT)  # the run's end
    assert load_session(widget.files_panel.autosave_path).checkpoint is not None
