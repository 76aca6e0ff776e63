"""GUI test of "Export refined masks…": NIfTI files with their source geometry, and no silent overwrite.

Volumes: a crop of Colin27 written with its real affine, the first volume of nibabel's
``example4d.nii.gz`` (an oblique, non-diagonal affine), and an image with no NIfTI header.
The prediction layers are filled with random labels: the test checks geometry and files.
The test waits for every worker it started.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.layers import prediction_layer_for
from napari_action.io.nifti import load_labels, load_volume
from tests.helpers.gui import disc_volume, dock, messages_since, open_nifti, wait_idle


def _fill_predictions(viewer, names, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        layer = prediction_layer_for(viewer, viewer.layers[name], class_values=[0, 1, 2])
        layer.data[...] = rng.integers(0, 3, layer.data.shape)


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
    assert any("kept 3 existing" in m for m in messages_since(before, "info"))
    asked = []
    widget.files_panel.export_masks(out, overwrite=lambda paths: asked.extend(paths) or True)
    wait_idle(qtbot, widget)
    assert sorted(p.name for p in asked) == sorted(written)
    np.testing.assert_array_equal(load_labels(out / "oblique_action.nii.gz")[0], viewer.layers["oblique ACTION"].data)
