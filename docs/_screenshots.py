"""Event-loop helpers shared by the docs/make_screenshots_*.py scripts."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from qtpy.QtWidgets import QApplication

from napari_action._napari.files.recovery import AUTOSAVE_ENV
from napari_action._napari.remembered import SETTINGS_ENV


def keep_out_of_home() -> None:
    """Autosaves and remembered options in temporary folders: a script's shortened budgets and
    sessions must not become the defaults the user's own napari opens with (nor the widget
    benchmarks', which read the same file)."""
    os.environ.setdefault(AUTOSAVE_ENV, tempfile.mkdtemp(prefix="action-autosave-"))
    os.environ.setdefault(SETTINGS_ENV, tempfile.mkdtemp(prefix="action-settings-"))


def pump(seconds: float, each: Callable[[], None] | None = None) -> None:
    """Run the Qt event loop for a while (worker signals arrive through it), calling ``each`` per turn."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        if each is not None:
            each()
        time.sleep(0.02)


def wait_for(condition: Callable[[], bool], timeout: float = 900.0) -> bool:
    """Pump until ``condition()`` holds or ``timeout`` seconds pass; return whether it holds."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        pump(0.2)
    return condition()
