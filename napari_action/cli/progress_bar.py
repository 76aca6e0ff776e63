"""Training progress on the terminal, shared by ``napari-action train`` and ``demo``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from napari_action.progress import TrainProgress

if TYPE_CHECKING:  # for annotations only: importing the trainer imports torch
    from napari_action.training.trainer import Trainer


class TerminalProgress:
    """Training progress on stderr: a bar redrawn in place on a terminal, plain lines elsewhere.

    On a terminal the bar is redrawn at most 5 times a second. Written to a
    file or a CI log, carriage returns would pile every redraw into one
    enormous line, so there a line is printed when a stage starts, every
    ``log_every_s`` seconds and at the end.

    Parameters
    ----------
    stream : text stream, optional
        Where to draw; stderr by default, so that results printed on stdout stay clean.
    width : int
        Characters of the bar itself.
    log_every_s : float
        Seconds between two lines when ``stream`` is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28, log_every_s: float = 30.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.log_every_s = log_every_s
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = float("-inf")
        self._stage: str | None = None
        self._shown_step: int | None = None

    def update(self, progress: TrainProgress, force: bool = False) -> None:
        """Show ``progress`` if it is time to (or ``force``); a notice always, on a line of its own."""
        if progress.notice:
            prefix = "\n" if self.interactive and self._shown_step is not None else ""
            self.stream.write(f"{prefix}Note: {progress.notice}\n")
        now = time.perf_counter()
        new_stage = progress.stage != self._stage
        self._stage = progress.stage
        interval = 0.2 if self.interactive else self.log_every_s
        if not (force or new_stage or now - self._last >= interval) or progress.step == self._shown_step:
            return
        self._last, self._shown_step = now, progress.step
        start, end = ("\r", "") if self.interactive else ("", "\n")
        self.stream.write(f"{start}{self._line(progress)}{end}")
        self.stream.flush()

    def _line(self, progress: TrainProgress) -> str:
        filled = int(self.width * progress.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        eta = "?" if progress.eta_seconds == float("inf") else f"{progress.eta_seconds:4.0f}s"
        loss = progress.losses.get("total", float("nan"))
        return (
            f"[{bar}] {progress.step}/{progress.total_steps} {progress.stage[:28]:<28} "
            f"loss {loss:6.3f}  {progress.steps_per_second:4.1f} it/s  eta {eta} "
        )

    def close(self) -> None:
        """End the bar's line (plain lines are already ended)."""
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def run_training(trainer: Trainer, bar: TerminalProgress | None = None) -> TrainProgress | None:
    """Drive ``trainer.iter_train()`` to the end, drawing ``bar``; return the last progress."""
    last = None
    for last in trainer.iter_train():
        if bar is not None:
            bar.update(last)
    if bar is not None and last is not None:
        bar.update(last, force=True)
        bar.close()
    return last


def describe_schedule(trainer: Trainer) -> str:
    """``"1200 steps (stage i: global distillation 100, ...)"``: what a run will do, stage by stage."""
    stages = trainer.stage_steps()
    total = sum(steps for _, steps in stages)
    if len(stages) == 1:
        return f"{total} steps"
    return f"{total} steps ({', '.join(f'{name} {steps}' for name, steps in stages)})"
