"""GUI tests of the "Model, export & session" panel: loading a model, predicting, autosave.

Volumes: a crop of Colin27 written with its real affine, and the first volume
of nibabel's ``example4d.nii.gz`` (an oblique, non-diagonal affine). The model
is a 4-wide U-Net trained for two steps, so predictions are quick and
meaningless: the tests check geometry, files and state, not segmentations.
Export and sessions are tested in ``test_export.py`` and ``test_snapshot.py``.
Every test waits for every worker it started: a worker that outlives its test breaks the next one.
"""

from __future__ import annotations

import gc

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_action._napari.files.snapshot import Snapshot
from napari_action._napari.view_plane import layer_geometry
from napari_action.io.geometry import geometry_warnings
from napari_action.io.session_store import Session, checkpoint_from_bytes, load_session, save_session
from napari_action.training.trainer import Trainer
from tests.helpers.engine import tiny_config, tiny_overrides, write_nifti
from tests.helpers.gui import SHAPE, TIMEOUT, disc_volume, dock, messages_since, open_nifti, paint, wait_idle


@pytest.mark.realdata
def test_load_model_then_predict_gives_aligned_layers(viewer, qtbot, model_file, colin_crop, oblique):
    open_nifti(viewer, colin_crop, oblique)
    linear = viewer.layers["oblique"].affine.affine_matrix[:3, :3]
    assert np.abs(linear - np.diag(np.diag(linear))).max() > 0.1  # oblique: not a diagonal affine
    widget = dock(viewer)
    assert not widget.predict_button.isEnabled()
    widget.files_panel.load_model(model_file)
    wait_idle(qtbot, widget)
    assert widget.predict_button.isEnabled() and widget.training_state.init_checkpoint is not None

    widget.predict_images(["oblique"])  # a subset first
    wait_idle(qtbot, widget)
    assert "oblique ACTION" in viewer.layers and "colin_crop ACTION" not in viewer.layers
    widget.predict_all()
    wait_idle(qtbot, widget)
    for name in ("colin_crop", "oblique"):
        image, prediction = viewer.layers[name], viewer.layers[f"{name} ACTION"]
        assert prediction.data.shape == image.data.shape  # slices at their own size
        np.testing.assert_array_equal(prediction.affine.affine_matrix, image.affine.affine_matrix)
        np.testing.assert_array_equal(prediction.scale, image.scale)
        assert set(np.unique(prediction.data)) <= {0, 1, 2}
    # Different in-plane spacing (2 mm against 1 mm) is reported, and the oblique file's voxel order (LAS, Colin27's
    # RAS: its slices mirrored); the same spacing and order are not.
    reference = layer_geometry(viewer.layers["colin_crop"])
    targets = [(name, layer_geometry(viewer.layers[name])) for name in ("colin_crop", "oblique")]
    warnings = geometry_warnings([reference], targets, axis=2)
    assert len(warnings) == 2 and all("'oblique'" in warning for warning in warnings)
    assert "spacing" in warnings[0] and "(voxel order LAS, the training volumes RAS)" in warnings[1]


def test_foreign_or_damaged_model_file_is_notified(viewer, qtbot, tmp_path):
    import torch

    damaged, foreign = tmp_path / "damaged.pt", tmp_path / "foreign.pt"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    torch.save({"weights": torch.zeros(3)}, foreign)
    widget = dock(viewer)
    for path in (damaged, foreign):
        before = len(notification_manager.records)
        widget.files_panel.load_model(path)
        wait_idle(qtbot, widget)
        errors = messages_since(before, "error")
        assert len(errors) == 1 and path.name in errors[0] and "checkpoint" in errors[0]
        assert widget.files_panel.status_label.text().startswith("Model not loaded")
    assert widget.training_state.trainer is None and not widget.predict_button.isEnabled()


def test_files_that_cannot_be_used_are_notified_in_plain_words(viewer, qtbot, tmp_path, model_file):
    # The same words as on the command line (napari_action.io.errors), never the OS's or torch's.
    truncated, notes = tmp_path / "model.pt", tmp_path / "notes.txt"
    whole = model_file.read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    notes.write_text("the user's notes")
    image = write_nifti(tmp_path / "scan.nii.gz", disc_volume()[0])
    widget = dock(viewer)
    panel = widget.files_panel

    def notified(start) -> str:
        before = len(notification_manager.records)
        start()
        wait_idle(qtbot, widget)
        [error] = messages_since(before, "error")
        assert "Errno" not in error and "PytorchStreamReader" not in error, error
        return error

    damaged = notified(lambda: panel.load_model(truncated))
    assert damaged == (
        f"{truncated} is a damaged or truncated checkpoint (incomplete or corrupt, e.g. a copy or download "
        "that stopped early); copy or save the model again."
    )
    assert panel.status_label.text() == f"Model not loaded: {damaged}"
    assert notified(lambda: panel.load_model(image)).startswith(
        f"{image} is a NIfTI image, not a napari-action checkpoint"
    )
    assert notified(lambda: panel.load_model(tmp_path)) == (
        f"{tmp_path} is a folder, but a file is needed there; give the path of a file."
    )
    # The OS's own refusal, raised unchanged in the worker, is reworded in the notification.
    assert notified(lambda: panel.save_session(notes / "work.action.zarr")) == (
        f"{notes} is a file, but a folder is needed there; give the path of a folder, or move the file away."
    )
    assert notes.read_text() == "the user's notes" and widget.training_state.trainer is None


