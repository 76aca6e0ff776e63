"""The widget on a clinical thick-slice scan opened from a file: 0.8 mm pixels, 5 mm slices along the last axis."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from tests.helpers.engine import disc_volume, write_nifti
from tests.helpers.gui import dock, messages_since, open_nifti, wait_finished

SHAPE = (40, 40, 10)  # few thick slices along axis 2, many thin pixels across them
ZOOMS = (0.8, 0.8, 5.0)


def open_thick_scan(viewer, tmp_path):
    """The scan opened with the plugin's reader, an empty Labels layer on its grid, and the docked widget."""
    image, truth = disc_volume(0, shape=SHAPE, axis=2)
    open_nifti(viewer, write_nifti(tmp_path / "ct.nii.gz", image, zooms=ZOOMS))
    scan = viewer.layers["ct"]
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="ct labels", affine=scan.affine)
    return dock(viewer), labels, np.moveaxis(truth, 2, 0)


def test_a_stroke_in_another_view_neither_takes_the_slicing_axis_nor_hides_itself(viewer, qtbot, tmp_path):
    # Two axial slices painted, then one stroke in the coronal view by mistake: a short line on 8 of the 10 thick
    # slices. Counted slice by slice it lay along fewer of axis 2's slices than the painted discs of axis 1's pixels:
    # training sliced along axis 1, and the warning told the user to erase the two slices they had painted.
    widget, labels, truth = open_thick_scan(viewer, tmp_path)
    for s in (3, 6):
        for value in (1, 2):
            rows, cols = np.nonzero(truth[s] == value)
            labels.data_setitem((rows, cols, np.full(rows.shape, s)), value)
    stroke = np.arange(14, 22)
    for s in range(1, 9):
        labels.data_setitem((stroke, np.full(stroke.shape, 20), np.full(stroke.shape, s)), 1)
    shown, set_text = [], widget.status_label.setText
    widget.status_label.setText = lambda text: shown.append(text) or set_text(text)
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None
    assert any("slicing axis 2 (the painted slices lie along it)" in text for text in shown), shown
    assert widget.training_state.trainer.axis == 2
    warnings = messages_since(before, "warning")
    expected = "Paint on slice 20 along axis 1 crosses 6 slices along axis 2, the slicing axis"
    assert any(expected in message for message in warnings), warnings
