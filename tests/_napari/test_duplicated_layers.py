"""napari's Duplicate Layer on the layers napari-action made: the copy is the user's, never taken for the original.

The copy carries the original's metadata (its image's name, the model that made it), so a lookup by metadata alone
found it, first when the user moved it above the original, and alone once the original was deleted.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from napari.layers._layer_actions import _duplicate_layer

from napari_action import __version__
from napari_action._napari.layers import find_prediction_layer, prediction_layer_for
from napari_action._napari.refine.uncertainty import find_uncertainty_layer, uncertainty_layer
from napari_action.io.nifti import load_labels
from napari_action.io.session_store import Session, SessionVolume, save_session
from tests.helpers import gui
from tests.helpers.gui import dock, wait_finished, wait_idle


def duplicate_above(viewer, layer):
    """napari's Duplicate Layer on ``layer`` (as its layer-list menu does), the copy moved above the original."""
    viewer.layers.selection.active = layer
    _duplicate_layer(viewer.layers)
    copy = viewer.layers[f"{layer.name} copy"]
    viewer.layers.move(viewer.layers.index(copy), viewer.layers.index(layer))
    return copy


def test_a_duplicate_of_a_prediction_layer_is_never_found_for_its_image_nor_written(viewer):
    image = viewer.add_image(gui.disc_volume()[0], name="vol", **gui.GRID)
    made = prediction_layer_for(viewer, image)
    copy = duplicate_above(viewer, made)
    copy.data[:] = 2  # the user's own work in the copy
    assert find_prediction_layer(viewer, image) is made

    viewer.layers.remove(made)
    assert find_prediction_layer(viewer, image) is None
    new = prediction_layer_for(viewer, image)
    assert new is not copy and find_prediction_layer(viewer, image) is new
    assert np.all(copy.data == 2)


def test_a_duplicate_of_an_uncertainty_layer_is_never_found_for_its_image_nor_written(viewer):
    image = viewer.add_image(gui.disc_volume()[0], name="vol", **gui.GRID)
    made = uncertainty_layer(viewer, image, np.zeros(gui.SHAPE, np.float32))
    copy = duplicate_above(viewer, made)
    assert find_uncertainty_layer(viewer, "vol") is made

    viewer.layers.remove(made)
    assert find_uncertainty_layer(viewer, "vol") is None
    new = uncertainty_layer(viewer, image, np.ones(gui.SHAPE, np.float32))
    assert new is not copy and np.all(copy.data == 0)


def test_a_duplicate_of_a_prediction_layer_opened_from_a_session_is_not_found_for_its_image(viewer, qtbot, tmp_path):
    # The layer a session restores is napari-action's as much as the one Predict made: its copy is the user's.
    image, truth = gui.disc_volume()
    volume = SessionVolume(name="vol", shape=gui.SHAPE, image=image, prediction=truth.astype(np.uint8))
    records = {"name": "vol ACTION", "transform": {}, "geometry": None}
    volume.meta = {"geometry": None, "layers": {"image": {**records, "name": "vol", "index": 0}}}
    volume.meta["layers"]["prediction"] = {**records, "index": 1}
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    widget = dock(viewer)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    restored = viewer.layers["vol ACTION"]

    duplicate_above(viewer, restored)
    assert find_prediction_layer(viewer, viewer.layers["vol"]) is restored


def test_a_copy_of_a_prediction_layer_deleted_while_predict_runs_leaves_the_job_its_image(scene, qtbot):
    # The copy carries the image's name as the original does: deleting it made the job leave the image, "its
    # prediction layer was deleted", while the original was still there for the result.
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    made = viewer.layers["vol ACTION"]
    gui.edit_slice(made, 4, 2)  # a correction in napari-action's layer, locked by its tracker
    copy = duplicate_above(viewer, made)
    made.data[6] = 0  # where the prediction to come shows it landed
    widget.predict_button.click()
    assert widget.training_state.job is not None
    viewer.layers.remove(copy)
    wait_finished(qtbot, widget)

    assert widget.status_label.text() == "Ready."
    assert made.data[6].any() and (made.data[4, 0:6, 0:6] == 2).all()


def test_a_copy_of_a_prediction_layer_deleted_keeps_the_accepted_slices_of_its_image(scene, qtbot):
    # The Refine panel took the copy for the layer holding the accepted slices: they went with the copy.
    viewer, widget, labels, truth = scene
    made = prediction_layer_for(viewer, viewer.layers["vol"])
    made.data[:] = truth
    widget.training_state.tracker_for(made, 0)
    viewer.layers.selection.active = made
    gui.show_slice(viewer, 4)
    assert widget.refine_panel.accept_current_slice() == [4]
    copy = duplicate_above(viewer, made)

    viewer.layers.remove(copy)
    assert widget.training_state.accepted_slices == {"vol": {4}}
    assert "went with its prediction layer" not in widget.refine_panel.status_label.text()


def test_export_writes_the_original_under_its_image_name_and_a_copy_under_its_own_without_the_model(
    scene, qtbot, tmp_path
):
    # With the copy above the original, the copy took "vol_action.nii.gz" and the original went to a file named after
    # its layer; and the copy's header and sidecar named the model and the accepted slices of the original.
    viewer, widget, labels, truth = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)  # the run ends with a prediction of the trained image: the layer names its model
    made = viewer.layers["vol ACTION"]
    viewer.layers.selection.active = made
    gui.show_slice(viewer, 4)
    assert widget.refine_panel.accept_current_slice() == [4]
    copy = duplicate_above(viewer, made)
    copy.data[:] = 2  # the user's own work in the copy
    out = tmp_path / "out"
    out.mkdir()
    assert widget.files_panel.export_masks(out)
    wait_idle(qtbot, widget)

    np.testing.assert_array_equal(load_labels(out / "vol_action.nii.gz")[0], made.data)
    np.testing.assert_array_equal(load_labels(out / "vol ACTION copy_action.nii.gz")[0], copy.data)
    original, copied = (json.loads((out / f"{name}_action.json").read_text()) for name in ("vol", "vol ACTION copy"))
    assert original["model"] is not None and original["accepted_slices"] == [4]
    assert copied["model"] is None and copied["accepted_slices"] is None
    assert descrip(out / "vol ACTION copy_action.nii.gz") == f"napari-action {__version__}"
    assert descrip(out / "vol_action.nii.gz").startswith(f"napari-action {__version__}, model ")


def descrip(path) -> str:
    """The header line napari-action writes into a mask it exports (the model that made it, when known)."""
    return nib.load(path).header["descrip"].item().decode()
