"""Helpers of the GUI tests: a tiny scene in a real (hidden) napari viewer, edits, and waiting for workers.

Budgets are tiny (a 4-wide U-Net on 8x32x32 volumes, see :func:`tests.helpers.engine.tiny_overrides`)
so that a training run takes about a second on 2 CPU cores. Every test waits for every worker it
started: a worker that outlives its test breaks the next one.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from napari_action._napari.layers import is_prediction_layer
from napari_action._napari.run_state import RunState
from napari_action._napari.widget import ActionWidget
from tests.helpers import engine

SHAPE = (8, 32, 32)  # napari slices axis 0 by default: the slicing axis of the painted labels
PAINTED = (2, 5)
# Anisotropic voxels and a shifted origin: slice i sits at world z = 5 + 3 i.
GRID = {"scale": (3.0, 1.0, 1.0), "translate": (5.0, 0.0, 0.0)}
# Generous: a waitUntil returns as soon as its condition holds, and a tiny training run with its
# autosaves took over 30 s on a 2-core machine with two benchmarks running beside the tests.
TIMEOUT = 120_000
PLUGIN = "napari-action"


def disc_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright disc (label 1) in a dark ring (label 2) on every slice of axis 0, plus noise."""
    return engine.disc_volume(seed, shape=SHAPE, axis=0)


def paint(layer, truth: np.ndarray, slices=PAINTED) -> None:
    """Paint the truth of ``slices`` through ``data_setitem`` (undo history, paint events)."""
    for s in slices:
        for value in (1, 2):
            rows, cols = np.nonzero(truth[s] == value)
            layer.data_setitem((np.full(rows.shape, s), rows, cols), value)


def edit_slice(layer, index: int, value: int, rows=slice(0, 6), cols=slice(0, 6)) -> None:
    """Paint a block of one slice of ``layer`` through ``data_setitem`` (a paint event, like a brush)."""
    rr, cc = np.mgrid[rows, cols]
    layer.data_setitem((np.full(rr.size, index), rr.ravel(), cc.ravel()), value)


def dock(viewer) -> ActionWidget:
    """The ACTION widget docked in ``viewer``, with the tiny budget."""
    widget = ActionWidget(viewer)
    viewer.window.add_dock_widget(widget, name="ACTION")
    widget.config_overrides = engine.tiny_overrides()
    return widget


def open_nifti(viewer, *paths) -> None:
    """Open files with this plugin's reader, as File > Open does."""
    for path in paths:
        viewer.open(str(path), plugin=PLUGIN)


def show_slice(viewer, index: int) -> None:
    """Move the viewer to slice ``index`` of axis 0 of a layer placed on :data:`GRID`."""
    viewer.dims.set_point(0, GRID["translate"][0] + GRID["scale"][0] * index)


def press(viewer, key: str) -> bool:
    """Press ``key`` on the viewer; True if a binding handled it."""
    return viewer.window._qt_viewer._key_map_handler.press_key(key)


def start_long_training(widget):
    """Click Train with a tiny network but 400 steps, so the run is still going when the test acts; return the run."""
    widget.config_overrides = engine.tiny_overrides(steps_stage3=400)
    widget.train_button.click()
    return widget.run


def wait_first_step(qtbot, run) -> None:
    """Wait until ``run`` has reported its first training step."""
    qtbot.waitUntil(lambda: run.last_progress is not None, timeout=TIMEOUT)


def paused_after_first_step(qtbot, widget):
    """:func:`start_long_training`, then Pause once its first step is reported; return the paused run."""
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    widget.pause_button.click()
    qtbot.waitUntil(lambda: run.state is RunState.PAUSED, timeout=TIMEOUT)
    return run


def wait_finished(qtbot, widget, timeout: int = TIMEOUT) -> None:
    """Wait until the widget's training run and its prediction or save job have ended."""
    qtbot.waitUntil(lambda: widget.run is None or not widget.run.is_running, timeout=timeout)
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)


def wait_idle(qtbot, widget) -> None:
    """:func:`wait_finished`, and the files panel's loads and saves too."""
    wait_finished(qtbot, widget)
    qtbot.waitUntil(lambda: widget.training_state.job is None and not widget.files_panel.is_busy, timeout=TIMEOUT)


def messages_since(before: int, severity: str) -> list[str]:
    """Texts of the napari notifications of ``severity`` since the first ``before`` ones."""
    return [str(n.message) for n in notification_manager.records[before:] if str(n.severity) == severity]


def prediction_layer(viewer):
    """The viewer's first "<image> ACTION" layer (None before one is made)."""
    return next((layer for layer in viewer.layers if is_prediction_layer(layer)), None)
