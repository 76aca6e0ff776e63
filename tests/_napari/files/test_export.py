"""GUI test of "Export refined masks…": NIfTI files with their source geometry, and no silent overwrite.

Volumes: a crop of Colin27 written with its real affine, the first volume of nibabel's
``example4d.nii.gz`` (an oblique, non-diagonal affine), and an image with no NIfTI header.
The prediction layers are filled with random labels: the test checks geometry and files.
The test waits for every worker it started.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.layers import prediction_layer_for
from napari_action.io.nifti import load_labels, load_volume
from tests.helpers import engine
from tests.helpers.gui import disc_volume, dock, messages_since, open_nifti, wait_idle
from tests.helpers.os_limits import Outcome, run_save


def _fill_predictions(viewer, names, seed: int, class_names=None) -> list:
    """A prediction layer of classes 0-2 (named by ``class_names``) over each image of ``names``, filled at random."""
    rng = np.random.default_rng(seed)
    layers = []
    for name in names:
        layer = prediction_layer_for(viewer, viewer.layers[name], class_names, class_values=[0, 1, 2])
        layer.data[...] = rng.integers(0, 3, layer.data.shape)
        layers.append(layer)
    return layers


@pytest.mark.realdata
def test_export_keeps_source_geometry_and_asks_before_overwriting(viewer, qtbot, tmp_path, colin_crop, oblique):
    open_nifti(viewer, colin_crop, oblique)
    plain, _ = disc_volume()
    viewer.add_image(plain, name="plain", scale=(3.0, 1.0, 1.0), translate=(5.0, 0.0, 0.0))  # no NIfTI header
    widget = dock(viewer)
    names = ("colin_crop", "oblique", "plain")
    _fill_predictions(viewer, names, seed=0)
    out = tmp_path / "export"
    out.mkdir()
    widget.files_panel.export_masks(out)
    wait_idle(qtbot, widget)
    for name, source in (("colin_crop", colin_crop), ("oblique", oblique)):
        labels, meta = load_labels(out / f"{name}_action.nii.gz")
        np.testing.assert_array_equal(labels, viewer.layers[f"{name} ACTION"].data)
        _, expected = load_volume(source)
        np.testing.assert_array_equal(meta.affine, expected.affine)
        np.testing.assert_array_equal(meta.qform, expected.qform)
        np.testing.assert_array_equal(meta.sform, expected.sform)
        assert (meta.qform_code, meta.sform_code, meta.zooms) == (
            expected.qform_code,
            expected.sform_code,
            expected.zooms,
        )
    labels, meta = load_labels(out / "plain_action.nii.gz")
    np.testing.assert_array_equal(labels, viewer.layers["plain ACTION"].data)
    np.testing.assert_allclose(meta.affine, [[3, 0, 0, 5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert (meta.qform_code, meta.sform_code) == (2, 2)

    written = {p.name: p.read_bytes() for p in out.iterdir()}
    _fill_predictions(viewer, names, seed=1)
    before = len(notification_manager.records)
    widget.files_panel.export_masks(out, overwrite=False)
    wait_idle(qtbot, widget)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == written
    assert any("kept 6 existing" in m for m in messages_since(before, "info"))  # 3 masks and their sidecars
    asked = []
    widget.files_panel.export_masks(out, overwrite=lambda paths: asked.extend(paths) or True)
    wait_idle(qtbot, widget)
    assert sorted(p.name for p in asked) == sorted(written)
    np.testing.assert_array_equal(load_labels(out / "oblique_action.nii.gz")[0], viewer.layers["oblique ACTION"].data)


# Child code: export a small and a large mask of random labels to the folder args[0]
# (imports first: napari writes its icon cache while importing).
_IMPORTS = """
from pathlib import Path
import numpy as np
from napari_action._napari.files.export import ExportItem, write_export
from napari_action.io.volume_meta import VolumeMeta
"""
_EXPORT_TWO = """
def item(name, shape):
    labels = np.random.default_rng(0).integers(0, 3, shape).astype(np.uint8)
    return ExportItem(name, Path(args[0]) / f"{name}_action.nii", labels, VolumeMeta.from_affine(np.eye(4), shape))

