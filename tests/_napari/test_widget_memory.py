"""What the widget keeps in memory while it trains: no copy of a whole volume it no longer reads."""

from __future__ import annotations

import gc
import types
import weakref

import numpy as np

from tests.helpers.engine import tiny_overrides
from tests.helpers.gui import (
    PAINTED,
    edit_slice,
    paused_after_first_step,
    start_long_training,
    wait_first_step,
    wait_idle,
)


def copies_of(data: np.ndarray) -> int:
    """Arrays anywhere in the process (held by a list, tuple, dict, object or generator) that hold the values of
    ``data`` and are not ``data`` itself."""
    gc.collect()
    found = {}
    for holder in gc.get_objects():
        for item in gc.get_referents(holder):
            # type(), not isinstance(): torch's deprecated module attributes warn when asked for __class__.
            same_shape = type(item) is np.ndarray and item is not data and item.shape == data.shape
            if same_shape and np.array_equal(item, data):
                found[id(item)] = item
    return len(found)


def test_training_keeps_no_copy_of_the_painted_layer(scene, qtbot):
    """Train copies the painted layers for the trainer to be built from; the trainer keeps the painted slices only.
    The copy (105 MB of a 512 x 512 x 400 CT) stayed while training ran and after, until the next Train."""
    viewer, widget, labels, _ = scene
    edit_slice(labels, PAINTED[0], 2, rows=slice(1, 4), cols=slice(23, 30))  # paint no other test's layer holds
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    assert run.is_running
    assert copies_of(labels.data) == 0
    run.stop()
    wait_idle(qtbot, widget)  # the autosave that follows a run copies the layers too, and lets go when written
    assert copies_of(labels.data) == 0


def suspended(name: str) -> list:
    """Generators of the function called ``name`` that started and neither finished nor were closed."""
    gc.collect()
    return [
        item
        for item in gc.get_objects()
        if type(item) is types.GeneratorType and item.gi_code.co_name == name and item.gi_frame is not None
    ]


def test_a_run_stopped_while_paused_lets_its_trainer_go_once_another_is_trained(scene, qtbot):
    """Stop on a paused run quits its worker, which left the training generator suspended at its last step; napari
    keeps every worker for the window's life, and with that generator the whole trainer (its normalised volumes and
    the propagation: about 1 GB on a 512 x 512 x 400 CT), after Train had made another one."""
    viewer, widget, labels, _ = scene
    paused_after_first_step(qtbot, widget)  # the run itself is not kept: the test must hold no reference to it
    widget.stop_button.click()
    wait_idle(qtbot, widget)
    first = weakref.ref(widget.training_state.trainer)
    assert suspended("_drive") == []

    widget.config_overrides = tiny_overrides()
    widget.train_button.click()
    wait_idle(qtbot, widget)
    gc.collect()
    assert first() is None


def test_a_cancelled_predict_lets_go_of_the_volume_it_was_predicting(scene, qtbot):
    """A cancelled Predict quits its worker mid-volume: the prediction generator stayed suspended, holding the
    volume's normalised copy, labels and uncertainty (about 1 GB of a 512 x 512 x 400 CT), for the window's life."""
    viewer, widget, labels, _ = scene
    widget.train_button.click()
    wait_idle(qtbot, widget)
    widget.predict_button.click()
    job = widget.training_state.job
    job.cancel()
    wait_idle(qtbot, widget)
    assert job.cancelled
    gc.collect()  # a generator left in a reference cycle is let go at the next collection; one kept stays
    assert suspended("_predict_all") == [] and suspended("iter_predict") == []
