"""GUI test of the Refine panel's "Cohort" tab: predicted volumes worst first, a click shows the worst slice.

Same scene and tiny budgets as ``tests/_napari/refine/test_panel.py``; every worker is waited for.
"""

from __future__ import annotations

import json

import numpy as np

from napari_action._napari.layers import find_prediction_layer
from napari_action._napari.refine.cohort import CohortTab
from napari_action.inference.loaded_model import load_model
from napari_action.inference.quality import class_label
from tests.helpers import gui
from tests.helpers.engine import atlas_record
from tests.helpers.gui import wait_finished

# The scene's voxels: 3 x 1 x 1 mm.
VOXEL_ML = 3.0 / 1000.0


def rows(tab) -> list[str]:
    return [tab.cohort_list.item(i).text() for i in range(tab.cohort_list.count())]


def predict_a_scan_opened_after_train(viewer, widget, qtbot) -> None:
    """Train, open a second scan called "late", press Predict (the job left running)."""
    widget.train_button.click()
    wait_finished(qtbot, widget)
    viewer.add_image(gui.disc_volume(1)[0], name="late", **gui.GRID)
    widget.predict_button.click()


def test_predicted_volumes_listed_worst_first_and_a_click_shows_the_worst_slice(scene, qtbot):
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    assert rows(tab) == [] and tab.summary_label.text().startswith("Predict the opened volumes")
    widget.train_button.click()
    wait_finished(qtbot, widget)
    # Two scans opened after training: another subject and a blank one, where the model finds nothing it knows.
    viewer.add_image(gui.disc_volume(1)[0], name="second", **gui.GRID)
    blank = np.random.default_rng(0).normal(100.0, 1.0, gui.SHAPE).astype(np.float32)
    viewer.add_image(blank, name="blank", **gui.GRID)
    widget.predict_button.click()
    wait_finished(qtbot, widget)

    assert sorted(tab.records) == ["blank", "second", "vol"]
    scores = [quality.score for quality in tab.qualities]
    assert scores == sorted(scores)
    summary = tab.summary_label.text()
    assert summary.startswith("3 predicted volume(s), worst first; sizes checked against their median.")
    for text, quality in zip(rows(tab), tab.qualities, strict=True):
        assert text.startswith(f"{quality.score:.2f} · {quality.name} · ")
        # "vol", painted, was predicted with its painted slices mixed in: its row says so (test_cohort_aided.py).
        tail = " · with your labels" if quality.name == "vol" else ""
        assert text.endswith(f" · slice {quality.worst_slice}{tail}")
    names = {value: class_label(value, widget.training_state.trainer.class_names) for value in (1, 2)}
    for quality in tab.qualities:
        # The volumes are those of the prediction layer, in mL of the layer's 3 mm³ voxels...
        predicted = find_prediction_layer(viewer, viewer.layers[quality.name]).data
        expected = {name: (predicted == value).sum() * VOXEL_ML for value, name in names.items()}
        assert quality.volume_ml.keys() == expected.keys()
        np.testing.assert_allclose(list(quality.volume_ml.values()), list(expected.values()), atol=1e-9)
        # ...and the worst slice is the one the Refine panel scores most uncertain.
        scores = widget.refine_panel.uncertainty.get(quality.name).scores()
        assert quality.worst_slice == int(np.argmax(scores)) and quality.axis == 0

    for row in range(3):
        quality = tab.qualities[row]
        viewer.layers.selection.active = labels
        gui.show_slice(viewer, (quality.worst_slice + 1) % gui.SHAPE[0])
        tab.cohort_list.itemClicked.emit(tab.cohort_list.item(row))
        assert viewer.layers.selection.active is viewer.layers[quality.name]
        assert viewer.dims.current_step[0] == quality.worst_slice

    viewer.layers.remove("blank")
    assert sorted(tab.records) == ["second", "vol"] and len(rows(tab)) == 2
    assert "sizes not compared (under 3)." in tab.summary_label.text()


