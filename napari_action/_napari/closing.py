"""The dock widget leaving the viewer: its panel closed (the title bar's ×), or the viewer closed.

napari takes a closed panel's widget out of its dock without deleting it, and a running
training keeps the widget alive (the worker calls back into it): left alone, it trained on
unseen, wrote into the prediction layers, and the panel reopened from the menu (a new
widget) started a second training beside it. :class:`ClosingWatch` stops the work when the
panel closes, the normal way, so that its end autosaves the model like any stopped run. When the
viewer's window closes, it autosaves at once what changed since the last autosave (up to a
minute of painting and corrections, else lost with the window).

napari has no public event for its window closing, nor a public way to its Qt window
(``Window.qt_viewer`` is deprecated): :func:`main_window_of` takes the private
``viewer.window._qt_window`` (checked on napari 0.9.2), and where a napari has none there the plugin
works without the autosave on closing, and says so once in the log.
"""

from __future__ import annotations

import logging

import napari
from napari.utils.notifications import show_warning
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget

from napari_action._napari.prediction_job import PredictionJob

logger = logging.getLogger(__name__)


class ClosingWatch(QObject):
    """Stop ``widget``'s training and prediction when its panel is closed; abandon them when it dies.

    Parameters
    ----------
    widget : ActionWidget
        The dock widget to watch (it becomes this object's parent).
    """

    def __init__(self, widget):
        super().__init__(widget)
        self.widget = widget
        widget.installEventFilter(self)
        # The training state is not a QObject, so it still receives this when the widget dies.
        widget.destroyed.connect(widget.training_state.abandon)
        # napari's main window. Docking the widget does not lead to it (the dock is not in the window yet when
        # the widget is put in it), so the viewer's is watched. (Not kept here: it would keep the closed window alive.)
        window = main_window_of(widget.viewer)
        if window is not None:
            window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt override)
        if obj is self.widget and event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            stop_work_of_closed(self.widget)
        elif obj is not self.widget and event.type() == QEvent.Type.Close:  # the viewer's window
            # Before the window and the form go; once more if the user cancels the close and closes again later.
            self.widget.files_panel.autosave_before_closing()
        return False


def main_window_of(viewer) -> QWidget | None:
    """napari's Qt main window of ``viewer``, to hear it close; None, said in the log, where this napari has none
    at the private ``viewer.window._qt_window`` (the only way to it: see the module's docstring)."""
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if isinstance(window, QWidget):
        return window
    logger.warning(
        "napari %s has no Qt main window at viewer.window._qt_window: closing napari will not autosave the "
        "last minute's work (the autosave every minute still runs; Save session… before closing)",
        napari.__version__,
    )
    return None


def stop_work_of_closed(widget) -> None:
    """The panel of ``widget`` (an ActionWidget) was closed: stop training after its step, drop a prediction.

    A stopped run ends as one stopped with Stop: the files panel autosaves what it ended with.
    """
    state, run = widget.training_state, widget.run
    training = run is not None and run.is_running
    predicting = isinstance(state.job, PredictionJob)
    if not training and not predicting:
        return
    if predicting:
        state.job.abandon()  # the volumes predicted so far stay in their layers
        # It calls back no more: forgotten, so that the stopped run's end is autosaved without waiting for it.
        state.job, state.resume_after_job = None, False
    if training:
        run.stop()
        kept = "The model and your layers are" if state.lasting_model is not None else "Your layers are"
        show_warning(
            f"ACTION: the panel was closed, so training stopped after its current step. {kept} autosaved to "
            f"{widget.files_panel.autosave_target()}: reopen the panel and Open session… to go on from there."
        )
    else:
        show_warning("ACTION: the panel was closed, so the prediction stopped; the volumes predicted so far stay.")