def test_autosave_on_timer_and_after_training_stops(viewer, qtbot, oblique):
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels")
    paint(labels, truth)
    widget = dock(viewer)
    panel = widget.files_panel
    panel.autosave_interval_s = 0.2
    qtbot.waitUntil(lambda: panel.last_autosave is not None, timeout=TIMEOUT)
    assert panel.status_label.text().startswith("Autosaved ")
    # Slow the timer before waiting for idle: on a loaded machine an autosave can take
    # longer than 0.2 s, and the panel would never be idle between two of them.
    panel.autosave_interval_s = 600
    wait_idle(qtbot, widget)
    early = load_session(panel.autosave_path)
    np.testing.assert_array_equal(early.volume("vol").painted, labels.data)
    assert early.checkpoint is None

    saved = panel.last_autosave
    widget.train_button.click()
    wait_idle(qtbot, widget)
    qtbot.waitUntil(lambda: panel.last_autosave > saved and not panel.is_busy, timeout=TIMEOUT)
    session = load_session(panel.autosave_path)
    assert checkpoint_from_bytes(session.checkpoint).class_values == [0, 1, 2]
    assert session.config["seed"] == widget.training_state.trainer.config.seed
    np.testing.assert_array_equal(session.volume("vol").prediction, viewer.layers["vol ACTION"].data)

    # A volume with 2 mm in-plane voxels, predicted by a model trained on 1 mm ones: warned.
    open_nifti(viewer, oblique)
    before = len(notification_manager.records)
    widget.predict_images(["oblique"])
    wait_idle(qtbot, widget)
    warnings = messages_since(before, "warning")
    assert len(warnings) == 1 and "'oblique'" in warnings[0] and "spacing" in warnings[0]
    assert viewer.layers["oblique ACTION"].data.shape == viewer.layers["oblique"].data.shape


def live_snapshots() -> int:
    gc.collect()
    # type(), not isinstance(): isinstance asks every object for its __class__, and torch's deprecated module
    # attributes warn when asked.
    return sum(type(item) is Snapshot for item in gc.get_objects())


def test_an_autosave_keeps_no_copy_of_the_layers_once_written(viewer, qtbot):
    """Each autosave copies every painted and prediction layer; those copies stayed with napari's record of the
    finished worker, 210 MB a minute while training on a 512 x 512 x 400 CT."""
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels")
    paint(labels, truth)
    panel = dock(viewer).files_panel
    before = live_snapshots()
    for _ in range(2):
        assert panel.autosave()
        qtbot.waitUntil(lambda: not panel.is_busy, timeout=TIMEOUT)
    np.testing.assert_array_equal(load_session(panel.autosave_path).volume("vol").painted, labels.data)
    assert live_snapshots() == before


@pytest.mark.parametrize("model_axis", [0, 2])
def test_training_continues_from_a_loaded_model_painted_along_its_axis(viewer, qtbot, tmp_path, model_axis):
    image, truth = disc_volume()
    path = tmp_path / "model.pt"
    Trainer(
        [image], [truth], tiny_config(method="supervised", steps_stage3=2, axis=model_axis, num_threads=1)
    ).save_checkpoint(path)
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels")
    paint(labels, truth)  # slices 2 and 5 of axis 0
    widget = dock(viewer)
    widget.files_panel.load_model(path)
    wait_idle(qtbot, widget)
    before = len(notification_manager.records)
    widget.train_button.click()
    wait_idle(qtbot, widget)
    assert widget.run.error is None
    if model_axis == 0:  # continued: a loaded model goes straight to stage iii rounds
        assert widget.run.last_progress.step == tiny_overrides()["steps_stage3"]
    else:  # labels painted along another axis: a new model, full schedule, and a warning
        assert widget.run.last_progress.step == 10
        assert any("training a new model" in m for m in messages_since(before, "warning"))


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_session_asks_before_replacing_a_session_and_never_touches_other_folders(
    viewer, qtbot, tmp_path, monkeypatch
):
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    paint(viewer.add_labels(np.zeros(SHAPE, np.uint8), name="vol labels"), truth)
    widget = dock(viewer)
    earlier = tmp_path / "work.action.zarr"
    save_session(earlier, Session(volumes=[]))
    kept = _files(earlier)
    notes = tmp_path / "notes.action.zarr"
    notes.mkdir()
    (notes / "notes.txt").write_text("the user's own folder")
    # Qt's modal dialogs cannot be clicked in a test: the user's choices stand in for them.
    typed, answers, questions = [], [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes], []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(typed[-1]), ""))
    monkeypatch.setattr(
        QMessageBox, "question", lambda parent, title, text, *_: questions.append(text) or answers.pop(0)
    )

    typed.append(tmp_path / "work")  # the dialog saw "work"; the suffix comes after it closed
    widget.files_panel.save_session_button.click()  # the user answers No
    wait_idle(qtbot, widget)
    assert len(questions) == 1 and "work.action.zarr already exists" in questions[0]
    assert _files(earlier) == kept
    widget.files_panel.save_session_button.click()  # the user answers Yes
    wait_idle(qtbot, widget)
    assert len(questions) == 2
    np.testing.assert_array_equal(load_session(earlier).volume("vol").painted, viewer.layers["vol labels"].data)

    typed.append(notes)  # not a session: no question, refused by the core, nothing changed
    before = len(notification_manager.records)
    widget.files_panel.save_session_button.click()
    wait_idle(qtbot, widget)
    assert len(questions) == 2
    errors = messages_since(before, "error")
    assert len(errors) == 1 and "is not a napari-action session; choose another name" in errors[0]
    assert _files(notes) == {"notes.txt": b"the user's own folder"}
