"""Export writes beside each mask where it came from (``<image>_action.json``) and names the model in its header.

Real tiny trainings in a real viewer: the sidecar must name the model that made the layer's last prediction
(not the one there at export), the voxels the user corrected, the painted and accepted slices.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_action import __version__
from napari_action._napari.layers import prediction_layer_for
from napari_action._napari.prediction_writer import made_by
from napari_action._napari.refine.accepted import accept_slices
from napari_action.io.checkpoint import weights_fingerprint
from napari_action.io.session_store import file_sha256
from tests.helpers.engine import tiny_overrides, write_nifti
from tests.helpers.gui import (
    TIMEOUT,
    disc_volume,
    dock,
    edit_slice,
    open_nifti,
    paint,
    start_long_training,
    wait_finished,
    wait_idle,
)


def _fingerprint(widget) -> str:
    return weights_fingerprint(widget.training_state.trainer.checkpoint())


def _export(qtbot, widget, folder, overwrite=False) -> None:
    folder.mkdir(exist_ok=True)
    assert widget.files_panel.export_masks(folder, overwrite=overwrite)
    wait_idle(qtbot, widget)


def _sidecar(folder, image: str) -> dict:
    return json.loads((folder / f"{image}_action.json").read_text())


def _descrip(folder, image: str) -> str:
    return nib.load(folder / f"{image}_action.nii.gz").header["descrip"].item().decode()


def test_the_sidecar_names_the_model_the_edits_and_the_painted_and_accepted_slices(scene, qtbot, tmp_path):
    viewer, widget, _, _ = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)  # the run ends with a prediction of the trained image
    trainer = widget.training_state.trainer
    layer = viewer.layers["vol ACTION"]
    edit_slice(layer, 3, 2)  # a 6 x 6 correction on slice 3
    _export(qtbot, widget, tmp_path / "out")

    record = _sidecar(tmp_path / "out", "vol")
    exported = record.pop("exported")
    assert record == {
        "napari_action": __version__,
        "mask": "vol_action.nii.gz",
        "image": {"layer": "vol", "file": None, "sha256": None},  # an array, from no file
        "model": {
            "fingerprint": _fingerprint(widget),
            "method": trainer.config.method,
            "seed": trainer.config.seed,
            "axis": 0,
            "steps": trainer.step,
        },
        "edited_voxels": 36,
        "slice_axis": 0,
        "painted_slices": [2, 5],
        "accepted_slices": [],
    }
    assert trainer.step > 0 and exported[:2] == "20" and exported[-6] in "+-"  # ISO 8601 with the local offset
    assert _descrip(tmp_path / "out", "vol") == f"napari-action {__version__}, model {_fingerprint(widget)[:12]}"

    accept_slices(widget.training_state, widget.training_state.trackers[id(layer)], [6])  # locks its 32 x 32
    _export(qtbot, widget, tmp_path / "out", overwrite=True)
    record = _sidecar(tmp_path / "out", "vol")
    assert (record["accepted_slices"], record["edited_voxels"]) == ([6], 36 + 32 * 32)


def test_a_layer_keeps_the_model_that_predicted_it_when_another_is_trained(viewer, qtbot, tmp_path):
    image, truth = disc_volume(0)
    paths = [write_nifti(tmp_path / f"{name}.nii.gz", image) for name in ("a", "b")]
    open_nifti(viewer, *paths)
    labels = viewer.add_labels(np.zeros(image.shape, np.uint8), name="a labels", affine=viewer.layers["a"].affine)
    paint(labels, truth)
    widget = dock(viewer)
    widget.picker.set_checked("b", False)  # trained on a alone; b is only predicted
    widget.train_button.click()
    wait_finished(qtbot, widget)
    model_a = _fingerprint(widget)
    widget.predict_images(["b"])
    wait_idle(qtbot, widget)
    widget.config_overrides = tiny_overrides(seed=7)  # model B: other weights
    widget.train_button.click()
    wait_idle(qtbot, widget)  # its autosave hashes the source files, which the sidecar then names
    model_b = _fingerprint(widget)
    assert model_a != model_b
    _export(qtbot, widget, tmp_path / "out")

    b = _sidecar(tmp_path / "out", "b")
    assert b["model"]["fingerprint"] == model_a and b["model"]["seed"] != 7
    assert _descrip(tmp_path / "out", "b") == f"napari-action {__version__}, model {model_a[:12]}"
    assert b["image"] == {"layer": "b", "file": str(paths[1]), "sha256": file_sha256(paths[1])}
    assert (b["edited_voxels"], b["painted_slices"]) == (0, None)  # not a training image
    a = _sidecar(tmp_path / "out", "a")
    assert a["model"]["fingerprint"] == model_b and a["model"]["seed"] == 7  # the run's own final prediction
    assert a["painted_slices"] == [2, 5]


def test_a_layer_made_by_hand_has_no_model_and_an_existing_sidecar_is_kept_when_the_user_says_no(
    viewer, qtbot, tmp_path
):
    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    layer = prediction_layer_for(viewer, viewer.layers["vol"], class_values=[0, 1, 2])
    layer.data[2:4] = 1
    out = tmp_path / "out"
    _export(qtbot, widget, out)
    record = _sidecar(out, "vol")
    assert (record["model"], record["edited_voxels"], record["painted_slices"]) == (None, None, None)
    assert _descrip(out, "vol") == f"napari-action {__version__}"

    sidecar = out / "vol_action.json"
    sidecar.write_text("the user's notes")
    (out / "vol_action.nii.gz").unlink()  # the sidecar alone still counts as the user's file
    asked = []
    _export(qtbot, widget, out, overwrite=lambda paths: asked.extend(paths) or False)
    assert asked == [sidecar] and sidecar.read_text() == "the user's notes"
    assert not (out / "vol_action.nii.gz").exists()
    _export(qtbot, widget, out, overwrite=lambda paths: True)
    assert _sidecar(out, "vol")["mask"] == "vol_action.nii.gz"


def test_slices_streamed_during_training_leave_no_one_model_until_predict_writes_the_volume(scene, qtbot, tmp_path):
    viewer, widget, _, _ = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    layer = viewer.layers["vol ACTION"]
    assert made_by(layer)["fingerprint"] == _fingerprint(widget)
    start_long_training(widget)  # a new network streams its slices into the layer as it learns
    qtbot.waitUntil(lambda: made_by(layer) is None, timeout=TIMEOUT)
    widget.stop_training()  # stopped early: no final prediction
    wait_finished(qtbot, widget)
    _export(qtbot, widget, tmp_path / "out")
    assert _sidecar(tmp_path / "out", "vol")["model"] is None
    assert _descrip(tmp_path / "out", "vol") == f"napari-action {__version__}"
    widget.predict_all()
    wait_idle(qtbot, widget)
    assert made_by(layer)["fingerprint"] == _fingerprint(widget)
