"""Image layers of the less common voxel types napari shows: each trains, or Train says why not."""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import notification_manager

from tests.helpers.gui import SHAPE, disc_volume, dock, messages_since, paint, prediction_layer, wait_idle


def test_an_image_of_float16_voxels_trains_predicts_and_exports(viewer, qtbot, tmp_path):
    image, truth = disc_volume()
    viewer.add_image(image.astype(np.float16), name="half")  # a microscopy export saved as half floats
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="half labels")
    paint(labels, truth)
    painted = labels.data.copy()
    widget = dock(viewer)
    before = len(notification_manager.records)

    assert widget.start_training() is True
    wait_idle(qtbot, widget)

    assert widget.run.error is None and messages_since(before, "error") == []
    assert prediction_layer(viewer) is not None
    assert widget.files_panel.export_masks(tmp_path) is True
    wait_idle(qtbot, widget)
    assert (tmp_path / "half_action.nii.gz").is_file()
    assert np.array_equal(labels.data, painted)


def test_a_yes_no_image_beside_the_scan_is_named_on_train_and_nothing_starts(viewer, qtbot):
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels")
    paint(labels, truth)
    viewer.add_image(truth > 0, name="threshold")  # a mask made in the console, checked as every new image
    painted = labels.data.copy()
    widget = dock(viewer)
    before = len(notification_manager.records)

    assert widget.start_training() is False

    [error] = messages_since(before, "error")
    assert "'threshold'" in error and "bool" in error and "Uncheck it" in error
    assert widget.run is None and widget.train_button.isEnabled()
    assert np.array_equal(labels.data, painted)
    widget.picker.set_checked("threshold", False)  # as the message says: then it trains
    assert widget.start_training() is True
    wait_idle(qtbot, widget)
    assert widget.run.error is None