def test_a_renamed_scan_keeps_its_row_and_a_click_still_shows_it(scene, qtbot):
    # Renamed after Predict, the row kept the old name: a click found no layer and did nothing, and the next
    # Predict listed the scan twice (three volumes rated together, where two were open).
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    widget.train_button.click()
    wait_finished(qtbot, widget)
    viewer.add_image(gui.disc_volume(1)[0], name="second", **gui.GRID)
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    viewer.layers["second"].name = "subject 2"

    assert sorted(tab.records) == ["subject 2", "vol"]
    (row,) = [row for row, quality in enumerate(tab.qualities) if quality.name == "subject 2"]
    assert " · subject 2 · " in rows(tab)[row]
    viewer.layers.selection.active = labels
    worst = tab.qualities[row].worst_slice
    gui.show_slice(viewer, (worst + 1) % gui.SHAPE[0])
    tab.cohort_list.itemClicked.emit(tab.cohort_list.item(row))
    assert viewer.layers.selection.active is viewer.layers["subject 2"]
    assert viewer.dims.current_step[0] == worst

    widget.predict_button.click()
    wait_finished(qtbot, widget)
    assert sorted(tab.records) == ["subject 2", "vol"] and len(rows(tab)) == 2


def test_a_deleted_prediction_layer_takes_its_row_and_a_renamed_one_keeps_it(scene, qtbot):
    # The row of a scan whose "<scan> ACTION" layer was deleted stayed, rating labels no longer there, and was
    # still rated with the others.
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    assert sorted(tab.records) == ["late", "vol"]
    copy = viewer.layers["late ACTION"]
    viewer.add_labels(np.array(copy.data), name="late copy", metadata=dict(copy.metadata), **gui.GRID)

    viewer.layers.remove("late ACTION")  # a copy of that prediction is still open: the row stays
    assert sorted(tab.records) == ["late", "vol"]
    viewer.layers.remove("late copy")
    assert sorted(tab.records) == ["vol"] and len(rows(tab)) == 1 and " · vol · " in rows(tab)[0]

    viewer.layers["vol ACTION"].name = "my corrections"  # the row is the scan's: it stays, and a click shows it
    assert sorted(tab.records) == ["vol"]
    viewer.layers.selection.active = labels
    worst = tab.qualities[0].worst_slice
    gui.show_slice(viewer, (worst + 1) % gui.SHAPE[0])
    tab.cohort_list.itemClicked.emit(tab.cohort_list.item(0))
    assert viewer.layers.selection.active is viewer.layers["vol"]
    assert viewer.dims.current_step[0] == worst


def test_a_row_whose_scan_or_prediction_was_given_new_data_is_out_of_date_until_predicted_again(scene, qtbot):
    # `layer.data = ...` (a crop from the console, another scan loaded into the layer) left the row's score and
    # worst slice as they were: they rated a mask no longer there, and a click went to a slice of the old scan.
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    viewer.layers["late"].data = gui.disc_volume(1)[0][:4]  # 4 of its 8 slices
    viewer.layers["vol ACTION"].data = np.zeros(gui.SHAPE, np.uint8)

    assert tab.records == {} and tab.qualities == []
    assert sorted(rows(tab)) == [
        "out of date · late · the image was given new data after it was predicted: Predict rates it again",
        "out of date · vol · 'vol ACTION' was given new data after it was predicted: Predict rates it again",
    ]
    assert tab.summary_label.text() == "2 volume(s) out of date: their data changed after they were rated."
    gui.show_slice(viewer, 1)
    for row in range(2):  # no slice to show: a click leaves the view where it is
        tab.cohort_list.itemClicked.emit(tab.cohort_list.item(row))
        assert viewer.dims.current_step[0] == 1

    widget.predict_button.click()
    wait_finished(qtbot, widget)
    assert sorted(tab.records) == ["late", "vol"] and not [text for text in rows(tab) if "out of date" in text]
    (row,) = [row for row, quality in enumerate(tab.qualities) if quality.name == "late"]
    assert 0 <= tab.qualities[row].worst_slice < 4


