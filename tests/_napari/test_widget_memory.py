"""What the widget keeps in memory while it trains: no copy of a whole volume it no longer reads."""

from __future__ import annotations

import gc

import numpy as np

from tests.helpers.gui import PAINTED, edit_slice, start_long_training, wait_first_step, wait_idle


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
