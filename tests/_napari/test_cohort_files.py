"""A cohort opened from files in one viewer: scans of several sizes, an odd file among them.

Real NIfTI files opened with the plugin's reader, the docked widget with the tiny budget of
tests/helpers/gui.py, real training; every worker is waited for.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from napari.utils.notifications import notification_manager

from napari_action._napari.layers import find_prediction_layer
from tests.helpers import engine, gui

# 3 mm slices along array axis 0, 1 mm pixels: the layout of tests/helpers/gui.py.
AFFINE = np.diag([3.0, 1.0, 1.0, 1.0])


def write_scan(folder, name: str, shape=gui.SHAPE, seed: int = 0, painted=gui.PAINTED):
    """A disc scan and its labels painted on ``painted`` (``None``: no labels file); return the scan's path."""
    image, truth = engine.disc_volume(seed, shape=shape, axis=0)
    nib.save(nib.Nifti1Image(image.astype(np.float32), AFFINE), folder / f"{name}.nii.gz")
    if painted is not None:
        labels = np.zeros(shape, np.uint8)
        labels[list(painted)] = truth[list(painted)]
        nib.save(nib.Nifti1Image(labels, AFFINE), folder / f"{name}_labels.nii.gz")
    return folder / f"{name}.nii.gz"


def test_two_painted_scans_of_different_sizes_train_and_are_predicted(viewer, qtbot, tmp_path):
    # One painted scan of 32 x 32 pixels per slice, one of 40 x 40: Train failed at once with numpy's
    # "operands could not be broadcast together with shapes (32,) (40,)" (the check for paint made in
    # another view added up the two volumes' slice profiles).
    write_scan(tmp_path, "small")
    write_scan(tmp_path, "large", shape=(8, 40, 40), seed=1)
    write_scan(tmp_path, "unpainted", seed=2, painted=None)
    gui.open_nifti(viewer, *sorted(tmp_path.glob("*.nii.gz")))
    widget = gui.dock(viewer)
    assert sorted((labels.name, image) for labels, image in widget.picker.selected_labels()) == [
        ("large_labels", "large"),
        ("small_labels", "small"),
    ]

    assert widget.start_training()
    gui.wait_finished(qtbot, widget)
    assert widget.run.error is None
    widget.predict_button.click()
    gui.wait_finished(qtbot, widget)
    for name, shape in (("small", gui.SHAPE), ("large", (8, 40, 40)), ("unpainted", gui.SHAPE)):
        predicted = find_prediction_layer(viewer, viewer.layers[name])
        assert predicted is not None and predicted.data.shape == shape
    assert sorted(widget.refine_panel.cohort_tab.records) == ["large", "small", "unpainted"]


def test_a_scan_opened_as_labels_is_named_before_training(viewer, qtbot, tmp_path):
    # An integer scan of few, evenly spaced values (an 8-bit scan stored times 4, minus an offset) opens as a
    # Labels layer, which the widget pairs with an image of its shape. Training started and failed in its
    # worker with "Labels of volume 1 contain negative values": which of the cohort's layers, it did not say.
    write_scan(tmp_path, "vol")
    other = write_scan(tmp_path, "other", seed=1, painted=None)
    image = np.asarray(nib.load(other).dataobj)
    scan = (np.round(image / image.max() * 60) * 4 - 100).astype(np.int16)
    nib.save(nib.Nifti1Image(scan, AFFINE), tmp_path / "other_int16.nii.gz")
    gui.open_nifti(viewer, *sorted(tmp_path.glob("*.nii.gz")))
    assert viewer.layers["other_int16"]._type_string == "labels"
    widget = gui.dock(viewer)
    assert {labels.name: image for labels, image in widget.picker.selected_labels()}["other_int16"] == "other"
    before = len(notification_manager.records)

    assert widget.start_training() is False
    (error,) = gui.messages_since(before, "error")
    assert f"'other_int16' holds negative values (down to {scan.min()}, on " in error
    assert "Convert to Image; else uncheck it." in error
    assert widget.run is None and widget.train_button.isEnabled()

    widget.picker.set_checked("other_int16", False)  # what the message says to do
    assert widget.start_training()
    gui.wait_finished(qtbot, widget)
    assert widget.run.error is None


def test_one_unusable_file_among_many_does_not_stop_the_others_from_opening(viewer, tmp_path):
    # File > Open of a cohort with a 4D series in the middle: the reader's error stopped napari at that
    # file, the files after it were not opened (napari then offered to read every selected file with
    # another reader).
    paths = [write_scan(tmp_path, f"scan{k}", seed=k, painted=None) for k in range(4)]
    series = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((*gui.SHAPE, 2), np.float32), AFFINE), series)
    paths.insert(2, series)
    before = len(notification_manager.records)

    gui.open_nifti(viewer, *paths)
    assert [layer.name for layer in viewer.layers] == ["scan0", "scan1", "scan2", "scan3"]
    (error,) = gui.messages_since(before, "error")
    assert error.startswith(f"{series}: the image is 4D") and "Extract one first" in error
    # napari's own loop over the selected files: the same.
    viewer.layers.clear()
    viewer.open([str(p) for p in paths], plugin=gui.PLUGIN)
    assert len(viewer.layers) == 4
