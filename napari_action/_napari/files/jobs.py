"""The workers of the "Model, export & session" panel (loads, exports, saves, autosaves), by name.

Kept apart from the panel's Qt widgets, so that a worker ending after the panel was destroyed calls nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any


class PanelJobs:
    """The panel's running workers, by name; forwards their results while the panel lives.

    A plain object: after :meth:`close` (the panel was destroyed) late worker
    signals go nowhere instead of into deleted Qt widgets.
    """

    def __init__(self, on_done: Callable[[str], None]):
        self.running: dict[str, Any] = {}
        self._on_done: Callable[[str], None] | None = on_done

    def add(self, name: str, worker, on_returned: Callable, on_error: Callable | None) -> None:
        worker.returned.connect(partial(self._forward, on_returned))
        if on_error is not None:
            worker.errored.connect(partial(self._forward, on_error))
        worker.finished.connect(partial(self._done, name))
        self.running[name] = worker

    def _forward(self, callback: Callable, value) -> None:
        if self._on_done is not None:
            callback(value)

    def _done(self, name: str) -> None:
        self.running.pop(name, None)
        if self._on_done is not None:
            self._on_done(name)

    def close(self, *_) -> None:
        self._on_done = None
