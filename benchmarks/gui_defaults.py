"""What the widget benchmarks share: a napari session that starts from the widget's own defaults."""

from __future__ import annotations

import os
import tempfile


def use_the_widget_defaults() -> None:
    """Remembered options and autosaves in temporary folders: a benchmark measures the widget's
    defaults, not the choices (or a script's shortened budget) this machine's napari remembers."""
    from napari_action._napari.files.recovery import AUTOSAVE_ENV
    from napari_action._napari.remembered import SETTINGS_ENV

    os.environ[SETTINGS_ENV] = tempfile.mkdtemp(prefix="action-settings-")
    os.environ.setdefault(AUTOSAVE_ENV, tempfile.mkdtemp(prefix="action-autosave-"))
