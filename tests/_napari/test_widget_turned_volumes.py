"""A scan opened beside the painted one but stored the other way round (LPS beside RAS): trained on and predicted
in the painted scan's voxel order, its layer filled in its own.

Read as stored, the MNI152 template beside a painted Colin27 scored mean Dice 0.13 (0.64 reoriented): nothing in
the window said why.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.reader import DisplayGeometryWarning
from napari_action._napari.refine.accepted import go_to_slice
from napari_action._napari.refine.tabs import slice_of
from napari_action._napari.view_plane import show_slices_along
from napari_action.inference.loaded_model import save_model
from tests.helpers.engine import sparse, tiny_config, tiny_overrides
from tests.helpers.gui import PAINTED, SHAPE, dock, messages_since, open_nifti, paint, wait_finished, wait_idle


def _off_centre(seed: int = 0):
    """A bright disc (1) and a dark square (2) off the centre of every slice along axis 0: mirrored, they move."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, np.uint8)
    yy, xx = np.mgrid[: SHAPE[1], : SHAPE[2]]
    truth[:, np.hypot(yy - 9, xx - 8) < 5] = 1
    truth[:, 20:28, 15:26] = 2
    image = np.choose(truth, [100.0, 300.0, 40.0]) + rng.normal(0, 10, SHAPE)
    return image.astype(np.float32), truth


# The painted scan's voxel order: its slices along axis 0, 3 mm apart.
RAS = np.diag([3.0, 1.0, 1.0, 1.0])


def _write(path, data, affine):
    nib.Nifti1Image(data, affine).to_filename(path)
    return path


def _paint_and_train(viewer, qtbot, truth):
    """Paint the truth's PAINTED slices on the opened scan "painted" and train (its labels carried onto the other
    scan by registration: its preview and its prediction's prior); the widget and the painted layer."""
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="painted labels", affine=viewer.layers["painted"].affine)
    paint(labels, truth, PAINTED)
    widget = dock(viewer)
    widget.config_overrides = tiny_overrides(unpainted_prior="registration")
    widget.train_button.click()
    wait_finished(qtbot, widget)
    return widget, labels


def test_a_scan_stored_mirrored_is_predicted_where_its_anatomy_is(viewer, qtbot, tmp_path):
    image, truth = _off_centre()
    # The same voxels mirrored along both in-plane axes, each keeping its world position.
    lps = np.array([[3.0, 0, 0, 0], [0, -1.0, 0, SHAPE[1] - 1], [0, 0, -1.0, SHAPE[2] - 1], [0, 0, 0, 1]])
    open_nifti(viewer, _write(tmp_path / "painted.nii.gz", image, RAS))
    open_nifti(viewer, _write(tmp_path / "mirrored.nii.gz", image[:, ::-1, ::-1].copy(), lps))
    widget, labels = _paint_and_train(viewer, qtbot, truth)
    assert widget.run.error is None
    trainer = widget.training_state.trainer
    assert trainer.turns.turned(1) and any("'mirrored' is stored" in note for note in trainer.advice)
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    painted, mirrored = viewer.layers["painted ACTION"].data, viewer.layers["mirrored ACTION"].data
    found = (mirrored > 0) | (painted[:, ::-1, ::-1] > 0)
    assert found.any() and np.mean(mirrored[found] == painted[:, ::-1, ::-1][found]) > 0.95
    assert np.mean(mirrored[found] == painted[found]) < 0.5
    np.testing.assert_array_equal(labels.data[PAINTED[0]], truth[PAINTED[0]])  # the user's paint untouched


def test_a_mirrored_scan_left_out_of_training_is_predicted_in_the_training_order_and_warned_of_no_more(
    viewer, qtbot, tmp_path
):
    image, truth = _off_centre()
    lps = np.array([[3.0, 0, 0, 0], [0, -1.0, 0, SHAPE[1] - 1], [0, 0, -1.0, SHAPE[2] - 1], [0, 0, 0, 1]])
    open_nifti(viewer, _write(tmp_path / "painted.nii.gz", image, RAS))
    # Two scans nobody trains on: the same voxels once as the painted scan stores them, once mirrored.
    open_nifti(viewer, _write(tmp_path / "copy.nii.gz", image, RAS))
    open_nifti(viewer, _write(tmp_path / "mirrored.nii.gz", image[:, ::-1, ::-1].copy(), lps))
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="painted labels", affine=viewer.layers["painted"].affine)
    paint(labels, truth, PAINTED)
    widget = dock(viewer)
    for name in ("copy", "mirrored"):
        widget.picker.set_checked(name, False)
    widget.config_overrides = tiny_overrides(steps_stage3=60, method="supervised")  # long enough to find the disc
    widget.train_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None and len(widget.training_state.plan.images) == 1
    assert widget.files_panel.warn_geometry(["mirrored"]) == []  # read in the training order: nothing to warn of
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    copy, mirrored = viewer.layers["copy ACTION"].data, viewer.layers["mirrored ACTION"].data
    assert (copy > 0).any()
    np.testing.assert_array_equal(mirrored, copy[:, ::-1, ::-1])  # the same network on the same voxels


