"""GUI test of "Update once": a short training round on demand from the current weights, then predictions.

Same scene and tiny budgets as ``tests/_napari/test_widget.py``; the test waits for every worker it started.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.prediction_job import PredictionJob
from tests.helpers.gui import GRID, TIMEOUT, edit_slice, messages_since, show_slice, wait_finished


def test_update_once_trains_a_short_round_then_predicts(scene, qtbot):
    viewer, widget, labels, truth = scene
    panel = widget.refine_panel
    assert not panel.update_button.isEnabled()
    before = len(notification_manager.records)
    assert panel.update_once() is False  # nothing trained yet: refused, and said why
    assert "press Train first" in str(notification_manager.records[before].message)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer, layer = widget.training_state.trainer, viewer.layers["vol ACTION"]
    assert panel.update_button.isEnabled()
    step = trainer.step
    edit_slice(layer, 6, 2)
    show_slice(viewer, 6)
    viewer.layers.selection.active = layer
    assert panel.accept_current_slice() == [6]
    accepted = layer.data[6].copy()
    locked = widget.training_state.target(0).locked
    layer.data[~locked] = 9  # stale on purpose (9 is never predicted): the update must predict it again
    panel.steps_spin.setValue(3)
    panel.update_button.click()
    assert not panel.update_button.isEnabled() and not widget.train_button.isEnabled()
    wait_finished(qtbot, widget)

    assert widget.run.error is None and trainer.step == step + 3
    assert widget.training_state.trainer is trainer  # continued, not rebuilt
    assert 6 in trainer.annotation.labeled_slices(0) and list(trainer.class_values) == [0, 1, 2]
    fresh = next(u for u in trainer.predict_volume(0) if u.done).labels
    np.testing.assert_array_equal(layer.data[~locked], fresh[~locked])  # predicted again...
    np.testing.assert_array_equal(layer.data[6], accepted)  # ...around the accepted slice
    assert panel.uncertainty.get("vol").covered.all() and "vol uncertainty" not in viewer.layers
    assert panel.update_button.isEnabled()


def test_update_once_predicts_the_training_volumes_once(scene, qtbot, monkeypatch):
    """The round's end starts one prediction: the widget's own ("predict when training ends") or the update's."""
    viewer, widget, labels, truth = scene
    viewer.add_image(truth.astype("float32"), name="second", **GRID)  # a training volume nobody painted
    started = []
    real_start = PredictionJob.start
    monkeypatch.setattr(PredictionJob, "start", lambda job: started.append(job) or real_start(job))
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert len(started) == 1  # Train's own prediction when it ends
    panel = widget.refine_panel
    panel.steps_spin.setValue(2)
    panel.update_button.click()
    wait_finished(qtbot, widget)
    # Two at once: the first to end left the widget idle while the other still wrote into the layers.
    assert len(started) == 2 and not started[-1].is_running
    widget.options.predict_when_done.value = False  # the update predicts on its own then
    panel.update_button.click()
    wait_finished(qtbot, widget)
    assert len(started) == 3
    assert sorted(name for name, *_ in started[-1].items) == ["second", "vol"]
    qtbot.waitUntil(lambda: not any(job.is_running for job in started), timeout=TIMEOUT)


def test_update_once_refuses_when_an_image_was_given_new_data_since_train(scene, qtbot):
    # The trainer holds the data it read at Train: the round learnt from the old scan without a word.
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer = widget.training_state.trainer
    step = trainer.step
    viewer.layers["vol"].data = np.ascontiguousarray(viewer.layers["vol"].data[:, :16, :16])
    before = len(notification_manager.records)
    assert widget.refine_panel.update_once() is False
    wait_finished(qtbot, widget)

    (error,) = messages_since(before, "error")
    assert error.startswith("ACTION: image 'vol' was given new data since Train") and "Press Train" in error
    assert trainer.step == step and widget.train_button.isEnabled() and widget.refine_panel.update_button.isEnabled()
    assert np.array_equal(labels.data, painted)


@pytest.mark.parametrize("removed", ["vol labels", "vol"])
def test_update_once_refuses_when_a_layer_of_the_training_was_removed_since_train(scene, qtbot, removed):
    # The trainer holds what it read at Train: the round learnt from the deleted labels, or the closed scan, unsaid.
    viewer, widget, labels, truth = scene
    widget.options.predict_when_done.value = False
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer = widget.training_state.trainer
    step = trainer.step
    viewer.layers.remove(removed)
    before = len(notification_manager.records)
    assert widget.refine_panel.update_once() is False
    wait_finished(qtbot, widget)

    (error,) = messages_since(before, "error")
    assert error.startswith(f"ACTION: layer {removed!r} was removed since Train") and "Press Train" in error
    assert trainer.step == step and widget.train_button.isEnabled() and widget.refine_panel.update_button.isEnabled()
