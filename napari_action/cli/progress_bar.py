"""Training progress on the terminal, shared by ``napari-action train`` and ``demo``."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from napari_action.progress import TrainProgress

if TYPE_CHECKING:  # for annotations only: importing the trainer imports torch
    from napari_action.training.trainer import Trainer


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second.

    Parameters
    ----------
    stream : text stream, optional
        Where to draw; stderr by default, so that results printed on stdout stay clean.
    width : int
        Characters of the bar itself.
    """

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0.0

    def update(self, progress: TrainProgress, force: bool = False) -> None:
        """Redraw the line for ``progress``, unless the last redraw is under 0.2 s old."""
        now = time.perf_counter()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        filled = int(self.width * progress.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        eta = "?" if progress.eta_seconds == float("inf") else f"{progress.eta_seconds:4.0f}s"
        loss = progress.losses.get("total", float("nan"))
        self.stream.write(
            f"\r[{bar}] {progress.step}/{progress.total_steps} {progress.stage[:28]:<28} "
            f"loss {loss:6.3f}  {progress.steps_per_second:4.1f} it/s  eta {eta} "
        )
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line."""
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
