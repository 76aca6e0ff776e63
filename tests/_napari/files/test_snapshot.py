"""GUI test of sessions: the viewer's layers, locked edits, accepted slices and model saved and reopened.

The scene holds a crop of Colin27 opened from a file and an image without one, painted labels, and
predictions of the ``model_file`` checkpoint with one edit. The test waits for every worker it started.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.files.recovery import autosave_after_opening
from napari_action._napari.files.snapshot import read_session
from napari_action._napari.layers import SOURCE_KEY
from napari_action._napari.prediction_writer import MODEL_KEY
from napari_action._napari.widget import ActionWidget
from napari_action.io.session_store import Session, SessionVolume, file_sha256, load_session, save_session
from tests.helpers.engine import write_nifti
from tests.helpers.gui import SHAPE, disc_volume, dock, edit_slice, open_nifti, paint, wait_idle


def _describe(viewer) -> list[tuple]:
    return [
        (
            layer.name,
            type(layer).__name__,
            layer.data.dtype,
            np.array(layer.data),
            layer.affine.affine_matrix,
            np.array(layer.scale),
            np.array(layer.translate),
        )
        for layer in viewer.layers
    ]


def _assert_same_layers(found: list[tuple], expected: list[tuple]) -> None:
    assert [f[:3] for f in found] == [e[:3] for e in expected]
    for f, e in zip(found, expected, strict=True):
        for a, b in zip(f[3:], e[3:], strict=True):
            np.testing.assert_array_equal(a, b)


def _build_scene(viewer, qtbot, colin_crop, model_file) -> ActionWidget:
    """Colin crop (from a file) and a plain image, painted labels, predictions with one edit."""
    open_nifti(viewer, colin_crop)
    plain, truth = disc_volume()
    viewer.add_image(plain, name="plain", scale=(3.0, 1.0, 1.0), translate=(5.0, 0.0, 0.0))
    painted = viewer.add_labels(
        np.zeros(SHAPE, np.uint8), name="plain labels", scale=(3.0, 1.0, 1.0), translate=(5.0, 0.0, 0.0)
    )
    paint(painted, truth)
    widget = dock(viewer)
    widget.files_panel.load_model(model_file)
    wait_idle(qtbot, widget)
    widget.predict_all()
    wait_idle(qtbot, widget)
    edited = viewer.layers["colin_crop ACTION"]
    rows, cols = np.mgrid[0:4, 0:5]
    edited.data_setitem((rows.ravel(), cols.ravel(), np.full(rows.size, 3)), 2)
    widget.training_state.accepted_slices["colin_crop"] = {3, 5}
    return widget


@pytest.mark.realdata
def test_session_reopens_identically_in_a_new_viewer(make_napari_viewer, qtbot, tmp_path, colin_crop, model_file):
    first = make_napari_viewer()
    widget = _build_scene(first, qtbot, colin_crop, model_file)
    locked = widget.training_state.trackers[id(first.layers["colin_crop ACTION"])].locked.copy()
    made_by = first.layers["colin_crop ACTION"].metadata[MODEL_KEY]
    assert made_by["steps"] > 0
    expected = _describe(first)
    store = tmp_path / "work.action.zarr"
    widget.files_panel.save_session(store)
    wait_idle(qtbot, widget)
    first.close()

    stored = load_session(store)
    assert stored.volume("colin_crop").image is None and stored.volume("plain").image is not None
    second = make_napari_viewer()
    widget = dock(second)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    _assert_same_layers(_describe(second), expected)
    assert second.layers["colin_crop"].source.path == str(colin_crop)
    tracker = widget.training_state.trackers[id(second.layers["colin_crop ACTION"])]
    np.testing.assert_array_equal(tracker.locked, locked)
    assert tracker.edited_slices == {3}
    assert second.layers["colin_crop ACTION"].metadata[MODEL_KEY] == made_by  # Export's provenance names it
    assert widget.training_state.accepted_slices == {"colin_crop": {3, 5}}
    assert widget.predict_button.isEnabled()
    assert widget.files_panel.autosave_path == tmp_path / "work.autosave.action.zarr"

    widget.predict_all()  # the restored model predicts; the restored edit stays locked
    wait_idle(qtbot, widget)
    assert (second.layers["colin_crop ACTION"].data[0:4, 0:5, 3] == 2).all()
    second.close()

    nib.save(nib.Nifti1Image(np.zeros((40, 40, 16), np.uint8), nib.load(colin_crop).affine), colin_crop)
    assert any("changed since the session was saved" in w for w in read_session(store).warnings)


def test_a_source_damaged_since_saving_leaves_the_rest_of_the_session_readable(tmp_path):
    source = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((6, 6, 4), np.float32), np.eye(4)), source)
    painted = np.zeros((6, 6, 4), np.uint8)
    painted[:, :, 1] = 1
    volume = SessionVolume(name="scan", shape=(6, 6, 4), source_path=str(source), painted=painted)
    volume.source_sha256 = file_sha256(source)
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    source.write_bytes(source.read_bytes()[:40])  # truncated by another program

    restored = read_session(store)
    assert restored.images == [None] and restored.sources == [None]
    assert any("changed since the session was saved" in w for w in restored.warnings)
    assert any("can no longer be read" in w and "not reopened" in w for w in restored.warnings)
    np.testing.assert_array_equal(restored.session.volume("scan").painted, painted)


def test_a_session_opened_beside_an_image_of_the_same_name_keeps_its_accepted_slices(viewer, qtbot, tmp_path):
    # napari renames the restored image "vol [1]"; its accepted slices were recorded under "vol", the
    # image already open: listed there, and lost to the restored image's training.
    image, truth = disc_volume()
    painted = np.zeros(SHAPE, np.uint8)
    painted[2] = truth[2]
    prediction = truth.astype(np.uint8)
    volume = SessionVolume(name="vol", shape=SHAPE, image=image, painted=painted, prediction=prediction)
    volume.accepted_slices = [4]
    roles = [("image", "vol"), ("painted", "vol labels"), ("prediction", "vol ACTION")]
    records = {
        role: {"name": name, "index": k, "transform": {}, "geometry": None} for k, (role, name) in enumerate(roles)
    }
    volume.meta = {"geometry": None, "layers": records}
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    viewer.add_image(disc_volume(3)[0], name="vol")  # another scan, open before
    widget = dock(viewer)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    assert [layer.name for layer in viewer.layers][:2] == ["vol", "vol [1]"]
    assert viewer.layers["vol ACTION"].metadata["napari_action_source"] == "vol [1]"
    assert widget.training_state.accepted_slices == {"vol [1]": {4}}
    # The restored painted layer stays paired with its own image, not with the one open before.
    assert [(layer.name, image) for layer, image in widget.picker.selected_labels()] == [("vol labels", "vol [1]")]


def test_an_image_opened_by_a_relative_path_is_found_from_another_folder(viewer, qtbot, tmp_path, monkeypatch):
    # `napari scan.nii.gz` records the path as typed; a session stored it so, and reopened in napari
    # started from another folder, the image was "not found" (its voxels are not in the session).
    image, truth = disc_volume()
    (tmp_path / "data").mkdir()
    write_nifti(tmp_path / "data" / "scan.nii.gz", image)
    monkeypatch.chdir(tmp_path / "data")
    open_nifti(viewer, "scan.nii.gz")
    painted = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="scan labels")
    paint(painted, truth)
    widget = dock(viewer)
    widget.files_panel.save_session(tmp_path / "work.action.zarr")
    wait_idle(qtbot, widget)

    monkeypatch.chdir(tmp_path)
    stored = load_session(tmp_path / "work.action.zarr").volume("scan")
    assert stored.source_path == str(tmp_path / "data" / "scan.nii.gz")
    restored = read_session(tmp_path / "work.action.zarr")
    assert restored.warnings == []
    np.testing.assert_array_equal(restored.images[0], image)


def _image_and_paint(image: np.ndarray, painted: np.ndarray) -> SessionVolume:
    """A stored volume "vol" with its painted layer "vol labels", as the widget saves one."""
    roles = [("image", "vol"), ("painted", "vol labels")]
    records = {
        role: {"name": name, "index": k, "transform": {}, "geometry": None} for k, (role, name) in enumerate(roles)
    }
    return SessionVolume("vol", SHAPE, image=image, painted=painted, meta={"geometry": None, "layers": records})


def test_opening_a_session_keeps_the_newer_autosave_beside_it(viewer, qtbot, tmp_path):
    # After a crash the user opens the session they saved; its autosave sibling holds the work done since.
    # The next autosave (a minute later) replaced it: the slice painted after the save was gone.
    image, truth = disc_volume()
    saved, since = np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)
    saved[2] = since[2] = truth[2]
    since[5] = truth[5]
    store = tmp_path / "work.action.zarr"
    save_session(store, Session([_image_and_paint(image, saved)]))
    autosaved = tmp_path / "work.autosave.action.zarr"
    save_session(autosaved, Session([_image_and_paint(image, since)]))  # saved later
    widget = dock(viewer)
    before = len(notification_manager.records)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    assert widget.files_panel.autosave_path == tmp_path / "work.autosave-2.action.zarr"
    warned = [str(record.message) for record in notification_manager.records[before:]]
    assert any("work.autosave.action.zarr beside this session holds an autosave" in text for text in warned)
    assert widget.files_panel.autosave()
    wait_idle(qtbot, widget)
    np.testing.assert_array_equal(load_session(autosaved).volume("vol").painted, since)  # kept
    np.testing.assert_array_equal(load_session(widget.files_panel.autosave_path).volume("vol").painted, saved)


def test_an_autosave_older_than_the_opened_session_is_its_autosave_again(tmp_path):
    image, _ = disc_volume()
    volume = _image_and_paint(image, np.zeros(SHAPE, np.uint8))
    save_session(tmp_path / "work.autosave.action.zarr", Session([volume]))
    store = save_session(tmp_path / "work.action.zarr", Session([volume]))  # saved after its last autosave
    assert autosave_after_opening(store, load_session(store).saved_at) == (tmp_path / "work.autosave.action.zarr", None)


def test_a_session_opened_again_names_the_newest_autosave_beside_it(tmp_path):
    # Opened twice after a crash, the second opening named work.autosave (the first crash's work) where
    # work.autosave-2, written after the first opening, held the later work.
    image, _ = disc_volume()
    paint = np.zeros(SHAPE, np.uint8)
    store = save_session(tmp_path / "work.action.zarr", Session([_image_and_paint(image, paint)]))
    paint[2, 1:3, 1:3] = 1
    save_session(tmp_path / "work.autosave.action.zarr", Session([_image_and_paint(image, paint)]))  # first crash
    paint[3, 1:3, 1:3] = 1
    save_session(tmp_path / "work.autosave-2.action.zarr", Session([_image_and_paint(image, paint)]))  # after it
    path, message = autosave_after_opening(store, load_session(store).saved_at)
    assert path == tmp_path / "work.autosave-3.action.zarr"
    assert message.startswith("work.autosave-2.action.zarr beside this session holds an autosave from ")


def test_an_autosave_of_the_very_work_of_the_session_is_not_named_as_newer_work(tmp_path):
    # Saved, then autosaved with nothing changed (a minute later, or as the window closed): opening the session
    # said the autosave held "work since your last save" and moved autosaves to work.autosave-2.
    image, _ = disc_volume()
    session = Session([_image_and_paint(image, np.ones(SHAPE, np.uint8))])
    store = save_session(tmp_path / "work.action.zarr", session)
    save_session(tmp_path / "work.autosave.action.zarr", session)
    assert autosave_after_opening(store, load_session(store).saved_at) == (tmp_path / "work.autosave.action.zarr", None)


def test_a_source_moved_since_saving_is_named_with_what_came_back_and_what_to_do(tmp_path):
    # The warning said only "... was not found.": not that the labels were back, nor how to get the image back.
    source = write_nifti(tmp_path / "scan.nii.gz", disc_volume()[0])
    painted = np.zeros(SHAPE, np.uint8)
    painted[2, 4:8, 4:8] = 1
    volume = SessionVolume(name="scan", shape=SHAPE, source_path=str(source), painted=painted)
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    source.rename(tmp_path / "moved.nii.gz")

    restored = read_session(store)
    assert restored.warnings == [
        f"{source} (image 'scan') was not found: its labels and prediction are restored without it. If the file "
        "was moved or renamed, open it from where it is now (File > Open) to train and predict on it again; "
        "the next save records its new place."
    ]
    np.testing.assert_array_equal(restored.session.volume("scan").painted, painted)


def test_a_save_names_the_prediction_layers_it_cannot_keep_those_of_closed_scans(viewer, qtbot, tmp_path):
    # Closing a scan keeps its prediction layer, corrections in it, as "<scan> (closed) ACTION" (docs/usage.md);
    # a session keeps each open image's prediction layer only, and Save session… dropped the closed one's without
    # a word: the session reopened without the corrections.
    image, truth = disc_volume()
    viewer.add_image(image, name="kept")
    viewer.add_image(disc_volume(2)[0], name="closed")
    for name in ("kept", "closed"):
        viewer.add_labels(truth.astype(np.uint8), name=f"{name} ACTION", metadata={SOURCE_KEY: name})
    widget = dock(viewer)
    viewer.layers.remove("closed")
    assert "closed (closed) ACTION" in viewer.layers
    before = len(notification_manager.records)
    assert widget.files_panel.save_session(tmp_path / "work.action.zarr")
    wait_idle(qtbot, widget)

    assert load_session(tmp_path / "work.action.zarr").volume("kept").prediction is not None
    warned = [str(record.message) for record in notification_manager.records[before:]]
    assert any("not in the session" in text and "closed (closed) ACTION" in text for text in warned), warned
    assert not any("'kept ACTION'" in text or " kept ACTION" in text for text in warned)


def test_an_accepted_slice_of_an_opened_session_stays_locked_when_a_new_correction_is_undone(viewer, qtbot, tmp_path):
    # The reopened layer has no undo history: undoing a correction made since unlocked the accepted slice's voxels.
    image, truth = disc_volume()
    volume = _image_and_paint(image, np.zeros(SHAPE, np.uint8))
    volume.painted[2] = truth[2]
    volume.prediction, volume.accepted_slices = truth.astype(np.uint8), [4]
    volume.edited = np.zeros(SHAPE, bool)
    volume.edited[4] = True  # an accepted slice is locked whole
    volume.meta["layers"]["prediction"] = {"name": "vol ACTION", "index": 2, "transform": {}, "geometry": None}
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    widget = dock(viewer)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    layer = viewer.layers["vol ACTION"]
    edit_slice(layer, 4, 2)
    layer.undo()

    tracker = widget.training_state.trackers[id(layer)]
    assert widget.training_state.accepted_slices == {"vol": {4}} and tracker.locked[4].all()
