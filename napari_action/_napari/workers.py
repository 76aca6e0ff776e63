"""Run the trainer's generators in napari thread workers.

:class:`TrainingRun` wraps ``Trainer.iter_train()`` in a napari worker
(:func:`~napari_action._napari.threads.new_worker`: the run shows up in the
activity dock with a progress bar and can be cancelled there; errors become
napari notifications), forwards every yielded
:class:`~napari_action.progress.TrainProgress` to callbacks on the GUI thread,
and hands streamed slice predictions over at most once per ``throttle_ms``.
Pause, resume and stop go through the worker API; new labels and focus
requests are sent into the generator.

Threads
-------
The worker thread runs at lower priority and starts with frequent GIL
hand-overs (:mod:`.threads`); the widget caps torch's CPU threads with
``TrainConfig.num_threads`` (the form's "CPU threads", by default every
core), which the trainer applies with ``torch.set_num_threads``.

Messages into the generator
---------------------------
``GeneratorWorker.send`` keeps one value only, so two messages sent between
two steps (labels, then a focus request) would overwrite each other. Every
message gets a number; each ``send`` carries all messages not yet
acknowledged, and the driving generator acknowledges the highest number it
took in with every yield. A newer message of the same kind supersedes an older
one: label snapshots are complete, and only the last focus matters.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from superqt.utils import qthrottled

from napari_action._napari.run_state import RunState
from napari_action._napari.threads import (
    frequent_gil_handover,
    lower_thread_priority,
    new_worker,
    warm_up_torch,
)
from napari_action.inference.model_protocol import TrainableModel
from napari_action.inference.uncertainty import with_uncertainty
from napari_action.progress import AnnotationUpdate, FocusRequest, SlicePrediction, TrainProgress

logger = logging.getLogger(__name__)


class _Step(NamedTuple):
    """What the driving generator yields: the progress plus an acknowledgement.

    The first yield carries the trainer instead of progress (``progress`` is
    None); the next ones, before training, the preview (the prior of the
    painted slices, as it is computed).
    """

    progress: TrainProgress | None
    received: int
    trainer: TrainableModel | None = None
    preview: tuple[SlicePrediction, ...] = ()


def _take(incoming: Sequence[tuple[int, Any]] | None, received: int, queue: list) -> int:
    """Queue the messages numbered above ``received``; return the new highest number."""
    for number, message in incoming or ():
        if number <= received:
            continue
        queue[:] = [old for old in queue if type(old) is not type(message)]
        queue.append(message)
        received = number
    return received


def _scored(predictions: Sequence[SlicePrediction], trainer: TrainableModel) -> tuple[SlicePrediction, ...]:
    """Streamed slices with their uncertainty and slice scores, computed here in the worker rather than by the
    Refine panel on napari's GUI thread.

    The confidence they were computed from goes: nothing in the widget reads it once the uncertainty is made, and
    both held until a run is written cost 105 MB more per 100-slice run of a 512 x 512 CT.
    """
    n_classes = len(trainer.class_values)  # read at each hand-over: a class painted mid-run adds one
    scored = (with_uncertainty(prediction, n_classes) for prediction in predictions)
    return tuple(p if p.uncertainty is None else dataclasses.replace(p, confidence=None) for p in scored)


def _drive(
    build: Callable[[], TrainableModel], background: bool = True, preview: bool = False
) -> Generator[_Step, Any, None]:
    """Build the trainer, then run its ``iter_train()`` passing messages in one per step.

    With ``preview``, the trainer's ``iter_preview()`` (the prior of the painted
    slices, run by run) is yielded before training.

    ``build`` runs here, in the worker, so the normalisation of large volumes
    stays off the GUI thread. ``background`` lowers the priority of the thread
    running this (the worker's) and does the Python-heavy start (imports,
    model) with frequent GIL hand-overs.
    """
    if background:
        lower_thread_priority()
        with frequent_gil_handover():
            warm_up_torch()
            trainer = build()
    else:
        trainer = build()
    # What the trainer was built from goes: the widget's copy of each painted layer (a whole volume, 105 MB of a
    # 512 x 512 x 400 CT) stayed until the next Train. The trainer keeps the painted slices only.
    del build
    queue: list = []
    received = _take((yield _Step(None, 0, trainer)), 0, queue)
    # The prior (seconds of propagation) first, a run of slices at a time: the user sees it grow
    # outwards from the painted slices; training then reuses it. Stop is honoured between runs.
    for predictions in trainer.iter_preview() if preview else ():
        received = _take((yield _Step(None, received, preview=_scored(predictions, trainer))), received, queue)
    steps = trainer.iter_train()
    command = None  # a generator that has not started yet cannot take a message
    try:
        while True:
            try:
                progress = steps.send(command)
            except StopIteration:
                return
            if progress.predictions:
                progress = dataclasses.replace(progress, predictions=_scored(progress.predictions, trainer))
            received = _take((yield _Step(progress, received)), received, queue)
            command = queue.pop(0) if queue else None
    finally:
        steps.close()


@dataclass
class RunCallbacks:
    """GUI-thread callbacks of a :class:`TrainingRun` (all optional).

    ``ready`` receives the trainer before the first step. ``predictions``
    receives a batch of slice predictions and returns the ones it could not
    write yet (e.g. during a brush stroke); those are retried.
    """

    ready: Callable[[TrainableModel], None] | None = None
    progress: Callable[[TrainProgress], None] | None = None
    predictions: Callable[[list[SlicePrediction]], list[SlicePrediction] | None] | None = None
    state: Callable[[RunState], None] | None = None
    error: Callable[[Exception], None] | None = None
    finished: Callable[[], None] | None = None


class TrainingRun:
    """One training run of a trainer in a napari thread worker.

    Parameters
    ----------
    trainer : TrainableModel, optional
        The trainer to run (e.g. a :class:`~napari_action.training.trainer.Trainer`).
    callbacks : RunCallbacks
        Called on the GUI thread.
    build : callable, optional
        Instead of ``trainer``: a function that builds it in the worker thread
        (then :attr:`trainer` is None until the ``ready`` callback).
    total_steps : int
        Steps the run will take: the length of its progress bar.
    throttle_ms : int
        Minimum interval between two hand-overs of streamed predictions.
    progress_bar : bool
        Show a napari progress bar (activity dock) for the run. Off by default: while one runs,
        napari animates its "in progress" indicator, and every frame redraws the whole window around
        the OpenGL canvas; under software OpenGL (remote desktops, Xvfb) that took a core from
        training, which ran at 55-65 % of its speed (docs/benchmarks.md, "How fast the widget
        trains"). The widget's status line shows step, total and ETA instead.
    """

    def __init__(
        self,
        trainer: TrainableModel | None = None,
        callbacks: RunCallbacks | None = None,
        *,
        build: Callable[[], TrainableModel] | None = None,
        total_steps: int,
        throttle_ms: int = 250,
        progress_bar: bool = False,
    ):
        if (trainer is None) == (build is None):
            raise TypeError("A TrainingRun needs either a trainer or a function that builds one.")
        self.trainer = trainer
        self._build = build if build is not None else (lambda: trainer)
        # A run that builds its trainer shows the prior first; a further round of a trainer does not.
        self._preview = build is not None
        self.total_steps = total_steps
        self._yielded = False
        self.callbacks = callbacks or RunCallbacks()
        self.progress_bar = progress_bar
        self.last_progress: TrainProgress | None = None
        self.error: Exception | None = None
        self.state = RunState.IDLE
        self._resume_on_pause = False
        self._worker = None
        self._number = 0
        self._unacknowledged: dict[type, tuple[int, Any]] = {}
        self._predictions: dict[tuple[int, int, int], SlicePrediction] = {}
        self._flush = qthrottled(self._flush_predictions, timeout=throttle_ms)

    # -- state ---------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until the worker's ``finished`` reached the GUI thread."""
        return self.state.is_alive

    @property
    def worker(self):
        """The napari ``GeneratorWorker`` (None before :meth:`start`)."""
        return self._worker

    def _set_state(self, state: RunState) -> None:
        self.state = state
        if self.callbacks.state is not None:
            self.callbacks.state(state)

    # -- control -------------------------------------------------------------
    def start(self) -> None:
        """Create the worker, connect every signal, then start the thread."""
        if self._worker is not None:
            raise RuntimeError("A TrainingRun starts once; make a new one to train again.")
        progress = None
        if self.progress_bar:
            progress = {"total": self.total_steps + 1, "desc": "ACTION training"}  # + the ready yield
        build, self._build = self._build, None  # the generator lets it go once the trainer is built
        worker = new_worker(
            _drive,
            build,
            True,
            self._preview,
            progress=progress,
            connect={
                "yielded": self._on_yielded,
                "errored": self._on_errored,
                "paused": self._on_paused,
                "resumed": self._on_resumed,
                "finished": self._on_finished,
            },
        )
        self._worker = worker
        self._set_state(RunState.RUNNING)
        worker.start()

    def pause(self) -> None:
        """Pause after the current step (the worker honours it at the next yield)."""
        if self.state is RunState.RUNNING:
            if not self._resume_on_pause:  # else the earlier pause request is still pending
                self._worker.pause()
            self._resume_on_pause = False
            self._set_state(RunState.PAUSING)

    def resume(self) -> None:
        """Resume a paused (or pausing) run."""
        if self.state is RunState.PAUSED:
            self._worker.resume()
        elif self.state is RunState.PAUSING:
            # The worker has no "cancel pause": let the pause land, then resume at once.
            self._resume_on_pause = True
            self._set_state(RunState.RUNNING)

    def toggle_pause(self) -> None:
        """Pause a running run, resume a paused one."""
        if self.state in (RunState.PAUSED, RunState.PAUSING):
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """Stop after the current step.

        A running generator is asked to return (``trainer.request_stop``), so
        it finishes in the worker thread and ``returned`` is emitted. A paused
        worker never reaches the generator again, and a generator that has not
        yielded yet resets the request when it starts, so those are quit instead
        (the worker honours ``quit`` at the next yield).
        """
        if not self.is_running or self.state is RunState.STOPPING:
            return
        quit_worker = self.state in (RunState.PAUSED, RunState.PAUSING) or self.last_progress is None
        self._set_state(RunState.STOPPING)
        if self.trainer is not None:
            self.trainer.request_stop()
        if quit_worker:
            self._worker.quit()

    def abandon(self) -> None:
        """Stop without calling back into the GUI (its widgets are going away)."""
        self.callbacks = RunCallbacks()
        self._flush.cancel()
        if self.is_running:
            if self.trainer is not None:
                self.trainer.request_stop()
            self._worker.quit()

    # -- messages --------------------------------------------------------------
    def send_annotation(self, update: AnnotationUpdate) -> None:
        """Hand new labels to the trainer; applied before its next step."""
        self._post(update)

    def send_focus(self, request: FocusRequest) -> None:
        """Ask the trainer to stream this slice next."""
        self._post(request)

    def _post(self, message: Any) -> None:
        if not self.is_running:
            return
        self._number += 1
        self._unacknowledged[type(message)] = (self._number, message)
        if self._yielded:
            self._send_unacknowledged()
        # else: a generator that has not yielded yet cannot take a value;
        # the first yield sends what is waiting (see _on_yielded).

    def _send_unacknowledged(self) -> None:
        self._worker.send(tuple(sorted(self._unacknowledged.values(), key=lambda item: item[0])))

    # -- worker signals (GUI thread) -----------------------------------------------
    def _on_yielded(self, step: _Step) -> None:
        self._unacknowledged = {k: v for k, v in self._unacknowledged.items() if v[0] > step.received}
        if self._unacknowledged and not self._yielded:
            self._send_unacknowledged()  # posted before the generator could take them
        self._yielded = True
        if step.trainer is not None:
            self.trainer = step.trainer
            if self.callbacks.ready is not None:
                self.callbacks.ready(step.trainer)
        if step.preview:
            self._queue_predictions(step.preview)
        if step.progress is None:
            return
        self.last_progress = step.progress
        if self.callbacks.progress is not None:
            self.callbacks.progress(step.progress)
        if step.progress.predictions:
            self._queue_predictions(step.progress.predictions)

    def _queue_predictions(self, predictions: Sequence[SlicePrediction]) -> None:
        for prediction in predictions:
            self._predictions[(prediction.volume_index, prediction.start, prediction.stop)] = prediction
        self._flush()

    def _flush_predictions(self) -> None:
        if not self._predictions or self.callbacks.predictions is None:
            return
        batch = list(self._predictions.values())
        self._predictions = {}
        for left in self.callbacks.predictions(batch) or ():
            # Keep a newer prediction of the same slices if one arrived meanwhile.
            self._predictions.setdefault((left.volume_index, left.start, left.stop), left)
        if self._predictions:
            self._flush()

    def _on_errored(self, exc: Exception) -> None:
        logger.error("training failed: %s", exc)
        self.error = exc
        if self.callbacks.error is not None:
            self.callbacks.error(exc)

    def _on_paused(self) -> None:
        if self._resume_on_pause:
            self._resume_on_pause = False
            self._worker.resume()
        elif self.state is RunState.PAUSING:
            self._set_state(RunState.PAUSED)

    def _on_resumed(self) -> None:
        if self.state is RunState.PAUSED:
            self._set_state(RunState.RUNNING)

    def _on_finished(self) -> None:
        self._flush.cancel()
        self._flush_predictions()  # the last stream must land even inside the throttle window
        self._predictions = {}
        self._set_state(RunState.FINISHED)
        if self.callbacks.finished is not None:
            self.callbacks.finished()