def test_a_scan_stored_with_its_slices_along_another_axis_is_trained_on_and_predicted_in_the_painted_plane(
    viewer, qtbot, tmp_path
):
    image, truth = _off_centre()
    # Array axes 0 and 1 swapped, the affine's columns with them: the same voxels, the painted slices now along axis 1.
    swapped = RAS[:, [1, 0, 2, 3]]
    open_nifti(viewer, _write(tmp_path / "painted.nii.gz", image, RAS))
    with pytest.warns(DisplayGeometryWarning, match="permuted against the scanner axes"):  # napari shows voxel order
        open_nifti(viewer, _write(tmp_path / "swapped.nii.gz", image.transpose(1, 0, 2).copy(), swapped))
    widget, _ = _paint_and_train(viewer, qtbot, truth)
    assert widget.run.error is None and widget.training_state.trainer.turns.turned(1)
    streamed = widget.training_state.target(1)
    assert streamed.axis == 1 and streamed.streamed.any()  # its slices arrived along the axis they lie on
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    painted, other = viewer.layers["painted ACTION"].data, viewer.layers["swapped ACTION"].data
    assert other.shape == (SHAPE[1], SHAPE[0], SHAPE[2])
    found = (other > 0) | (painted.transpose(1, 0, 2) > 0)
    assert found.any() and np.mean(other[found] == painted.transpose(1, 0, 2)[found]) > 0.95


def test_axial_slices_painted_on_two_scans_stored_with_them_along_different_axes_train_as_one_plane(
    viewer, qtbot, tmp_path
):
    # The second scan holds its axial slices along array axis 1: as stored, its paint crossed every slice of
    # the first scan's axis, and the slicing axis was decided from that mix.
    image, truth = _off_centre()
    swapped_image, swapped_truth = (a.transpose(1, 0, 2).copy() for a in (image, truth))
    open_nifti(viewer, _write(tmp_path / "painted.nii.gz", image, RAS))
    with pytest.warns(DisplayGeometryWarning):
        open_nifti(viewer, _write(tmp_path / "swapped.nii.gz", swapped_image, RAS[:, [1, 0, 2, 3]]))
    for name, paint_on, axis in (("painted", truth, 0), ("swapped", swapped_truth, 1)):
        layer = viewer.add_labels(np.zeros(paint_on.shape, np.uint8), name=f"{name} labels")
        layer.affine = viewer.layers[name].affine
        painted = np.zeros_like(paint_on)
        index = [slice(None)] * 3
        index[axis] = list(PAINTED)
        painted[tuple(index)] = paint_on[tuple(index)]
        layer.data = painted
    widget = dock(viewer)
    show_slices_along(viewer, 2)  # the user looks along neither: as stored, the paint said axes 0 and 1 alike
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer = widget.training_state.trainer
    assert widget.run.error is None and trainer.axis == 0
    assert trainer.annotation.labeled_slices(1) == list(PAINTED)
    np.testing.assert_array_equal(trainer.annotation.target(1, PAINTED[0]), trainer.annotation.target(0, PAINTED[0]))
    assert not [note for note in trainer.advice if "crosses" in note]


def test_a_loaded_model_continues_on_a_scan_stored_with_its_slices_along_another_axis(viewer, qtbot, tmp_path):
    # The model learned slices along axis 0 of a scan stored like "painted"; the scan now painted holds those
    # slices along its axis 1. Decided in that scan's own order, the paint said axis 1: the loaded model was
    # dropped ("training a new model instead") and, continued, it would have seen its anatomy turned.
    from napari_action.training.trainer import Trainer

    image, truth = _off_centre()
    first = Trainer([image], [sparse(truth, PAINTED, axis=0)], tiny_config(method="supervised"), affines=[RAS])
    first.train()
    model = save_model(first, tmp_path / "model.pt", first.references)
    with pytest.warns(DisplayGeometryWarning):
        open_nifti(viewer, _write(tmp_path / "swapped.nii.gz", image.transpose(1, 0, 2).copy(), RAS[:, [1, 0, 2, 3]]))
    labels = viewer.add_labels(np.zeros((SHAPE[1], SHAPE[0], SHAPE[2]), np.uint8), name="swapped labels")
    labels.affine = viewer.layers["swapped"].affine
    labels.data = sparse(truth.transpose(1, 0, 2), PAINTED, axis=1)
    widget = dock(viewer)
    widget.config_overrides = tiny_overrides()
    widget.files_panel.load_model(model)
    wait_idle(qtbot, widget)
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    trainer = widget.training_state.trainer
    assert widget.run.error is None
    assert not [text for text in messages_since(before, "warning") if "training a new model" in text]
    assert trainer.axis == 0 and trainer.turns.turned(0) and trainer.rounds == 2  # the loaded model, one round on
    assert [ref.voxel_order() for ref in trainer.references] == [first.references[0].voxel_order()]


