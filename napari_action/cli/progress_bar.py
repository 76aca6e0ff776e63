"""Training progress on the terminal, shared by ``napari-action train`` and ``demo``."""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING, TextIO

from tqdm import tqdm

from napari_action.progress import TrainProgress

if TYPE_CHECKING:  # for annotations only: importing the trainer imports torch
    from napari_action.training.trainer import Trainer


class TerminalProgress:
    """Training progress on stderr: a tqdm bar on a terminal, plain lines elsewhere.

    On a terminal, tqdm draws the bar (stage, steps, elapsed and remaining time,
    loss). Written to a file or a CI log, a redrawn bar would pile every redraw
    into one enormous line of carriage returns, so there a line is printed when a
    stage starts, every ``log_every_s`` seconds and at the end. Notices (e.g.
    batches halved after the GPU ran out of memory) get a line of their own.

    Parameters
    ----------
    stream : text stream, optional
        Where to draw; stderr by default, so that results printed on stdout stay clean.
    log_every_s : float
        Seconds between two lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, log_every_s: float = 30.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.log_every_s = log_every_s
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: tqdm | None = None
        self._last = float("-inf")
        self._stage: str | None = None
        self._shown_step: int | None = None
        self._started: float | None = None  # the first logged step: a log's elapsed time counts from there

    def update(self, progress: TrainProgress, force: bool = False) -> None:
        """Show ``progress`` (on a terminal always; in a log if it is time to, or ``force``)."""
        if self.interactive:
            self._draw(progress)
        else:
            self._log(progress, force)

    def _draw(self, progress: TrainProgress) -> None:
        if self._bar is None:
            self._bar = tqdm(total=progress.total_steps, file=self.stream, mininterval=0.2, bar_format=_BAR_FORMAT)
        if progress.notice and progress.step != self._shown_step:
            self._bar.write(f"Note: {progress.notice}", file=self.stream)
        self._shown_step = progress.step
        self._bar.set_description_str(progress.stage[:28], refresh=False)
        self._bar.set_postfix_str(f"loss {progress.losses.get('total', float('nan')):.3f}", refresh=False)
        self._bar.update(progress.step - self._bar.n)

    def _log(self, progress: TrainProgress, force: bool) -> None:
        if progress.notice and progress.step != self._shown_step:
            self.stream.write(f"Note: {progress.notice}\n")
        now = time.perf_counter()
        new_stage = progress.stage != self._stage
        self._stage = progress.stage
        if not (force or new_stage or now - self._last >= self.log_every_s) or progress.step == self._shown_step:
            self.stream.flush()
            return
        if self._started is None:
            self._started = now
        self._last, self._shown_step = now, progress.step
        self.stream.write(_log_line(progress, now - self._started) + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar (plain lines are already ended)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


_BAR_FORMAT = "{desc:<28} {bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


def _log_line(progress: TrainProgress, elapsed_s: float) -> str:
    """``12:04:31 step 512/1200 stage iii: loss 0.321, 3.2 it/s, elapsed 2:40, eta 3:35``.

    A batch job's log is read later and beside others: the clock time says when, and hours and minutes read
    at a glance where "eta 120110s" did not.
    """
    eta = "?" if not math.isfinite(progress.eta_seconds) else _duration(progress.eta_seconds)
    loss = progress.losses.get("total", float("nan"))
    return (
        f"{time.strftime('%H:%M:%S')} step {progress.step}/{progress.total_steps} {progress.stage}: "
        f"loss {loss:.3f}, {progress.steps_per_second:.1f} it/s, elapsed {_duration(elapsed_s)}, eta {eta}"
    )


def _duration(seconds: float) -> str:
    """``0:07``, ``2:40``, ``33:21:50``: minutes and seconds, hours in front when there are any."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def run_training(trainer: Trainer, bar: TerminalProgress | None = None) -> TrainProgress | None:
    """Drive ``trainer.iter_train()`` to the end, drawing ``bar``; return the last progress.

    With a ``bar``, the painted labels are propagated first, with a line before and after: on a CT of
    512 x 512 x 400 that took over a minute, in which nothing was printed, and the first step's remaining
    time counted it as a step's (eta 7:31 for 7 steps of 2 s).
    """
    if bar is not None:
        propagate_labels(trainer, bar.stream)
    last = None
    for last in trainer.iter_train():
        if bar is not None:
            bar.update(last)
    if bar is not None and last is not None:
        bar.update(last, force=True)
        bar.close()
    return last


def propagate_labels(trainer: Trainer, stream: TextIO) -> None:
    """Compute what the painted slices say about the others (kept for training), saying so on ``stream``."""
    started = time.perf_counter()
    doing, done = _PRIOR_WORDS.get(trainer.config.prior_source, _PRIOR_WORDS["propagation"])
    stream.write(f"{time.strftime('%H:%M:%S')} {doing} the painted labels along axis {trainer.axis}...\n")
    stream.flush()
    slices = sum(run.labels.shape[0] for runs in trainer.iter_preview() for run in runs)
    seconds = _duration(time.perf_counter() - started)
    stream.write(f"{time.strftime('%H:%M:%S')} labels {done} to {slices} slices in {seconds}\n")
    stream.flush()


#: How the lines of :func:`propagate_labels` name the work of each ``TrainConfig.prior_source``.
_PRIOR_WORDS = {"propagation": ("propagating", "propagated"), "interpolation": ("interpolating", "interpolated")}


def describe_schedule(trainer: Trainer) -> str:
    """``"1200 steps (supervised start 300, stage iii: ACTION 900)"``: what a run will do, stage by stage."""
    stages = trainer.stage_steps()
    total = sum(steps for _, steps in stages)
    if len(stages) == 1:
        return f"{total} steps"
    return f"{total} steps ({', '.join(f'{name} {steps}' for name, steps in stages)})"