write_export([item("small", (16, 16, 8)), item("large", (64, 64, 32))])
"""


def test_an_export_that_fills_the_disk_names_what_was_written_before(tmp_path):
    # 8 KiB: room for the 2 KiB mask, not for the 128 KiB one (the OS refuses the write, as on a full disk).
    outcome = run_save(_EXPORT_TWO, tmp_path, setup=_IMPORTS, file_size_limit=8 << 10)
    large = tmp_path / "large_action.nii"
    assert outcome == Outcome(
        "OSError",
        errno.EFBIG,
        f"could not write {large}: the disk is full or the file is too large (File too large); "
        "free some space and save again. Exported before this failure: small_action.nii.",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["small_action.nii"]
    assert load_labels(tmp_path / "small_action.nii")[0].shape == (16, 16, 8)


def test_a_duplicated_prediction_layer_is_exported_to_a_file_of_its_own(viewer, qtbot, tmp_path):
    # napari's Duplicate Layer copies the metadata that marks a prediction layer: both layers were
    # written to "vol_action.nii.gz", the second failing with "already exists" (the copy, with the
    # user's edits, not exported), or replacing the first when the user allowed replacing files.
    from napari.layers._layer_actions import _duplicate_layer

    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    _fill_predictions(viewer, ["vol"], seed=0)
    viewer.layers.selection = {viewer.layers["vol ACTION"]}
    _duplicate_layer(viewer.layers)
    copy = viewer.layers["vol ACTION copy"]
    copy.data[...] = 7
    out = tmp_path / "export"
    out.mkdir()
    before = len(notification_manager.records)
    assert widget.files_panel.export_masks(out, overwrite=True)
    wait_idle(qtbot, widget)
    assert not messages_since(before, "error")
    assert sorted(p.name for p in out.iterdir()) == [
        "vol ACTION copy_action.json",
        "vol ACTION copy_action.nii.gz",
        "vol_action.json",
        "vol_action.nii.gz",
    ]
    np.testing.assert_array_equal(load_labels(out / "vol_action.nii.gz")[0], viewer.layers["vol ACTION"].data)
    np.testing.assert_array_equal(load_labels(out / "vol ACTION copy_action.nii.gz")[0], copy.data)


def test_export_names_hold_nothing_windows_refuses_and_differ_in_more_than_case(tmp_path):
    from napari_action._napari.files.export import _free_path, export_name

    # Windows refuses  < > : " / \ | ? *  in a file name (a layer renamed "T1 | liver?" could not be exported).
    assert export_name('T1 | liver? <a>:"b"*\\c/d') == "T1 _ liver_ _a___b___c_d_action.nii.gz"
    # macOS and Windows take Heart_action.nii.gz and heart_action.nii.gz for one file: the second export replaced
    # the first. The second layer is named after itself, as a second layer of one image is.
    taken: set[str] = set()
    first = _free_path(tmp_path, "Heart", "Heart prediction", taken)
    second = _free_path(tmp_path, "heart", "heart prediction", taken)
    assert (first.name, second.name) == ("Heart_action.nii.gz", "heart prediction_action.nii.gz")


def test_named_classes_go_beside_the_mask_in_a_colour_table_with_the_colours_shown(viewer, qtbot, tmp_path):
    # Other tools read only numbers from a NIfTI mask: the names given in napari were lost on export.
    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    (layer,) = _fill_predictions(viewer, ["vol"], seed=0, class_names={1: "left hippocampus", 2: "amygdala"})
    out = tmp_path / "export"
    out.mkdir()
    widget.files_panel.export_masks(out)
    wait_idle(qtbot, widget)
    assert sorted(p.name for p in out.iterdir()) == ["vol_action.ctbl", "vol_action.json", "vol_action.nii.gz"]
    rows = [line.split() for line in (out / "vol_action.ctbl").read_text().splitlines()[1:]]
    assert [row[:2] for row in rows] == [["0", "background"], ["1", "left_hippocampus"], ["2", "amygdala"]]
    shown = np.round(255 * np.asarray(layer.colormap.map(np.array([1, 2])))).astype(int)
    assert [[int(c) for c in row[2:]] for row in rows[1:]] == shown.tolist()

    before = len(notification_manager.records)
    widget.files_panel.export_masks(out, overwrite=False)  # the three files exist: all are kept
    wait_idle(qtbot, widget)
    assert any("kept 3 existing" in m for m in messages_since(before, "info"))
    (out / "vol_action.nii.gz").unlink()  # the table alone still counts as the user's file
    asked = []
    widget.files_panel.export_masks(out, overwrite=lambda paths: asked.extend(paths) or False)
    wait_idle(qtbot, widget)
    assert [p.name for p in asked] == ["vol_action.ctbl", "vol_action.json"]
    assert not (out / "vol_action.nii.gz").exists()


def test_no_table_when_no_class_is_named(viewer, qtbot, tmp_path):
    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    _fill_predictions(viewer, ["vol"], seed=0)  # classes 1 and 2 named by their numbers only
    widget.files_panel.export_masks(tmp_path)
    wait_idle(qtbot, widget)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol_action.json", "vol_action.nii.gz"]


def test_the_colour_table_keeps_every_class_colour_while_show_selected_label_hides_classes(viewer, qtbot, tmp_path):
    # With "show selected label" ticked on the prediction layer, the table gave every other class 0 0 0 0.
    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    (layer,) = _fill_predictions(viewer, ["vol"], seed=0, class_names={1: "disc", 2: "ring"})
    all_shown = np.round(255 * np.asarray(layer.colormap.map(np.array([1, 2])))).astype(int).tolist()
    layer.selected_label = 1
    layer.show_selected_label = True
    widget.files_panel.export_masks(tmp_path)
    wait_idle(qtbot, widget)
    rows = [line.split() for line in (tmp_path / "vol_action.ctbl").read_text().splitlines()[1:]]
    assert [[int(c) for c in row[2:]] for row in rows[1:]] == all_shown
    assert all_shown[1][3] == 255


def test_export_waits_while_predict_writes_the_layers_and_is_back_when_it_ends_is_stopped_or_fails(
    viewer, qtbot, tmp_path, model_file
):
    # Export stayed enabled while Predict wrote into the prediction layers: the masks exported then were some of the
    # new prediction and some of the last.
    from napari_action._napari.files.panel import EXPORT_TIP, WAITING_FOR_PREDICT

    image, _ = engine.disc_volume(0)
    viewer.add_image(image, name="scan")
    widget = dock(viewer)
    panel = widget.files_panel
    assert panel.load_model(model_file)
    wait_idle(qtbot, widget)
    _fill_predictions(viewer, ["scan"], seed=0)  # an earlier prediction in its layer
    assert panel.export_button.isEnabled() and panel.export_button.toolTip() == EXPORT_TIP

    widget.predict_button.click()
    assert not panel.export_button.isEnabled() and panel.export_button.toolTip() == WAITING_FOR_PREDICT
    before = len(notification_manager.records)
    assert not panel.export_masks(tmp_path)  # a script's export is refused as well
    assert messages_since(before, "warning") == [
        "ACTION: not exported: Predict is writing new predictions into the '<image> ACTION' layers, so some masks "
        "would be the new ones and some the last ones. Export once it has finished, or press Stop to end it."
    ]
    wait_idle(qtbot, widget)
    assert panel.export_button.isEnabled() and panel.export_button.toolTip() == EXPORT_TIP

    widget.predict_button.click()
    widget.stop_button.click()
    assert not panel.export_button.isEnabled()  # stopping: the slices in hand are still to be written
    wait_idle(qtbot, widget)
    assert panel.export_button.isEnabled()

    viewer.layers["scan"].data[0, 0, 0] = np.nan  # the prediction fails in its worker
    widget.predict_button.click()
    assert not panel.export_button.isEnabled()
    wait_idle(qtbot, widget)
    assert messages_since(before, "error") and panel.export_button.isEnabled()
    assert panel.export_masks(tmp_path)
    wait_idle(qtbot, widget)
    assert (tmp_path / "scan_action.nii.gz").exists()