def test_a_click_in_the_3d_view_goes_to_2d_at_the_slice_and_says_so(scene, qtbot):
    # In 3D a click selected the scan and moved a slider the user could not see: the view stayed as it was.
    viewer, widget, labels, truth = scene
    panel, tab = widget.refine_panel, widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    (row,) = [row for row, quality in enumerate(tab.qualities) if quality.name == "late"]
    worst = tab.qualities[row].worst_slice
    viewer.dims.order = (1, 0, 2)  # turned in 3D: rows along axis 1 would be the slices shown back in 2D
    viewer.dims.ndisplay = 3
    tab.cohort_list.itemClicked.emit(tab.cohort_list.item(row))
    assert viewer.dims.ndisplay == 2 and viewer.dims.not_displayed == (0,)  # the model's slicing axis
    assert viewer.dims.current_step[0] == worst and viewer.layers.selection.active is viewer.layers["late"]
    assert panel.status_label.text() == (
        f"Switched to 2D to show slice {worst} of 'late' along axis 0: the 3D view shows no single slice "
        "(napari's 2D/3D button goes back)."
    )

    # The Training set list's rows too (the warning on accepting in 3D sends the user there).
    panel.status_label.setText("")
    panel.training_list.itemClicked.emit(panel.training_list.item(1))  # "slice 2 · painted" of "vol"
    assert viewer.dims.ndisplay == 2 and panel.status_label.text() == ""  # already 2D: nothing to say
    viewer.dims.ndisplay = 3
    panel.training_list.itemClicked.emit(panel.training_list.item(2))  # "slice 5 · painted"
    assert viewer.dims.ndisplay == 2 and viewer.dims.current_step[0] == 5
    assert panel.status_label.text().startswith("Switched to 2D to show slice 5 of 'vol' along axis 0")


def test_a_scan_renamed_while_predict_runs_gets_its_prediction_and_its_row(scene, qtbot):
    # The job called back under the name the scan had when Predict was clicked: no layer had it any more, and the
    # scan's prediction was dropped without a word (no "<scan> ACTION" layer, no row, the status line "Ready.").
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    assert widget.training_state.job is not None  # its results reach the viewer once the test waits
    viewer.layers["late"].name = "subject 2"
    wait_finished(qtbot, widget)

    predicted = find_prediction_layer(viewer, viewer.layers["subject 2"])
    assert predicted is not None and predicted.name == "subject 2 ACTION"
    assert sorted(tab.records) == ["subject 2", "vol"]


def test_a_scan_closed_while_predict_runs_leaves_its_prediction_to_no_scan_opened_since_under_its_name(scene, qtbot):
    # The wrong "late" closed and the right one opened while Predict ran: the closed scan's labels were written
    # into a "late ACTION" layer over the new scan, which got the closed one's row in the Cohort tab too.
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    assert widget.training_state.job is not None  # its results reach the viewer once the test waits
    viewer.layers.remove("late")
    viewer.add_image(np.zeros(gui.SHAPE, np.float32), name="late", **gui.GRID)
    wait_finished(qtbot, widget)

    assert find_prediction_layer(viewer, viewer.layers["late"]) is None
    assert "late ACTION" not in viewer.layers
    assert sorted(tab.records) == ["vol"]


def test_a_prediction_layer_deleted_while_predict_runs_stays_deleted_and_the_status_line_says_so(scene, qtbot):
    # Predict pressed again and "late ACTION" deleted meanwhile: the job made the layer again for the scan's result
    # (and its Cohort row), as if the user had not deleted it.
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    rated_before = tab.records["vol"]
    widget.predict_button.click()
    assert widget.training_state.job is not None
    viewer.layers.remove("late ACTION")
    wait_finished(qtbot, widget)

    assert "late ACTION" not in viewer.layers and find_prediction_layer(viewer, viewer.layers["late"]) is None
    assert sorted(tab.records) == ["vol"] and tab.records["vol"] is not rated_before  # the other scan predicted
    assert widget.status_label.text() == (
        "Prediction done. Left 'late': its prediction layer was deleted while Predict ran, so its result was not "
        "put back. Press Predict to predict it again."
    )

    widget.predict_button.click()  # asked again: it gets a layer again
    wait_finished(qtbot, widget)
    assert find_prediction_layer(viewer, viewer.layers["late"]) is not None and sorted(tab.records) == ["late", "vol"]
    assert widget.status_label.text() == "Ready."


