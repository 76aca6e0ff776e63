"""The panel closed with its title bar's × (napari takes the widget out of its dock), then reopened."""

from __future__ import annotations

from napari.utils.notifications import notification_manager

from napari_action.io.session_store import load_session
from tests.helpers.gui import TIMEOUT, messages_since, start_long_training, wait_first_step


def _close_panel(widget) -> None:
    """Click the × of the widget's dock, as the user does."""
    widget.parent().title.close_button.click()


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
