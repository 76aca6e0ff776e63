"""GUI test of the widget's public contract, the one its panels use: start_run, labels_changed, refresh.

Same scene and tiny budgets as ``tests/_napari/test_widget.py``; the test waits for every worker it started.
"""

from __future__ import annotations

from napari_action._napari.live_updates import LABELS_THROTTLE_MS
from napari_action._napari.refine.update_once import ShortRound
from napari_action._napari.status_line import PROGRESS_REDRAW_MS
from tests.helpers.gui import TIMEOUT, edit_slice, wait_finished, wait_first_step

ROUND = 400  # long enough to act while the round runs; the test stops it


def test_a_run_started_through_the_contract_works_like_train(scene, qtbot):
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer, plan = widget.training_state.trainer, widget.training_state.plan
    step = trainer.step
    training = widget.training_labels(plan, axis=trainer.axis)
    finished = []
    with qtbot.waitSignal(widget.state_changed, timeout=TIMEOUT):  # refresh() tells the panels
        started = widget.start_run(
            ShortRound(trainer, ROUND, training.labels, training.labeled_slices),
            total_steps=trainer.round_steps(ROUND),
            status="A further round…",
            on_finished=finished.append,
        )
    run = widget.run
    assert started and run.is_running
    assert widget.status_label.text() == "A further round…" and not widget.plot.loss
    assert not widget.train_button.isEnabled() and widget.stop_button.isEnabled()
    assert widget.start_run(trainer, total_steps=1, status="again") is False  # one run at a time
    wait_first_step(qtbot, run)
    labels.data[7] = truth[7]  # written without a paint event, as a panel would change the labels
    widget.labels_changed()
    qtbot.waitUntil(lambda: 7 in trainer.annotation.labeled_slices(0), timeout=TIMEOUT)
    # Past the throttle's window, so the stroke's own event sends at once: napari emits it before writing
    # the voxels (data_setitem), and the labels sent must still hold them.
    qtbot.wait(LABELS_THROTTLE_MS + 100)
    edit_slice(labels, 0, 1)  # a stroke reaches the round by itself
    qtbot.waitUntil(lambda: 0 in trainer.annotation.labeled_slices(0), timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)

    assert finished == [run] and run.error is None and trainer.step > step
    assert widget.training_state.trainer is trainer  # a further round keeps the model
    assert widget.status_label.text().startswith("Stopped at step")
    qtbot.wait(PROGRESS_REDRAW_MS + 100)  # no throttled redraw of a step's line comes after it
    assert widget.status_label.text().startswith("Stopped at step")
    assert widget.plot.loss[-1][0] == run.last_progress.step  # redraws are throttled, points are not
    assert widget.train_button.isEnabled() and widget.predict_button.isEnabled()
    with qtbot.waitSignal(widget.state_changed, timeout=TIMEOUT):
        widget.refresh()
