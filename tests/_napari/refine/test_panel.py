"""GUI tests of the "Refine" panel: accepted corrections, training set, uncertainty and next slices.

Same scene and tiny budgets as ``tests/_napari/test_widget.py`` (a 4-wide U-Net on 8x32x32 volumes).
Every test waits for every worker it started: a worker that outlives its test breaks the next one.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt
from superqt.utils import qthrottled

from napari_action._napari.layers import UNCERTAINTY_KEY, image_layers, prediction_layer_for
from napari_action._napari.refine.accepted import merge_accepted, show_listed_slice
from napari_action._napari.refine.panel import ACCEPT_KEY
from napari_action._napari.training_plan import TrainingPlan
from napari_action.progress import SlicePrediction
from napari_action.training.trainer import Trainer
from tests.helpers.engine import tiny_config
from tests.helpers.gui import (
    PAINTED,
    SHAPE,
    TIMEOUT,
    edit_slice,
    press,
    show_slice,
    start_long_training,
    wait_finished,
    wait_idle,
)


def erase_slice(layer, index: int) -> None:
    rows, cols = np.nonzero(layer.data[index])
    layer.data_setitem((np.full(rows.size, index), rows, cols), 0)


def offline_prediction(viewer, widget, truth):
    """A prediction layer (the truth, as if predicted) without training: accepting needs no model."""
    layer = prediction_layer_for(viewer, viewer.layers["vol"])
    layer.data[:] = truth
    widget.training_state.tracker_for(layer, 0)
    viewer.layers.selection.active = layer
    return layer


def list_texts(widget_list) -> list[str]:
    return [widget_list.item(i).text() for i in range(widget_list.count())]


def test_accepted_slices_reach_the_running_trainer(scene, qtbot):
    viewer, widget, labels, truth = scene
    painted = labels.data.copy()
    start_long_training(widget)
    qtbot.waitUntil(lambda: widget.training_state.target(0) is not None, timeout=TIMEOUT)
    tracker = widget.training_state.target(0)
    qtbot.waitUntil(lambda: tracker.streamed[[4, 6]].all(), timeout=TIMEOUT)
    layer, trainer = tracker.layer, widget.training_state.trainer
    edit_slice(layer, 4, 1)  # a correction...
    viewer.layers.selection.active = layer
    show_slice(viewer, 4)
    assert press(viewer, ACCEPT_KEY)  # ...accepted with the key, on the prediction layer
    erase_slice(layer, 6)  # an all-background slice counts once accepted
    show_slice(viewer, 6)
    widget.refine_panel.accept_button.click()

    def arrived():
        return {4, 6} <= set(trainer.annotation.labeled_slices(0)) and {(0, 4), (0, 6)} <= set(trainer.pool.labeled)

    qtbot.waitUntil(arrived, timeout=TIMEOUT)
    target = trainer.annotation.target(0, 4)
    assert (target[0:6, 0:6] == 1).all() and (trainer.annotation.target(0, 6) == 0).all()
    assert set(trainer.annotation.labeled_slices(0)) == {*PAINTED, 4, 6}
    assert widget.training_state.accepted_slices == {"vol": {4, 6}}
    assert labels.data.tobytes() == painted.tobytes()  # copy option off: the painted layer is untouched
    assert "    slice 4 · accepted" in list_texts(widget.refine_panel.training_list)
    assert widget.refine_panel.uncertainty.get("vol").covered[4]  # streamed slices have an uncertainty
    widget.stop_training()
    wait_finished(qtbot, widget)
    assert (layer.data[4, 0:6, 0:6] == 1).all()  # locked: the stream never overwrote the accepted slice


def _accepted_while_training(scene, qtbot, index: int):
    """Start a long training, correct streamed slice ``index`` of the prediction layer to class 1 and accept it;
    the prediction layer and the trainer, once the trainer has the slice."""
    viewer, widget, _, _ = scene
    start_long_training(widget)
    qtbot.waitUntil(lambda: widget.training_state.target(0) is not None, timeout=TIMEOUT)
    tracker = widget.training_state.target(0)
    qtbot.waitUntil(lambda: tracker.streamed[index], timeout=TIMEOUT)
    layer, trainer = tracker.layer, widget.training_state.trainer
    edit_slice(layer, index, 1)
    viewer.layers.selection.active = layer
    show_slice(viewer, index)
    widget.refine_panel.accept_button.click()
    qtbot.waitUntil(lambda: index in trainer.annotation.labeled_slices(0), timeout=TIMEOUT)
    return layer, trainer


def _corrected_again_while_training(scene, qtbot):
    """Slice 4 accepted while training runs, then corrected again (a block of value 2) until the trainer has it."""
    layer, trainer = _accepted_while_training(scene, qtbot, 4)
    edit_slice(layer, 4, 2)  # the accepted slice corrected again
    qtbot.waitUntil(lambda: (trainer.annotation.target(0, 4)[0:6, 0:6] == 2).all(), timeout=TIMEOUT)
    return layer, trainer


def test_an_accepted_slice_corrected_again_through_the_paint_api_reaches_the_running_trainer(scene, qtbot):
    # data_setitem emits its paint event before writing: the training got the slice as it was before.
    _, widget, _, _ = scene
    _corrected_again_while_training(scene, qtbot)
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_a_correction_of_an_accepted_slice_undone_during_training_is_taken_back(scene, qtbot):
    # napari's undo emits no paint event: training kept the correction the user had taken back.
    _, widget, _, _ = scene
    layer, trainer = _corrected_again_while_training(scene, qtbot)
    layer.undo()  # the correction after accepting taken back
    assert (layer.data[4, 0:6, 0:6] == 1).all()
    qtbot.waitUntil(lambda: (trainer.annotation.target(0, 4)[0:6, 0:6] == 1).all(), timeout=TIMEOUT)
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_accepted_slices_deleted_with_their_prediction_layer_leave_the_running_training(scene, qtbot):
    # The panel said they went with the layer, but the running training went on learning them.
    viewer, widget, _, _ = scene
    layer, trainer = _accepted_while_training(scene, qtbot, 7)
    viewer.layers.remove(layer)
    assert widget.refine_panel.status_label.text() == "The accepted slices of 'vol' went with its prediction layer."
    qtbot.waitUntil(lambda: trainer.annotation.labeled_slices(0) == list(PAINTED), timeout=TIMEOUT)
    assert widget.run.is_running
    widget.stop_training()
    wait_finished(qtbot, widget)


def test_copy_option_and_next_train_use_accepted_slices(scene, qtbot):
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)
    panel = widget.refine_panel
    assert panel.copy_checkbox.text() == "Also copy accepted slices into 'vol labels'"
    panel.copy_checkbox.setChecked(True)
    show_slice(viewer, 7)
    assert panel.accept_current_slice() == [7]
    np.testing.assert_array_equal(labels.data[7], truth[7])  # copied, as one undoable step
    labels.undo()
    assert not labels.data[7].any()
    erase_slice(layer, 0)
    show_slice(viewer, 0)
    panel.accept_button.click()
    assert not labels.data[0].any()

    widget.train_button.click()  # a new training starts from painted + accepted slices
    wait_finished(qtbot, widget)
    annotation = widget.training_state.trainer.annotation
    assert annotation.labeled_slices(0) == [0, *PAINTED, 7]
    np.testing.assert_array_equal(annotation.class_values[annotation.target(0, 7)], truth[7])


def test_accept_all_and_training_set_navigation(scene):
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)
    edit_slice(layer, 1, 2)
    edit_slice(layer, 6, 0, rows=slice(14, 18), cols=slice(14, 18))  # a hole in the disc
    panel = widget.refine_panel
    assert panel.accept_edited_slices() == 2
    assert widget.training_state.accepted_slices == {"vol": {1, 6}}
    assert panel.accept_edited_slices() == 0  # nothing new
    panel.refresh()
    assert list_texts(panel.training_list) == [
        "vol: 2 painted, 2 accepted (axis 0)",
        "    slice 1 · accepted",
        "    slice 2 · painted",
        "    slice 5 · painted",
        "    slice 6 · accepted",
    ]
    assert panel.labeled == {"vol": {1, 2, 5, 6}}
    viewer.dims.order = (1, 0, 2)  # the user looks at another plane: jumping shows the slicing plane again
    panel.training_list.itemClicked.emit(panel.training_list.item(4))
    assert viewer.dims.not_displayed == (0,)
    assert viewer.dims.current_step[0] == 6
    panel.training_list.itemClicked.emit(panel.training_list.item(0))  # a volume header: no move
    assert viewer.dims.current_step[0] == 6

    plan = TrainingPlan.from_picker(widget.picker)
    training = merge_accepted(widget.training_state, plan, axis=0)
    assert training.labeled_slices == {0: (1, 6)} and training.axis == 0
    np.testing.assert_array_equal(training.labels[0][[1, 6]], layer.data[[1, 6]])
    np.testing.assert_array_equal(training.labels[0][[2, 5]], labels.data[[2, 5]])
    before = len(notification_manager.records)
    training = widget.training_labels(plan, axis=1)  # a model along another axis: dropped, said
    assert training.skipped == ["vol"] and not training.labeled_slices
    assert widget.training_state.accepted_slices == {}
    assert "dropped" in training.warnings[0]
    assert "dropped" in str(notification_manager.records[before].message)


def test_uncertainty_layer_and_next_slices_after_predict_all(scene, qtbot):
    viewer, widget, labels, truth = scene
    panel = widget.refine_panel
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert "vol uncertainty" not in viewer.layers  # opt-in
    panel.show_uncertainty.setChecked(True)
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    layer = viewer.layers["vol uncertainty"]
    assert layer.metadata[UNCERTAINTY_KEY] == "vol" and layer.visible
    assert layer.colormap.name == "inferno"
    np.testing.assert_allclose(layer.scale, viewer.layers["vol"].scale)
    np.testing.assert_allclose(layer.translate, viewer.layers["vol"].translate)
    assert [image.name for image in image_layers(viewer)] == ["vol"]  # never trained on nor predicted
    assert layer.data.min() >= 0.0 and layer.data.max() <= 1.0
    assert panel.uncertainty.get("vol").covered.all()
    panel.show_uncertainty.setChecked(False)
    assert not layer.visible

    qtbot.waitUntil(lambda: panel.next_list.count() > 0, timeout=TIMEOUT)
    suggested = [panel.next_list.item(i).data(Qt.ItemDataRole.UserRole)[2] for i in range(panel.next_list.count())]
    assert not set(suggested) & set(PAINTED)
    # The disc spans every slice; painted 2 and 5 of 0..7: the largest unannotated run is 6..7 or 0..1,
    # each item says why it is listed.
    texts = [panel.next_list.item(i).text() for i in range(panel.next_list.count())]
    assert all(text.startswith("vol · slice ") and text.endswith("largest gap") for text in texts), texts
    panel.next_list.itemClicked.emit(panel.next_list.item(0))
    assert viewer.dims.current_step[0] == suggested[0]
    viewer.layers.selection.active = viewer.layers["vol"]
    panel._show_slice_score()
    assert panel.slice_score_label.text().startswith(f"Slice {suggested[0]} of 'vol': uncertainty score")


def test_next_slices_say_why_and_follow_each_accepted_slice(scene):
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)  # the disc on every slice; painted: 2 and 5
    edit_slice(layer, 7, 3)  # the "model" also predicts label 3 on slice 7, which no annotation holds
    panel = widget.refine_panel
    panel.refresh()
    texts = list_texts(panel.next_list)
    assert texts[0] == "vol · slice 7 · label 3 missing"
    # Then the middle of the longest unannotated run, each pick counted as annotated for the next:
    # runs 0-1 and 3-4 (slices 2, 5, 7 annotated), then single slices.
    assert [text.split(" · ")[1] for text in texts[1:]] == ["slice 0", "slice 3", "slice 1", "slice 4"]
    assert all(text.endswith("largest gap") for text in texts[1:])

    viewer.dims.set_current_step(0, 7)
    assert panel.accept_current_slice() == [7]  # the correction joins the annotation...
    panel.refresh()
    texts = list_texts(panel.next_list)  # ...and the list follows at once, no training needed
    assert not any("missing" in text or "slice 7 " in text for text in texts)
    assert texts[0] == "vol · slice 0 · largest gap"


def test_next_slices_follow_a_new_model_sliced_along_another_axis_than_the_loaded_one(scene, qtbot, tmp_path):
    """Train after loading a model sliced along axis 2 (the labels are painted along axis 0).

    The list of labeled slices is refreshed at most every 300 ms; on a busy machine the first slices
    streamed by the new model (axis 0) were ranked before that refresh, against slices listed along
    axis 2: "index 8 is out of bounds for axis 0 with size 8" in the Qt event loop. A refresh slower
    than the whole run makes that order certain here.
    """
    viewer, widget, labels, truth = scene
    config = tiny_config(method="supervised", steps_stage3=2, axis=2, num_threads=1)
    path = Trainer([viewer.layers["vol"].data], [truth], config).save_checkpoint(tmp_path / "model.pt")
    panel = widget.refine_panel
    panel.refresh_later.cancel()
    panel.refresh_later = qthrottled(panel.refresh, timeout=600_000, parent=panel)
    widget.files_panel.load_model(path)
    wait_idle(qtbot, widget)
    panel.refresh()  # listed while the loaded model is the model: along its axis 2
    assert panel.labeled_axis == 2 and max(panel.labeled["vol"]) >= SHAPE[0]

    widget.train_button.click()  # a new model along axis 0; its streamed slices are ranked as they come
    wait_idle(qtbot, widget)
    assert widget.run.error is None and widget.training_state.trainer.axis == 0
    assert panel.labeled_axis == 2  # still the list of the loaded model: the rankings above met it
    viewer.layers["vol ACTION"].data[:] = truth  # something to rank (the tiny model may predict nothing)
    picks = panel.next_slices()
    assert picks and all(axis == 0 and pick.slice_index not in PAINTED for _, axis, pick in picks)
    panel.refresh()  # the list along the new model's axis gives the same picks
    assert panel.labeled_axis == 0 and panel.next_slices() == picks
    panel.refresh_later.cancel()


def test_an_image_renamed_keeps_its_prediction_layer_corrections_and_accepted_slices(scene, qtbot):
    # Prediction layers, accepted slices and uncertainty maps hang on the image's name: after a rename,
    # Predict made a second "scan ACTION" layer without the corrections, and the accepted slice was lost.
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    layer = viewer.layers["vol ACTION"]
    edit_slice(layer, 4, 1)
    viewer.layers.selection.active = layer
    show_slice(viewer, 4)
    assert widget.refine_panel.accept_current_slice() == [4]
    viewer.layers["vol"].name = "scan"
    assert layer.name == "scan ACTION" and layer.metadata["napari_action_source"] == "scan"
    assert widget.training_state.accepted_slices == {"scan": {4}}
    assert "scan" in widget.refine_panel.uncertainty.maps and "vol" not in widget.refine_panel.uncertainty.maps
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    assert [lay.name for lay in viewer.layers if "napari_action_source" in lay.metadata] == ["scan ACTION"]
    assert (layer.data[4, 0:6, 0:6] == 1).all()  # the correction, locked, survived the new prediction
    assert [(lab.name, image) for lab, image in widget.picker.selected_labels()] == [("vol labels", "scan")]


def test_accepting_only_the_slice_shown_along_the_slicing_axis(scene):
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)  # tracked along axis 0
    panel = widget.refine_panel
    show_slice(viewer, 3)
    viewer.dims.order = (1, 0, 2)  # rows are shown: the slider moves along axis 1
    before = len(notification_manager.records)
    assert press(viewer, ACCEPT_KEY)
    assert widget.training_state.accepted_slices.get("vol", set()) == set()  # slice 3, never shown, is not accepted
    assert "slices along axis 1" in str(notification_manager.records[before].message)
    viewer.dims.order = (0, 1, 2)
    viewer.dims.ndisplay = 3
    assert panel.accept_current_slice() == []
    assert "a 3D view" in str(notification_manager.records[-1].message)
    viewer.dims.ndisplay = 2
    assert panel.accept_current_slice() == [3]
    assert not widget.training_state.trackers[id(layer)].locked[[2, 4]].any()


def test_an_accepted_slice_whose_correction_is_undone_stays_locked_against_predictions(scene):
    # Undoing the correction unlocked its voxels: the next prediction rewrote part of the accepted slice, which
    # then trained on whatever the model said there (and accepting it again changed nothing).
    viewer, widget, _, truth = scene
    layer = offline_prediction(viewer, widget, truth)
    edit_slice(layer, 6, 2)
    show_slice(viewer, 6)
    assert widget.refine_panel.accept_current_slice() == [6]
    layer.undo()  # the correction taken back: the slice shows the prediction, still accepted
    assert np.array_equal(layer.data[6], truth[6])

    tracker = widget.training_state.target(0) or widget.training_state.trackers[id(layer)]
    tracker.write(SlicePrediction(0, 0, 0, np.full(SHAPE, 9, np.uint8), None))  # what a prediction writes
    assert np.array_equal(layer.data[6], truth[6]) and (layer.data[5] == 9).all()
    assert widget.training_state.accepted_slices == {"vol": {6}}


def test_slices_accepted_before_the_image_was_given_data_of_another_shape_are_left_out_of_training_and_said(scene):
    # The image cropped from the console after a slice was accepted: the next Train left the accepted slice out
    # without a word (its prediction layer no longer fits the image).
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)
    show_slice(viewer, 6)
    assert widget.refine_panel.accept_current_slice() == [6]
    viewer.layers["vol"].data = np.ascontiguousarray(viewer.layers["vol"].data[:, :16, :16])
    labels.data = np.ascontiguousarray(labels.data[:, :16, :16])  # the painted labels cropped alike

    training = merge_accepted(widget.training_state, TrainingPlan.from_picker(widget.picker), axis=0)
    assert training.labeled_slices == {}
    (warning,) = training.warnings
    assert warning.startswith("the slices accepted in 'vol' (6) are left out: 'vol ACTION' is (8, 32, 32)")
    assert widget.training_state.accepted_slices == {"vol": {6}} and layer.data.shape == (8, 32, 32)  # both kept


def test_rows_of_an_image_given_data_of_another_shape_say_they_are_out_of_date_and_no_click_leaves_the_data(
    scene, qtbot
):
    # `layer.data = a crop` left the Training set and Next slices lists with the old data's slices (a click went past
    # the end of the crop), and the old data's uncertainty map scored the slices of the new one.
    viewer, widget, labels, truth = scene
    layer = offline_prediction(viewer, widget, truth)
    panel = widget.refine_panel
    show_slice(viewer, 6)
    assert panel.accept_current_slice() == [6]
    panel.uncertainty.set_volume("vol", np.random.default_rng(0).random(SHAPE, dtype=np.float32), 0)
    panel.refresh()
    assert "    slice 6 · accepted" in list_texts(panel.training_list) and panel.next_list.count() > 0

    viewer.layers["vol"].data = np.ascontiguousarray(viewer.layers["vol"].data[:4])  # 4 of its 8 slices
    qtbot.waitUntil(lambda: "out of date" in " ".join(list_texts(panel.training_list)), timeout=TIMEOUT)
    assert list_texts(panel.training_list) == [
        "vol: 0 painted, 0 accepted (axis 0)",
        "    out of date · 'vol labels' is 8×32×32, the image 4×32×32 now: its painted slices (2, 5) are not listed",
        "    out of date · 'vol ACTION' is 8×32×32, the image 4×32×32 now: its accepted slices (6) are left out "
        "of training",
    ]
    assert list_texts(panel.next_list) == [
        "out of date · vol · 'vol ACTION' is 8×32×32, the image 4×32×32 now: Predict picks its next slices again"
    ]
    show_slice(viewer, 2)
    for index in range(panel.training_list.count()):  # nothing to show: a click leaves the view where it is
        panel.training_list.itemClicked.emit(panel.training_list.item(index))
    panel.next_list.itemClicked.emit(panel.next_list.item(0))
    assert viewer.dims.current_step[0] == 2
    viewer.layers.selection.active = viewer.layers["vol"]
    panel._show_slice_score()
    assert panel.uncertainty.get("vol") is None
    assert panel.slice_score_label.text() == "No prediction yet for the selected volume."

    # A row listed before the lists caught up (they are refreshed at most every 300 ms): its slice is gone.
    said = show_listed_slice(viewer, ("vol", 0, 6))
    assert viewer.dims.current_step[0] == 2
    assert said == "Slice 6 of 'vol' is no longer there: 'vol' has 4 slices along axis 0 now."
    assert layer.data.shape == SHAPE and widget.training_state.accepted_slices == {"vol": {6}}  # both kept


def test_streamed_slices_reach_the_panel_with_their_uncertainty_and_scores_made_in_the_worker(scene, qtbot):
    # The panel scored each streamed run on napari's GUI thread: 1.4-1.8 s for a run of 100 slices of a CT.
    viewer, widget, labels, truth = scene
    panel, batches = widget.refine_panel, []
    streamed = panel.slices_streamed

    def recording(batch):
        batches.append(batch)
        streamed(batch)

    panel.slices_streamed = recording
    widget.train_button.click()
    wait_finished(qtbot, widget)
    runs = [prediction for batch in batches for prediction in batch]
    assert runs and all(run.uncertainty is not None and run.slice_scores is not None for run in runs)
    for run in runs:
        assert run.uncertainty.shape == run.labels.shape and run.slice_scores.shape == (run.labels.shape[0],)