def _swapped_scene(viewer, qtbot, tmp_path):
    """ "painted" (slices painted along axis 0) beside "swapped", the same voxels stored with those slices along its
    axis 1, trained on and predicted: the widget, and the truth."""
    image, truth = _off_centre()
    open_nifti(viewer, _write(tmp_path / "painted.nii.gz", image, RAS))
    with pytest.warns(DisplayGeometryWarning):
        open_nifti(viewer, _write(tmp_path / "swapped.nii.gz", image.transpose(1, 0, 2).copy(), RAS[:, [1, 0, 2, 3]]))
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="painted labels", affine=viewer.layers["painted"].affine)
    paint(labels, truth, PAINTED)
    widget = dock(viewer)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    assert widget.run.error is None and widget.training_state.trainer.turns.turned(1)
    return widget, truth


def test_a_slice_accepted_on_a_scan_stored_with_its_slices_along_another_axis_trains_in_update_once(
    viewer, qtbot, tmp_path
):
    # Its slices lie along its axis 1, the training axis is 0: Update once dropped them as accepted "along another
    # axis than training (0)", and forgot them.
    widget, _ = _swapped_scene(viewer, qtbot, tmp_path)
    layer = viewer.layers["swapped ACTION"]
    assert widget.training_state.target(1).axis == 1
    corrected = np.zeros(layer.data.shape, bool)
    corrected[:6, 3, :6] = True  # a block of slice 3 along axis 1, set to class 2
    layer.data_setitem(np.nonzero(corrected), 2)
    viewer.layers.selection.active = layer
    show_slices_along(viewer, 1)
    go_to_slice(viewer, layer, 1, 3)
    widget.refine_panel.accept_button.click()
    assert widget.training_state.accepted_slices == {"swapped": {3}}
    before = len(notification_manager.records)
    assert widget.refine_panel.update_once()
    wait_idle(qtbot, widget)
    assert not [text for text in messages_since(before, "warning") if "dropped" in text]
    trainer = widget.training_state.trainer
    assert widget.training_state.accepted_slices == {"swapped": {3}}
    assert trainer.annotation.labeled_slices(1) == [3]  # slice 3 along the training axis: the same slice
    assert (trainer.annotation.target(1, 3)[:6, :6] == trainer.annotation.to_class_ids(2)).all()


def test_the_refine_panel_lists_the_slices_of_a_scan_stored_turned_along_the_axis_they_lie_on(viewer, qtbot, tmp_path):
    # The Training set listed (and showed on a click) the slices of "swapped" along the model's axis 0: slice 3
    # accepted along its axis 1 was listed as slice 3 along axis 0, another plane, and scored as not labeled.
    widget, _ = _swapped_scene(viewer, qtbot, tmp_path)
    panel, layer = widget.refine_panel, viewer.layers["swapped ACTION"]
    viewer.layers.selection.active = layer
    show_slices_along(viewer, 1)
    go_to_slice(viewer, layer, 1, 3)
    panel.accept_button.click()
    panel.refresh()
    items = [panel.training_list.item(row) for row in range(panel.training_list.count())]
    assert "swapped: 0 painted, 1 accepted (axis 1)" in [item.text() for item in items]
    assert ("swapped", 1, 3) in [slice_of(item) for item in items]
    assert ("painted", 0, PAINTED[0]) in [slice_of(item) for item in items]
    assert all(axis == 1 for name, axis, _ in panel.next_slices() if name == "swapped")
    panel._show_slice_score()
    assert panel.slice_score_label.text().endswith(", labeled).")


def test_a_session_reopens_the_slices_accepted_on_a_scan_stored_turned_along_the_axis_they_lie_on(
    make_napari_viewer, viewer, qtbot, tmp_path
):
    # Reopened, the prediction layer of "swapped" was tracked along the model's axis 0: its one accepted slice
    # (3, along its axis 1) read as 32 edited slices along axis 0, which "Accept all edited slices" would accept.
    widget, _ = _swapped_scene(viewer, qtbot, tmp_path)
    layer = viewer.layers["swapped ACTION"]
    viewer.layers.selection.active = layer
    show_slices_along(viewer, 1)
    go_to_slice(viewer, layer, 1, 3)
    widget.refine_panel.accept_button.click()
    store = tmp_path / "work.action.zarr"
    widget.files_panel.save_session(store)
    wait_idle(qtbot, widget)

    second = make_napari_viewer()
    reopened = dock(second)
    reopened.files_panel.open_session(store)
    wait_idle(qtbot, reopened)
    tracker = reopened.training_state.trackers[id(second.layers["swapped ACTION"])]
    assert tracker.axis == 1 and tracker.edited_slices == {3}
    assert reopened.training_state.accepted_slices == {"swapped": {3}}
