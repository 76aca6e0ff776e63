"""An image given new data (``layer.data = a crop``) while Predict runs: its result, of the data it held before, stays
unwritten and the status line says so.

Same scene and tiny budgets as ``tests/_napari/test_widget.py``; every worker is waited for.
"""

from __future__ import annotations

from napari_action._napari.layers import find_prediction_layer, prediction_source
from napari_action._napari.refine.uncertainty import find_uncertainty_layer
from tests.helpers import gui
from tests.helpers.gui import wait_finished


def test_a_scan_cropped_while_predict_runs_gets_no_prediction_of_its_old_data_and_the_status_line_says_so(scene, qtbot):
    # The job wrote the 8 slices it had predicted into a "late ACTION" layer made for the 4-slice crop: a ValueError
    # in napari's error dialog, an empty "late ACTION" layer over the crop, and the status line said "Ready.".
    viewer, widget, labels, truth = scene
    widget.refine_panel.show_uncertainty.setChecked(True)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    viewer.add_image(gui.disc_volume(1)[0], name="late", **gui.GRID)
    widget.predict_button.click()
    assert widget.training_state.job is not None  # its results reach the viewer once the test waits
    late = viewer.layers["late"]
    late.data = late.data[:4]  # 4 of its 8 slices
    wait_finished(qtbot, widget)

    assert [layer.name for layer in viewer.layers if prediction_source(layer) == "late"] == []
    assert find_uncertainty_layer(viewer, "late") is None
    assert sorted(widget.refine_panel.cohort_tab.records) == ["vol"]  # the other scan predicted
    assert widget.status_label.text() == (
        "Prediction done. Left 'late': its data changed while Predict ran, so its result, of the data it held "
        "before, was not written. Press Predict to predict it again."
    )

    widget.predict_button.click()  # asked again: the crop is predicted
    wait_finished(qtbot, widget)
    assert find_prediction_layer(viewer, late).data.shape == late.data.shape
    assert widget.status_label.text() == "Ready."
