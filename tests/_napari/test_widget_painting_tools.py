"""GUI tests: paint made with napari's own Labels tools beyond a 2D brush (3D brush, flood fill), then Train.

Training takes every slice holding a painted voxel as fully labeled; these tools paint slices the
user did not look at, and Train says so. The painted layer is never changed by training.
"""

from __future__ import annotations

import re

import numpy as np
from napari.utils.notifications import notification_manager

from tests.helpers import engine
from tests.helpers.gui import TIMEOUT, dock, messages_since, start_long_training, wait_finished, wait_first_step

LONG = (24, 32, 32)  # enough slices that a few brushed ones leave most of them unpainted
HAND_PAINTED = (4, 12, 20)


def _train(qtbot, widget) -> tuple[list[str], list[str]]:
    """Click Train, wait for the run to end; the warnings and errors it notified."""
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    return messages_since(before, "warning"), messages_since(before, "error")


def _long_scene(viewer):
    """An image of :data:`LONG` with its disc and ring painted by hand on :data:`HAND_PAINTED`; the widget docked."""
    image, truth = engine.disc_volume(0, shape=LONG, axis=0)
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(LONG, np.uint8), name="vol labels")
    for s in HAND_PAINTED:
        for value in (1, 2):
            rows, cols = np.nonzero(truth[s] == value)
            labels.data_setitem((np.full(rows.shape, s), rows, cols), value)
    return dock(viewer), labels


def test_a_flood_fill_that_ran_over_a_slice_is_pointed_out_on_train(scene, qtbot):
    # A fill on a slice with no closed outline labels the whole slice; Train said nothing of it.
    _, widget, labels, _ = scene  # painted on slices 2 and 5
    labels.n_edit_dimensions = 2
    labels.fill((6, 0, 0), 3)
    painted = labels.data.copy()
    warnings, errors = _train(qtbot, widget)
    assert errors == []
    assert any("Slice 6 along axis 0, the slicing axis, holds one label on every voxel (3)" in m for m in warnings)
    assert np.array_equal(labels.data, painted)


def test_a_flood_fill_through_the_volume_is_named_where_train_refuses_it(scene, qtbot):
    # Filled in 3D, the background of every slice became label 3: the refusal only said "paint a few slices".
    _, widget, labels, _ = scene
    labels.n_edit_dimensions = 3
    labels.fill((0, 0, 0), 3)
    _, errors = _train(qtbot, widget)
    assert any("All 8 slices along axis 0 are painted" in m and "as a flood fill leaves" in m for m in errors)


def test_slices_a_3d_brush_reached_around_the_one_shown_are_pointed_out_on_train(viewer, qtbot):
    # A ball painted with n edit dim 3 put a small disc on the slices around the one shown: each trained as
    # fully painted, background all around the disc over the structure it lies in, and Train said nothing.
    widget, labels = _long_scene(viewer)
    labels.n_edit_dimensions = 3
    labels.brush_size = 7
    labels.paint((8, 16, 16), 1)  # on the empty slice 8, inside the disc
    reached = [int(s) for s in np.flatnonzero(np.any(labels.data, axis=(1, 2))) if s not in (*HAND_PAINTED, 8)]
    assert len(reached) >= 4  # the ball crossed slices the user never looked at
    painted = labels.data.copy()
    warnings, errors = _train(qtbot, widget)
    assert errors == []
    advice = next((m for m in warnings if "as a brush painting in 3D" in m), None)
    assert advice is not None, warnings
    named = [int(n) for n in re.findall(r"\d+", advice.split(" along axis 0")[0])]  # "Paint on slices 5, 6 and 10"
    assert 8 not in named and set(named) <= set(reached) and {min(reached), max(reached)} <= set(named)
    assert widget.training_state.trainer.annotation.labeled_slices(0) == sorted([*HAND_PAINTED, 8, *reached])
    assert np.array_equal(labels.data, painted)  # training never edits the painted layer


def _int32_scene(viewer):
    """:func:`_long_scene` on a Labels layer of signed integers, whose label box goes below 0."""
    widget, labels = _long_scene(viewer)
    signed = viewer.add_labels(labels.data.astype(np.int32), name="vol signed labels")
    viewer.layers.remove(labels)
    return widget, signed


def test_a_label_painted_below_zero_is_refused_on_train_saying_to_erase_it(viewer, qtbot):
    # The refusal said the layer "is not painted labels" and to convert it to an image or uncheck it.
    widget, labels = _int32_scene(viewer)
    labels.selected_label = -1  # one "decrease label" too many
    labels.brush_size = 3
    labels.paint((12, 2, 2), labels.selected_label)
    _, errors = _train(qtbot, widget)
    assert len(errors) == 1 and "'vol signed labels' holds negative values (down to -1, on " in errors[0]
    assert "If you painted them (the label box of a layer of signed integers goes below 0), erase them" in errors[0]
    assert widget.run is None


def test_a_label_painted_below_zero_while_training_runs_is_refused_and_training_goes_on(viewer, qtbot):
    # The stroke reached the trainer, whose refusal ended the run: the user's training was gone.
    widget, labels = _int32_scene(viewer)
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    trainer = widget.training_state.trainer
    before = len(notification_manager.records)
    labels.selected_label = -1
    labels.paint((16, 2, 2), -1)  # on an empty slice
    qtbot.waitUntil(lambda: bool(messages_since(before, "warning")), timeout=TIMEOUT)
    (warning,) = messages_since(before, "warning")
    assert "holds negative values (down to -1" in warning and "Training keeps the labels it had" in warning
    labels.undo()  # the stroke taken back: the labels reach training again
    labels.paint((16, 2, 2), 1)
    qtbot.waitUntil(lambda: 16 in trainer.annotation.labeled_slices(0), timeout=TIMEOUT)
    assert run.is_running and run.error is None
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert run.error is None


def test_a_flood_fill_through_the_volume_while_training_runs_is_refused_and_training_goes_on(scene, qtbot):
    # Every slice painted, the trainer had no unpainted slice left: the run ended with "No unlabeled slices to
    # sample from."
    _, widget, labels, _ = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    before = len(notification_manager.records)
    labels.n_edit_dimensions = 3
    labels.fill((0, 0, 0), 3)
    qtbot.waitUntil(lambda: bool(messages_since(before, "warning")), timeout=TIMEOUT)
    (warning,) = messages_since(before, "warning")
    assert "are painted (or marked as labeled) in the image, but the method action also learns" in warning
    assert "as a flood fill leaves" in warning and "Training keeps the labels it had" in warning
    labels.undo()
    step = run.last_progress.step
    qtbot.waitUntil(lambda: run.last_progress.step > step + 2 or not run.is_running, timeout=TIMEOUT)
    assert run.is_running and run.error is None  # a few steps more on the labels it has
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert run.error is None