def test_a_scan_opened_under_the_name_of_a_closed_one_does_not_take_its_corrections(scene, qtbot, tmp_path):
    # "late" predicted, corrected and accepted, then closed, and another scan opened under its name (the same file
    # name from another folder): the new scan took the closed one's prediction layer, its Predict kept the closed
    # scan's corrections, Train learnt slice 4 of the new scan from them, and Export wrote them under its name.
    viewer, widget, labels, truth = scene
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    corrected = viewer.layers["late ACTION"]
    gui.edit_slice(corrected, 4, 2)
    viewer.layers.selection.active = corrected
    gui.show_slice(viewer, 4)
    assert widget.refine_panel.accept_current_slice() == [4]
    kept = np.array(corrected.data)

    viewer.layers.remove("late")
    other = viewer.add_image(np.zeros(gui.SHAPE, np.float32), name="late", **gui.GRID)
    assert corrected.name == "late (closed) ACTION"  # the corrections kept, under the closed scan's name
    np.testing.assert_array_equal(corrected.data, kept)
    assert find_prediction_layer(viewer, other) is None
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    predicted = find_prediction_layer(viewer, other)
    assert predicted is not corrected and not predicted.data[4, :6, :6].any()  # the blank scan: nothing found
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert [image.name for image in widget.training_state.plan.images] == ["vol", "late"]
    assert widget.training_state.trainer.annotation.labeled_slices(1) == []

    assert widget.files_panel.export_masks(tmp_path)
    gui.wait_idle(qtbot, widget)
    assert sorted(path.name for path in tmp_path.glob("*.nii.gz")) == [
        "late (closed)_action.nii.gz",
        "late_action.nii.gz",
        "vol_action.nii.gz",
    ]
    closed = json.loads((tmp_path / "late (closed)_action.json").read_text())
    assert closed["image"]["layer"] == "late (closed)" and closed["edited_voxels"] > 0  # its corrections


def test_a_slice_accepted_on_a_scan_outside_training_waits_for_the_next_train(scene, qtbot):
    """A scan opened after Train, predicted, corrected and accepted: Update once cannot learn from it, and says so."""
    viewer, widget, labels, truth = scene
    panel = widget.refine_panel
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    assert "late" in panel.cohort_tab.records
    layer = viewer.layers["late ACTION"]
    gui.edit_slice(layer, 4, 2)
    viewer.layers.selection.active = layer
    gui.show_slice(viewer, 4)
    assert panel.accept_current_slice() == [4]
    assert panel.status_label.text() == (
        "Accepted slice(s) [4] of 'late'; used at the next Train ('late' is not one of the volumes the current "
        "model trains on)."
    )
    panel.steps_spin.setValue(2)
    panel.update_button.click()
    wait_finished(qtbot, widget)
    assert [image.name for image in widget.training_state.plan.images] == ["vol"]  # Update once did not take it
    widget.train_button.click()  # the next Train does
    wait_finished(qtbot, widget)
    assert widget.training_state.trainer.annotation.labeled_slices(1) == [4]


def test_a_volume_missing_dozens_of_classes_is_one_short_row_with_every_flag_in_its_tooltip(viewer, model_file):
    # A model of 40 atlas regions, weakly trained: it finds 3 of them, unsure of those.
    viewer.add_image(np.zeros((8, 8, 6), np.float32), name="atlas scan")
    tab = CohortTab(viewer)
    tab.volume_predicted("atlas scan", atlas_record(), load_model(model_file, device="cpu"))
    item = tab.cohort_list.item(0)
    assert item.text() == (
        f"{tab.qualities[0].score:.2f} · atlas scan · class 4 missing; class 5 missing; class 6 missing; "
        "and 34 more classes flagged; uncertain (certainty 0.20) · slice 0"
    )
    flags = item.toolTip().splitlines()
    assert len(flags) == 38 and flags[-2] == "class 40 missing"


def test_a_predicted_and_corrected_scan_closed_while_predict_runs_again_keeps_its_layer_as_it_was(scene, qtbot):
    """Predict pressed again and the scan closed meanwhile: its corrected layer, kept as "<scan> (closed) ACTION",
    is not overwritten by the new prediction and gets no Cohort row."""
    viewer, widget, labels, truth = scene
    tab = widget.refine_panel.cohort_tab
    predict_a_scan_opened_after_train(viewer, widget, qtbot)
    wait_finished(qtbot, widget)
    corrected = viewer.layers["late ACTION"]
    gui.edit_slice(corrected, 4, 2)
    kept = np.array(corrected.data)
    said = []
    # Qt's label, recorded as it is set: the job's updates and its end come in one burst of events.
    widget.status_label.setText = lambda text, set_text=widget.status_label.setText: (said.append(text), set_text(text))
    widget.predict_button.click()
    assert widget.training_state.job is not None
    viewer.layers.remove("late")
    wait_finished(qtbot, widget)

    assert corrected.name == "late (closed) ACTION"
    np.testing.assert_array_equal(corrected.data, kept)
    assert sorted(tab.records) == ["vol"]
    assert said and not [text for text in said if "late" in text]  # the job left it: nothing predicted
