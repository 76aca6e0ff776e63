"""Training speed and time left, for the progress a trainer yields after every step."""

from __future__ import annotations

import time

__all__ = ["RateClock"]


class RateClock:
    """Steps per second (smoothed) and the time left.

    A step that took far longer than the others (``PAUSE_FACTOR`` times) was a
    pause (Pause pressed, a laptop asleep, a prediction run in between) rather
    than slow training: it leaves the rate alone, so the time left stays right
    after a resume.

    Parameters
    ----------
    total : int
        Steps of the whole round.
    now : float, optional
        Start time in seconds (default: ``time.perf_counter()``; tests pass their own clock).
    """

    PAUSE_FACTOR = 20.0

    def __init__(self, total: int, now: float | None = None):
        self.total = total
        self.done = 0
        self.rate = 0.0
        self._last = time.perf_counter() if now is None else now

    def tick(self, now: float | None = None) -> None:
        """Count one finished step, ending at ``now``."""
        now = time.perf_counter() if now is None else now
        seconds = max(now - self._last, 1e-6)
        self._last = now
        self.done += 1
        if self.done <= 2:
            # The first steps set the rate outright: there is no history to smooth with yet.
            self.rate = 1.0 / seconds
        elif seconds * self.rate < self.PAUSE_FACTOR:
            self.rate = 0.9 * self.rate + 0.1 / seconds

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (infinite before the first step)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else float("inf")
