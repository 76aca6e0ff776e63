"""The states of a training run, as the widget's buttons and jobs see them."""

from __future__ import annotations

from enum import Enum


class RunState(Enum):
    """Where a :class:`~napari_action._napari.workers.TrainingRun` is.

    ``PAUSING`` and ``STOPPING`` last from the request to the end of the step
    running when it was made: the worker honours both at its next yield.
    """

    IDLE = "idle"  # made, not started
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"  # the worker ended: done, stopped or failed

    @property
    def is_training(self) -> bool:
        """Running, pausing or paused: a run the user can still pause, resume or stop."""
        return self in (RunState.RUNNING, RunState.PAUSING, RunState.PAUSED)

    @property
    def is_alive(self) -> bool:
        """The worker has started and not finished yet (stopping included)."""
        return self.is_training or self is RunState.STOPPING
