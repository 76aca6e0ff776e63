"""GUI tests of the ACTION dock widget in a real (hidden) napari viewer.

The ``scene`` fixture (tests/conftest.py) and the helpers of tests/helpers/gui.py
keep budgets tiny (a 4-wide U-Net on 8x32x32 volumes), so that a training run
takes about a second on 2 CPU cores. Every test waits for every worker it
started: a worker outliving its test breaks the next one.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import QThreadPool

from napari_action._napari.layers import SOURCE_KEY, is_prediction_layer
from napari_action._napari.run_state import RunState
from napari_action._napari.threads import available_cores, training_threads
from napari_action._napari.view_plane import layer_geometry
from napari_action._napari.widget import ActionWidget
from napari_action.data.interpolation import interpolate_labels
from napari_action.inference.loaded_model import load_model
from napari_action.progress import FocusRequest
from napari_action.runtime import cpu_has_native_bfloat16
from napari_action.training.safeguards import TrainingDivergedError
from napari_action.training.stream_schedule import StreamCursor
from tests.helpers.engine import tiny_overrides
from tests.helpers.gui import (
    GRID,
    PAINTED,
    SHAPE,
    TIMEOUT,
    disc_volume,
    dock,
    messages_since,
    paint,
    paused_after_first_step,
    prediction_layer,
    start_long_training,
    wait_finished,
    wait_first_step,
)


def test_defaults(scene):
    viewer, widget, labels, _ = scene
    assert [img.name for img in widget.picker.selected_images()] == ["vol"]
    assert [(lab.name, image) for lab, image in widget.picker.selected_labels()] == [("vol labels", "vol")]
    options = widget.options
    assert options.axis.value is None and options.axis.native.currentText() == "auto (inferred)"
    assert options.budget.value == "cpu" and options.method.value == "action"
    assert options.prior_source.value == "propagation" and options.steps_stage3.value == 900
    assert options.num_threads.value == training_threads()
    precision = "bfloat16" if cpu_has_native_bfloat16() else "float32"
    assert options.device_label.value == f"will use: CPU, {precision}"
    assert list(options.device.choices)[:2] == ["auto", "cpu"]
    assert widget.train_button.isEnabled()
    assert not widget.pause_button.isEnabled() and not widget.stop_button.isEnabled()
    assert not widget.predict_button.isEnabled()


def test_panel_scrolls_on_a_small_screen(scene, qtbot):
    _, widget, _, _ = scene
    widget.resize(360, 300)
    widget.show()
    qtbot.waitUntil(lambda: widget.scroll_area.verticalScrollBar().maximum() > 0, timeout=TIMEOUT)
    bar = widget.scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())  # the last panel is reachable
    assert widget.scroll_area.widget().isAncestorOf(widget.refine_panel)
    assert widget.scroll_area.horizontalScrollBar().maximum() == 0  # nothing cut off at the side
    # Scrolling leaves the lists their room instead of squashing them to one row.
    assert widget.refine_panel.training_list.height() >= 90


def test_each_image_box_sits_in_its_row_after_layers_are_added(scene, qtbot):
    viewer, widget, _, _ = scene
    widget.show()
    qtbot.waitExposed(widget)
    viewer.add_labels(np.zeros(SHAPE, np.uint8), name="more labels")  # the table is rebuilt
    table = widget.picker.labels_table
    assert table.rowCount() == 2
    for row in range(2):
        box = table.cellWidget(row, 1).geometry()
        # Not left at the table's top-left corner, on top of the first layer's name.
        assert box.x() == table.columnViewportPosition(1) and box.y() == table.rowViewportPosition(row)


def test_train_streams_into_prediction_layer(scene, qtbot):
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    start_long_training(widget)
    qtbot.waitUntil(lambda: "vol ACTION" in viewer.layers, timeout=TIMEOUT)
    layer = viewer.layers["vol ACTION"]
    tracker = widget.training_state.target(0)

    def streamed_and_trained() -> bool:
        # The preview alone fills every slice before training's first step: wait for training steps too.
        progress = widget.run.last_progress
        return bool(tracker.streamed.all()) and progress is not None and progress.step >= 2

    qtbot.waitUntil(streamed_and_trained, timeout=TIMEOUT)
    widget.stop_button.click()
    wait_finished(qtbot, widget)

    assert widget.run.error is None and widget.run.last_progress.step >= 2
    # The worker thread trains with every core (at a lower priority than the GUI), the form's default.
    assert widget.options.num_threads.value == training_threads()
    assert widget.options.device_label.value.startswith(f"using: CPU, {training_threads()} thread")
    assert np.isin(np.unique(layer.data), [0, 1, 2]).all()
    # Same world placement as the image, labelled classes, source recorded.
    np.testing.assert_allclose(layer.scale, viewer.layers["vol"].scale)
    np.testing.assert_allclose(layer.translate, viewer.layers["vol"].translate)
    assert layer.metadata[SOURCE_KEY] == "vol"
    assert list(layer.features["index"]) == [0, 1, 2]
    # The user's painted layer is byte-identical and still selected.
    assert labels.data.dtype == painted.dtype and labels.data.tobytes() == painted.tobytes()
    assert viewer.layers.selection.active is labels
    assert widget.train_button.isEnabled() and widget.predict_button.isEnabled()
    assert widget.plot.loss


def test_edits_in_prediction_layer_survive_streaming(scene, qtbot):
    viewer, widget, labels, _ = scene
    start_long_training(widget)
    qtbot.waitUntil(lambda: widget.training_state.target(0) is not None, timeout=TIMEOUT)
    tracker = widget.training_state.target(0)
    qtbot.waitUntil(lambda: tracker.streamed[3], timeout=TIMEOUT)
    layer = tracker.layer
    rows, cols = np.mgrid[0:6, 0:6]
    layer.data_setitem((np.full(rows.size, 3), rows.ravel(), cols.ravel()), 9)  # 9: never predicted
    writes = []
    original = widget.run.callbacks.predictions
    widget.run.callbacks.predictions = lambda batch: writes.extend(batch) or original(batch)
    qtbot.waitUntil(lambda: sum(p.start <= 3 < p.stop for p in writes) >= 2, timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)

    assert (layer.data[3, 0:6, 0:6] == 9).all()
    assert tracker.edited_slices == {3}
    assert (layer.data[3] == 9).sum() == 36


def test_pause_resume(scene, qtbot):
    viewer, widget, labels, _ = scene
    run = paused_after_first_step(qtbot, widget)
    assert widget.pause_button.text() == "Resume" and widget.predict_button.isEnabled()
    step = run.last_progress.step
    qtbot.wait(300)
    assert run.last_progress.step == step
    widget.pause_button.click()
    qtbot.waitUntil(lambda: run.last_progress.step > step, timeout=TIMEOUT)
    assert run.state is RunState.RUNNING and widget.pause_button.text() == "Pause"
    widget.pause_button.click()
    qtbot.waitUntil(lambda: run.state is RunState.PAUSED, timeout=TIMEOUT)
    widget.stop_button.click()  # stopping a paused run quits the worker
    wait_finished(qtbot, widget)
    assert run.state is RunState.FINISHED and widget.train_button.isEnabled()


EXPECTED_REFUSAL = {"wrong shape": "shape", "nothing painted": "Nothing is painted", "placed elsewhere": "elsewhere"}


@pytest.mark.parametrize("case", list(EXPECTED_REFUSAL))
def test_bad_input_is_rejected_before_training(viewer, case):
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    shape = (8, 16, 16) if case == "wrong shape" else SHAPE
    # Same shape as the image but drawn 5 voxels further along: the paint does not lie over the image.
    translate = (0, 0, 5) if case == "placed elsewhere" else (0, 0, 0)
    labels = viewer.add_labels(np.zeros(shape, np.uint8), name="bad labels", translate=translate)
    if case == "wrong shape":
        paint(labels, truth[:, :16, :16])
    if case == "placed elsewhere":
        paint(labels, truth)
    before_data = labels.data.copy()
    widget = ActionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    before = len(notification_manager.records)

    assert widget.start_training() is False
    errors = messages_since(before, "error")
    assert len(errors) == 1
    assert EXPECTED_REFUSAL[case] in errors[0]
    assert "bad labels" in errors[0]
    assert widget.run is None and widget.train_button.isEnabled()
    assert [layer.name for layer in viewer.layers] == ["vol", "bad labels"]
    assert labels.data.tobytes() == before_data.tobytes()


def test_a_diverging_run_notifies_keeps_a_usable_model_and_can_train_again(scene, qtbot):
    viewer, widget, labels, _ = scene
    overrides = dict(widget.config_overrides)
    # A learning rate this large sends the loss to NaN within a few steps.
    widget.config_overrides = {**overrides, "lr": 1e4}
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)

    assert isinstance(widget.run.error, TrainingDivergedError)
    assert any("back to its weights after step" in e for e in messages_since(before, "error"))
    assert widget.status_label.text().startswith("Training failed")
    assert widget.train_button.isEnabled() and not widget.stop_button.isEnabled()
    # The weights from before the divergence predict: nothing the user watched is lost.
    assert widget.predict_button.isEnabled()
    widget.predict_all()
    qtbot.waitUntil(lambda: widget.training_state.job is None and widget.predict_button.isEnabled(), timeout=TIMEOUT)
    assert widget.training_state.target(0).streamed.all()

    widget.config_overrides = overrides
    widget.train_button.click()  # Train works again
    wait_finished(qtbot, widget)
    assert widget.run.error is None and widget.run.last_progress.step == 10


def test_train_pressed_twice_starts_one_run(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.config_overrides = tiny_overrides(steps_stage3=4000)
    assert widget.start_training() is True
    first = widget.run
    assert not widget.train_button.isEnabled()
    assert widget.start_training() is False  # a second press (e.g. a double click) is ignored
    assert widget.run is first
    wait_first_step(qtbot, first)
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert widget.run is first and first.error is None


def test_painting_during_training_reaches_trainer(scene, qtbot):
    viewer, widget, labels, truth = scene
    wait_first_step(qtbot, start_long_training(widget))
    trainer = widget.training_state.trainer
    assert trainer.annotation.labeled_slices(0) == list(PAINTED)
    paint(labels, truth, slices=(7,))
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == [*PAINTED, 7], timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_a_stroke_undone_during_training_is_taken_back_from_the_trainer_and_a_redo_brings_it_again(scene, qtbot):
    # napari's undo emits no paint event: training went on learning the stroke the user had taken back.
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    wait_first_step(qtbot, start_long_training(widget))
    trainer = widget.training_state.trainer
    paint(labels, truth, slices=(7,))
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == [*PAINTED, 7], timeout=TIMEOUT)
    labels.undo()
    labels.undo()  # one undo step per class painted
    assert labels.data.tobytes() == painted.tobytes()
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == list(PAINTED), timeout=TIMEOUT)
    labels.redo()
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == [*PAINTED, 7], timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_removing_a_used_layer_stops_training(scene, qtbot):
    viewer, widget, labels, _ = scene
    wait_first_step(qtbot, start_long_training(widget))
    before = len(notification_manager.records)
    viewer.layers.remove(labels)
    wait_finished(qtbot, widget)
    assert widget.run.last_progress.step < 404
    # It said what happened, not what to do: the model trained so far stays for Predict and Save model….
    (warning,) = messages_since(before, "warning")
    assert "'vol labels' was removed, so training stops after its current step. The model trained so far" in warning
    assert widget.predict_button.isEnabled() and widget.save_button.isEnabled()


def test_predict_all_and_save(scene, qtbot, tmp_path):
    viewer, widget, labels, _ = scene
    other, _ = disc_volume(seed=1)
    viewer.add_image(other[:, :, :24], name="other")  # not trained on: predicted by array
    widget.picker.set_checked("other", False)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    assert "other ACTION" in viewer.layers
    assert viewer.layers["other ACTION"].data.shape == (8, 32, 24)
    assert widget.training_state.target(0).streamed.all()

    widget.save_model(str(tmp_path / "model.pt"))
    wait_finished(qtbot, widget)
    saved = load_model(tmp_path / "model.pt", device="cpu")
    assert saved.references == [layer_geometry(viewer.layers["vol"])]  # trained on "vol" only


def test_focus_and_labels_sent_together_both_arrive(scene, qtbot, monkeypatch):
    viewer, widget, labels, truth = scene
    widget.config_overrides = tiny_overrides(steps_stage3=400)
    focused = []
    real_focus = StreamCursor.focus
    monkeypatch.setattr(StreamCursor, "focus", lambda self, v, s: focused.append((v, s)) or real_focus(self, v, s))
    widget.train_button.click()
    widget.run.send_focus(FocusRequest(0, 4))  # before the generator's first yield: must wait for it
    qtbot.waitUntil(lambda: (0, 4) in focused, timeout=TIMEOUT)
    trainer = widget.training_state.trainer
    paint(labels, truth, slices=(6,))
    viewer.dims.set_current_step(0, 6)  # step 6 of the shared grid = data slice 6
    qtbot.waitUntil(lambda: bool(focused) and 6 in trainer.annotation.labeled_slices(0), timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert focused[-1] == (0, 6)


def test_closing_the_viewer_stops_training(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.config_overrides = tiny_overrides(steps_stage3=4000)
    widget.train_button.click()
    run = widget.run
    qtbot.waitUntil(lambda: run.last_progress is not None, timeout=TIMEOUT)
    viewer.close()
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=TIMEOUT)
    assert run.last_progress.step < 4004


def test_trainer_errors_in_the_worker_are_notified(scene, qtbot):
    viewer, widget, labels, _ = scene
    viewer.layers["vol"].data[0, 0, 0] = np.nan  # the trainer (built in the worker) refuses NaN
    before = len(notification_manager.records)
    assert widget.start_training() is True
    wait_finished(qtbot, widget)
    assert isinstance(widget.run.error, ValueError)
    # The layer by its name ("Image 0" named none of the viewer's layers).
    [error] = messages_since(before, "error")
    assert "'vol': The image contains 1 NaN and 0 infinite voxels" in error
    # The preview comes from the trainer, which refused the volume: no layer was made, the labels are intact.
    assert prediction_layer(viewer) is None
    assert widget.train_button.isEnabled() and not widget.predict_button.isEnabled()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def test_train_shows_the_propagated_labels_before_the_network(scene, qtbot):
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    # The network never fits well enough to replace the preview: what stays on screen is the propagation.
    widget.config_overrides = tiny_overrides(stream_min_fit=1.0)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None
    shown = prediction_layer(viewer).data
    np.testing.assert_array_equal(shown[list(PAINTED)], truth[list(PAINTED)])
    for value in (1, 2):  # between the painted slices 2 and 5, and one slice beyond each
        assert _dice(shown[1:7] == value, truth[1:7] == value) > 0.9
    np.testing.assert_array_equal(labels.data, painted)  # the user's labels are never touched


def test_train_shows_the_interpolation_when_chosen(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.config_overrides = tiny_overrides(stream_min_fit=1.0, prior_source="interpolation")
    widget.train_button.click()
    wait_finished(qtbot, widget)
    np.testing.assert_array_equal(prediction_layer(viewer).data, interpolate_labels(labels.data, axis=0))


@pytest.mark.parametrize(
    ("choice", "status", "advice"),
    [
        (None, "slicing axis 0 (the painted slices lie along it)", False),  # "auto (inferred)"
        (2, "slicing axis 2 (you chose it)", True),
    ],
)
def test_the_axis_is_decided_on_train_and_the_status_line_says_why(scene, qtbot, choice, status, advice):
    _, widget, _, _ = scene  # painted on slices 2 and 5 along axis 0
    shown, set_text = [], widget.status_label.setText
    widget.status_label.setText = lambda text: shown.append(text) or set_text(text)
    widget.options.axis.value = choice
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None
    assert any(status in text for text in shown)
    trainer = widget.training_state.trainer
    assert trainer.axis == trainer.config.axis == int(status.split()[2])
    # A chosen axis against the paint is still pointed out.
    assert any("lie along axis 0" in m for m in messages_since(before, "warning")) == advice


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        # Axis 0 chosen: the slip crosses 5 unpainted slices along it, trained as background but for a line.
        (0, "Paint on slice 16 along axis 1 crosses 5 slices along axis 0, the slicing axis"),
        # Inferred: the slip's plane wins (it touches fewer slices of its own axis); the warning says which to choose.
        (None, "choose axis 0 as the slicing axis"),
    ],
)
def test_a_slice_painted_in_another_view_is_pointed_out_on_train(scene, qtbot, choice, expected):
    # A user slicing along axis 0 paints one slice in another view by mistake; no notification said so.
    _, widget, labels, _ = scene  # painted on slices 2 and 5 along axis 0
    rows, cols = np.mgrid[0 : SHAPE[0] - 1, 0 : SHAPE[2]]  # on slices 0 to 6 along axis 0
    labels.data_setitem((rows.ravel(), np.full(rows.size, 16), cols.ravel()), 1)  # slice 16 along axis 1
    widget.options.axis.value = choice
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None
    warnings = messages_since(before, "warning")
    assert any(expected in message for message in warnings), warnings


def test_stop_right_after_train(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.config_overrides = tiny_overrides(steps_stage3=4000)
    widget.train_button.click()
    widget.stop_button.click()  # before the trainer even exists
    wait_finished(qtbot, widget)
    assert widget.run.last_progress is None and widget.run.error is None
    assert widget.train_button.isEnabled()


def test_predict_while_training_pauses_then_resumes(scene, qtbot):
    viewer, widget, labels, _ = scene
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    widget.predict_all()  # pauses training, predicts every volume, then resumes
    qtbot.waitUntil(lambda: widget.training_state.job is not None, timeout=TIMEOUT)
    assert run.state is RunState.PAUSED and not widget.pause_button.isEnabled()
    qtbot.waitUntil(lambda: widget.training_state.job is None, timeout=TIMEOUT)
    assert widget.training_state.target(0).streamed.all()
    step = run.last_progress.step
    qtbot.waitUntil(lambda: run.last_progress.step > step, timeout=TIMEOUT)
    assert widget.pause_button.isEnabled() and not widget.predict_button.isEnabled()
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_deleted_prediction_layer_is_not_recreated(scene, qtbot):
    viewer, widget, labels, _ = scene
    wait_first_step(qtbot, start_long_training(widget))
    viewer.layers.remove("vol ACTION")
    step = widget.run.last_progress.step
    qtbot.waitUntil(lambda: widget.run.last_progress.step > step + 4, timeout=TIMEOUT)  # two more streams
    assert widget.run.is_running and "vol ACTION" not in viewer.layers
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_cpu_threads_chosen_in_the_form_are_used(scene, qtbot):
    viewer, widget, labels, _ = scene
    # Two steps are enough. Several torch threads on cores that other jobs keep busy can stall for
    # tens of seconds (each thread waits for the others at every parallel region), hence the long wait.
    widget.config_overrides = tiny_overrides(steps_stage3=2, steps_stage1=0, steps_stage2=0)
    widget.options.num_threads.value = widget.options.num_threads.max  # every core this process may use
    widget.train_button.click()
    wait_finished(qtbot, widget, timeout=5 * TIMEOUT)
    assert widget.run.error is None
    assert widget.training_state.trainer.config.num_threads == available_cores()
    assert widget.options.device_label.value.startswith(f"using: CPU, {available_cores()} thread")


def test_an_image_layer_backed_by_zarr_trains_without_being_loaded_whole(viewer, qtbot):
    import zarr

    image, truth = disc_volume()
    store = zarr.create_array(store={}, shape=image.shape, chunks=(1, *image.shape[1:]), dtype=image.dtype)
    store[:] = image
    layer = viewer.add_image(store, name="vol")
    assert not isinstance(layer.data, np.ndarray)  # napari keeps the zarr array as the layer's data
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels")
    paint(labels, truth)
    widget = dock(viewer)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None and widget.run.last_progress.step == 10
    assert widget.training_state.trainer.images[0].is_lazy  # read a slice at a time, never converted whole
    assert prediction_layer(viewer) is not None


def test_an_image_nobody_painted_shows_the_painted_labels_carried_onto_it(scene, qtbot):
    viewer, widget, labels, truth = scene
    image, _ = disc_volume(seed=1)
    # The same anatomy 6 voxels to the side, on the same grid: registration has to find the shift.
    viewer.add_image(np.roll(image, 6, axis=2), name="other", **GRID)
    other_truth = np.roll(truth, 6, axis=2)
    widget.options.unpainted_prior.value = "registration"
    widget.config_overrides = tiny_overrides(stream_min_fit=1.0)  # the previews stay on screen
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None
    shown = next(layer for layer in viewer.layers if is_prediction_layer(layer) and layer.name.startswith("other"))
    for value in (1, 2):
        carried = _dice(shown.data[1:7] == value, other_truth[1:7] == value)
        unregistered = _dice(truth[1:7] == value, other_truth[1:7] == value)  # the labels where they were painted
        assert carried > max(0.6, unregistered + 0.2)
