"""Class names and colours come back with a mask: the colour table Export writes, or another tool's, beside it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action._napari.label_table_layer import LabelTableWarning
from napari_action._napari.layers import class_names_of, prediction_layer_for
from tests.helpers import engine
from tests.helpers.gui import disc_volume, dock, open_nifti, wait_idle


def test_an_exported_mask_reopens_with_the_names_and_colours_it_was_exported_with(viewer, qtbot, tmp_path):
    image, _ = disc_volume()
    viewer.add_image(image, name="vol")
    widget = dock(viewer)
    layer = prediction_layer_for(viewer, viewer.layers["vol"], {1: "thalamus", 2: "putamen"}, class_values=[0, 1, 2])
    layer.data[...] = np.random.default_rng(0).integers(0, 3, layer.data.shape)
    widget.files_panel.export_masks(tmp_path)
    wait_idle(qtbot, widget)

    open_nifti(viewer, tmp_path / "vol_action.nii.gz")
    reopened = viewer.layers["vol_action"]
    # The names were lost: reopened masks showed numbers, and Train gave the classes no names.
    assert class_names_of(reopened) == {0: "background", 1: "thalamus", 2: "putamen"}
    values = np.array([1, 2])
    np.testing.assert_allclose(reopened.colormap.map(values), layer.colormap.map(values), atol=1 / 255)
    assert reopened.colormap.map(np.array([0]))[0][3] == 0  # background stays see-through


def test_an_itk_snap_label_description_beside_a_mask_names_its_classes(viewer, tmp_path):
    _, truth = disc_volume()
    mask = engine.write_nifti(tmp_path / "painted.nii.gz", engine.sparse(truth, axis=0))
    (tmp_path / "painted.ctbl").write_text(
        '# ITK-SnAP Label Description File\n    1   255  0  0   1  1  1  "Disc core"\n'
        '    2     0  0 255   1  1  1  "Ring"\n'
    )
    open_nifti(viewer, mask)
    layer = viewer.layers["painted"]
    assert class_names_of(layer) == {0: "background", 1: "Disc core", 2: "Ring"}
    np.testing.assert_allclose(layer.colormap.map(np.array([1, 2]))[:, :3], [[1, 0, 0], [0, 0, 1]])
    assert layer.colormap.map(np.array([3]))[0][3] == 1  # a value the table leaves out still shows when painted


def test_a_damaged_table_leaves_the_mask_opening_without_names_and_says_so(viewer, tmp_path):
    _, truth = disc_volume()
    mask = engine.write_nifti(tmp_path / "painted.nii.gz", engine.sparse(truth, axis=0))
    (tmp_path / "painted.ctbl").write_text("1 liver\n")
    with pytest.warns(LabelTableWarning, match=r"painted\.nii\.gz opened without its class names: .*line 1"):
        open_nifti(viewer, mask)
    np.testing.assert_array_equal(viewer.layers["painted"].data, engine.sparse(truth, axis=0))
    assert class_names_of(viewer.layers["painted"]) is None
