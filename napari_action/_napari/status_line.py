"""The widget's status line and loss plot: a run's progress a few times a second, any other message at once."""

from __future__ import annotations

from magicgui.widgets import Label
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QLabel
from superqt.utils import qthrottled

from napari_action._napari.plot import LossPlot
from napari_action._napari.prediction_job import PredictionJob
from napari_action._napari.run_state import RunState
from napari_action._napari.status import finished_text, status_text
from napari_action._napari.workers import TrainingRun
from napari_action.data.slicing_axis import AxisDecision
from napari_action.inference.model_protocol import TrainableModel
from napari_action.progress import TrainProgress

#: Longest wait between two redraws of the status line and the loss plot while training, in ms: a
#: redraw per step (5-12 a second on 2 cores) recomposes napari's whole window around its OpenGL
#: canvas, and 4 a second reads as well (docs/benchmarks.md, "How fast the widget trains").
PROGRESS_REDRAW_MS = 250

STOPPED_BEFORE_A_STEP = "Stopped before the first training step; press Train to start again."


class StatusLine:
    """Shows a run's steps and the widget's messages in one label, with the loss plot beneath it.

    Every step's loss joins the plot, but the label, the device line and the plot are redrawn from
    the latest step at most every :data:`PROGRESS_REDRAW_MS`. A message replaces the line at once
    and drops a redraw still pending, so a step's line never comes back over "Done." or
    "Stopping…".

    Parameters
    ----------
    label : QLabel
        The status line.
    plot : LossPlot
        The loss plot the steps feed.
    device_line : magicgui.widgets.Label
        The options form's device line: "using: <device>" once a run reports its device.
    """

    def __init__(self, label: QLabel, plot: LossPlot, device_line: Label):
        self._label = label
        self._plot = plot
        self._device_line = device_line
        self._redraw = qthrottled(self._show, timeout=PROGRESS_REDRAW_MS)
        # The window closed (its widgets deleted) while a run still reported steps: nothing is drawn from then on.
        self._closed = False
        label.destroyed.connect(self._forget)

    def progress(self, progress: TrainProgress) -> None:
        """Take one step's progress: its loss is plotted, its line shown within :data:`PROGRESS_REDRAW_MS`."""
        if self._closed:
            return
        self._plot.add_loss(progress.step, progress.losses.get("total", float("nan")), repaint=False)
        self._redraw(progress)

    def stopping(self, run: TrainingRun | None) -> None:
        """Say what a stop waits for: the step in hand, or, before the first step, the volumes being
        prepared (or the preview streamed)."""
        stepping = run is not None and run.last_progress is not None
        self.say("Stopping after the current step…" if stepping else "Stopping once the volumes are prepared…")

    def trainer_ready(self, trainer: TrainableModel, decided: AxisDecision | None) -> None:
        """Say what a new trainer does first (the preview), then where it trains and along which axis (and why)."""
        # The thread count in trainer.device_label is per calling thread: the
        # worker's own shows up with the first progress (the device line).
        device = trainer.device_label.split(",")[0]
        propagating = trainer.config.prior_source == "propagation"
        source = "Propagating your labels along the image" if propagating else "Interpolating between your slices"
        why = f" ({decided.reason})" if decided is not None and decided.axis == trainer.axis else ""
        self.say(f"{source} (preview), then training on {device}, slicing axis {trainer.axis}{why}…")

    def run_ended(self, run: TrainingRun, previous_back: bool) -> None:
        """Say how ``run`` ended (a failed run keeps its "Training failed" line), and whether the model from
        before its Train is the model again (``previous_back``: it ended before its first step)."""
        back = "The previous model is back: Predict and Save model use it."
        if run.error is None and run.last_progress is not None:
            self.say(finished_text(run.last_progress))
        elif run.error is None:  # stopped while preparing or previewing
            self.say(f"Stopped before the first training step. {back}" if previous_back else STOPPED_BEFORE_A_STEP)
        elif previous_back:
            self.say(f"{self._label.text()} {back}")

    def predicting(self, job: object, image_name: str) -> None:
        """A prediction job's progress: here rather than in a napari progress bar, whose animation
        repaints the main window on every frame (docs/benchmarks.md, "GUI responsiveness during Predict all")."""
        if isinstance(job, PredictionJob):
            self.say(job.progress_text(image_name))

    def job_ended(self, outcome: str | None, run: TrainingRun | None, otherwise: str) -> None:
        """Say how a prediction or save job ended: ``outcome`` (what a stopped job left; None: it ran to its end),
        else ``otherwise``.

        Beside a training (resumed after the job, or paused by the user) the line is the training's again at once,
        its next step or "Paused": ``outcome`` is then a napari notification too, where the user can still read it
        (it was replaced before anyone saw it).
        """
        if run is None or not run.is_running:
            self.say(outcome or otherwise)
            return
        if outcome:
            show_info(f"ACTION: {outcome}")
        if run.state is RunState.PAUSED:  # the user's pause: the job's "Predicting…" is over
            self.say("Paused; press Resume to train on.")

    def say(self, text: str) -> None:
        """Show ``text`` now, in place of the last step's line and of any redraw still pending."""
        self._redraw.cancel()
        if self._closed:
            return
        self._label.setText(text)
        self._plot.update()  # the points a dropped redraw would have drawn

    def _forget(self, *_) -> None:
        self._closed = True
        self._redraw.cancel()

    def _show(self, progress: TrainProgress) -> None:
        if self._closed:  # a redraw due as the label went
            return
        self._label.setText(status_text(progress))
        device = f"using: {progress.device}"
        if self._device_line.value != device:
            self._device_line.value = device
        self._plot.update()
