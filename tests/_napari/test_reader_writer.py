"""npe2 reader and writer inside a real napari viewer (needs Xvfb for OpenGL)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.reader import (
    DisplayGeometryWarning,
    display_affine,
    napari_get_reader,
    open_nifti,
    read_nifti,
)
from napari_action._napari.writer import write_labels
from napari_action.io.nifti import NonFiniteVoxelsWarning, VolumeError, load_labels, load_volume
from napari_action.io.volume_meta import VolumeMeta
from tests.helpers.gui import PLUGIN

HEADER_GEOMETRY = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z")
HEADER_GEOMETRY += ("srow_x", "srow_y", "srow_z", "pixdim", "qform_code", "sform_code", "xyzt_units")


@pytest.mark.parametrize("name", ["a.nii", "b.NII.GZ", ["a.nii", "b.nii.gz"]])
def test_reader_claims_nifti(name):
    assert napari_get_reader(name) is open_nifti


@pytest.mark.parametrize("name", ["a.tif", "a.mgz", "nii", ".nii", [], ["a.nii", "b.tif"]])
def test_reader_declines_other_files(name):
    assert napari_get_reader(name) is None


def test_a_nifti_pair_is_refused_in_words_not_opened_by_napari_flipped(make_napari_viewer, tmp_path):
    # napari-action left .hdr/.img to napari's own reader: the scan opened with its axes reversed and no
    # geometry, and a mask painted on it overlaid the scan in no other tool.
    nib.save(nib.Nifti1Pair(np.zeros((4, 5, 6), np.float32), np.diag([0.8, 0.8, 3.0, 1.0])), tmp_path / "pair.img")
    (tmp_path / "envi.hdr").write_text("ENVI\n")
    assert napari_get_reader(str(tmp_path / "pair.img")) is open_nifti
    assert napari_get_reader(str(tmp_path / "envi.img")) is None  # ENVI's text header: another format
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    viewer.open(tmp_path / "pair.img", plugin=PLUGIN)
    assert len(viewer.layers) == 0
    (error,) = [str(n.message) for n in notification_manager.records[before:] if str(n.severity) == "error"]
    assert "one file of a NIfTI-1 file pair" in error and "fslchfiletype NIFTI_GZ" in error


def test_open_image_keeps_scanner_geometry(make_napari_viewer, nibabel_data):
    path = nibabel_data / "anatomical.nii"
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    data, meta = load_volume(path)
    assert layer._type_string == "image" and layer.name == "anatomical"
    np.testing.assert_array_equal(layer.data, data)
    # The full affine carries the spacing: no separate scale, world = scanner mm.
    np.testing.assert_array_equal(layer.affine.affine_matrix, meta.affine)
    np.testing.assert_array_equal(layer.scale, [1, 1, 1])
    np.testing.assert_allclose(layer.data_to_world([2, 3, 4]), (meta.affine @ [2, 3, 4, 1])[:3])
    assert VolumeMeta.from_dict(layer.metadata["napari_action"]) == meta


@pytest.mark.realdata
def test_open_colin27_image_and_atlas(make_napari_viewer, colin27_dir):
    viewer = make_napari_viewer()
    image = viewer.open(colin27_dir / "ch2.nii.gz", plugin=PLUGIN)[0]
    atlas = viewer.open(colin27_dir / "aal.nii.gz", plugin=PLUGIN)[0]
    assert (image._type_string, atlas._type_string) == ("image", "labels")
    assert atlas.data.dtype == np.uint8 and atlas.data.max() == 116
    np.testing.assert_array_equal(image.affine.affine_matrix, atlas.affine.affine_matrix)


def _labels_source(request, nibabel_data):
    if request.param == "aal":
        return request.getfixturevalue("colin27_dir") / "aal.nii.gz"
    return nibabel_data / request.param


@pytest.fixture
def labels_file(request, nibabel_data):
    return _labels_source(request, nibabel_data)


@pytest.mark.parametrize(
    "labels_file",
    [
        pytest.param("aal", marks=pytest.mark.realdata, id="colin27-aal"),
        pytest.param("standard.nii.gz", id="qform0"),
    ],
    indirect=True,
)
def test_edit_and_save_labels_layer_with_source_geometry(make_napari_viewer, labels_file, tmp_path):
    viewer = make_napari_viewer()
    (layer,) = viewer.open(labels_file, plugin=PLUGIN)
    assert layer._type_string == "labels"
    layer.data_setitem((np.array([1]), np.array([2]), np.array([3])), 7)
    (written,) = layer.save(str(tmp_path / "edited.nii.gz"), plugin=PLUGIN)

    saved, _ = load_labels(written)
    np.testing.assert_array_equal(saved, layer.data)
    assert saved[1, 2, 3] == 7
    source, out = nib.load(labels_file).header, nib.load(written).header
    for field in HEADER_GEOMETRY:
        np.testing.assert_array_equal(out[field], source[field], err_msg=field)
    reopened = viewer.open(written, plugin=PLUGIN)[0]
    assert reopened._type_string == "labels"
    np.testing.assert_array_equal(reopened.affine.affine_matrix, layer.affine.affine_matrix)


def test_a_float_mask_from_fsl_or_ants_opens_as_labels_over_its_scan(make_napari_viewer, nibabel_data, tmp_path):
    # fslmaths and antsApplyTransforms write masks as float32: they opened as a grey Image, not paintable.
    scan = nib.load(nibabel_data / "anatomical.nii")
    mask = (np.asarray(scan.dataobj) > np.median(np.asarray(scan.dataobj))).astype(np.float32) * 2
    nib.save(nib.Nifti1Image(mask, scan.affine, scan.header), tmp_path / "brain_mask.nii.gz")
    viewer = make_napari_viewer()
    image = viewer.open(nibabel_data / "anatomical.nii", plugin=PLUGIN)[0]
    (layer,) = viewer.open(tmp_path / "brain_mask.nii.gz", plugin=PLUGIN)
    assert layer._type_string == "labels" and layer.data.dtype == np.uint8
    np.testing.assert_array_equal(layer.data, mask)
    np.testing.assert_array_equal(layer.affine.affine_matrix, image.affine.affine_matrix)


def test_new_labels_layer_is_saved_with_its_own_transform(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    turn = np.deg2rad(20)  # rotation within the displayed plane: napari slices it fine
    rotated = np.eye(4)
    rotated[1:3, 1:3] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    rotated[:3, 3] = (-5, 7, 2)
    layer = viewer.add_labels(np.zeros((6, 7, 8), np.uint16), scale=(2, 3, 4), translate=(10, 20, 30))
    layer.affine = rotated
    layer.data[2, 3, 4] = 300
    (written,) = layer.save(str(tmp_path / "drawn"), plugin=PLUGIN)  # extension added

    assert written.endswith("drawn.nii.gz")
    labels, meta = load_labels(written)
    assert labels.dtype == np.int16 and labels[2, 3, 4] == 300
    scale_translate = np.array([[2, 0, 0, 10], [0, 3, 0, 20], [0, 0, 4, 30], [0, 0, 0, 1]])
    np.testing.assert_allclose(meta.affine, rotated @ scale_translate, atol=1e-5)
    assert meta.qform_code == meta.sform_code == 2
    np.testing.assert_allclose((meta.affine @ [1, 1, 1, 1])[:3], layer.data_to_world([1, 1, 1]), atol=1e-5)


def test_axis_permuted_file_opens_voxel_aligned_and_saves_exactly(make_napari_viewer, nibabel_data, tmp_path):
    source = tmp_path / "permuted_seg.nii.gz"  # real voxels, axes permuted: array axis 0 is S-I
    nib.save(nib.load(nibabel_data / "anatomical.nii").as_reoriented([[1, 1], [2, 1], [0, 1]]), source)
    viewer = make_napari_viewer()
    with pytest.warns(DisplayGeometryWarning, match="permuted_seg.nii.gz: its array axes are permuted"):
        (layer,) = viewer.open(source, plugin=PLUGIN)
    _, meta = load_volume(source)
    assert layer._type_string == "labels" and meta.orientation == "SLA"
    np.testing.assert_array_equal(layer.affine.affine_matrix, display_affine(meta))
    np.testing.assert_array_equal(np.diag(layer.affine.affine_matrix)[:3], meta.zooms)
    (written,) = layer.save(str(tmp_path / "out.nii.gz"), plugin=PLUGIN)
    for field in HEADER_GEOMETRY:
        np.testing.assert_array_equal(nib.load(written).header[field], nib.load(source).header[field])


def test_oblique_file_keeps_its_full_affine(make_napari_viewer, nibabel_data, tmp_path):
    source = tmp_path / "oblique.nii.gz"
    nib.save(nib.load(nibabel_data / "example4d.nii.gz").slicer[..., 0], source)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(source, plugin=PLUGIN)
    _, meta = load_volume(source)
    assert abs(meta.affine[1, 2]) > 0.3  # really oblique
    np.testing.assert_array_equal(layer.affine.affine_matrix, meta.affine)


def test_writer_falls_back_when_stored_geometry_no_longer_fits(nibabel_data, tmp_path, caplog):
    _, meta = load_volume(nibabel_data / "anatomical.nii")
    attributes = {"metadata": {"napari_action": meta.to_dict()}, "affine": np.eye(4), "scale": [2, 2, 2]}
    (written,) = write_labels(str(tmp_path / "moved.nii"), np.ones(meta.shape, np.uint8), attributes)
    assert "changed since it was read" in caplog.text
    np.testing.assert_allclose(load_labels(written)[1].affine, np.diag([2, 2, 2, 1]))


def test_writer_rejects_non_3d_layers(tmp_path):
    with pytest.raises(VolumeError, match="writes 3D label volumes; this layer is 2D"):
        write_labels(str(tmp_path / "flat.nii.gz"), np.zeros((4, 4), np.uint8), {})


def test_reader_warns_about_nan_and_raises_on_4d(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "reoriented_anat_moved.nii")
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), tmp_path / "nan.nii.gz")
    with pytest.warns(NonFiniteVoxelsWarning, match="1 of 12012 voxels"):
        ((layer_data, kwargs, kind),) = read_nifti(str(tmp_path / "nan.nii.gz"))
    assert kind == "image" and layer_data[0, 0, 0] == 0 and kwargs["name"] == "nan"
    with pytest.raises(VolumeError, match="4D"):
        read_nifti(str(nibabel_data / "example4d.nii.gz"))


def test_new_labels_layer_on_an_axis_permuted_file_is_saved_with_the_files_geometry(
    make_napari_viewer, nibabel_data, tmp_path
):
    source = tmp_path / "permuted.nii.gz"  # array axis 0 is S-I: shown voxel-aligned
    nib.save(nib.load(nibabel_data / "anatomical.nii").as_reoriented([[1, 1], [2, 1], [0, 1]]), source)
    viewer = make_napari_viewer()
    with pytest.warns(DisplayGeometryWarning):
        (image,) = viewer.open(source, plugin=PLUGIN)
    assert image._type_string == "image"
    viewer.layers.selection.active = image
    viewer._new_labels()  # napari's "new labels" button: the image's transform, not its metadata
    labels = viewer.layers[-1]
    labels.data[2, 3, 4] = 5
    (written,) = labels.save(str(tmp_path / "painted.nii.gz"), plugin=PLUGIN)

    saved, meta = load_labels(written)
    assert saved[2, 3, 4] == 5
    np.testing.assert_allclose(meta.affine, nib.load(source).affine, atol=1e-5)  # overlays the file
    for field in HEADER_GEOMETRY:
        np.testing.assert_array_equal(nib.load(written).header[field], nib.load(source).header[field])


def _qform_unlike_sform(path):
    """An oblique scan whose qform (scanner, code 1) differs from its sform (aligned, code 2), as FSL leaves
    registered scans: napari draws the sform, ITK-SNAP and 3D Slicer the qform."""
    turn = np.deg2rad(10)
    qform = np.array(
        [[np.cos(turn), -np.sin(turn), 0, 5], [np.sin(turn), np.cos(turn), 0, 5], [0, 0, 2.5, 5], [0, 0, 0, 1]]
    )
    image = nib.Nifti1Image(np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8), None)
    image.header.set_qform(qform, code=1)
    sform = np.diag([0.8, 0.9, 2.5, 1.0])
    sform[:3, 3] = (-10, 20, 33)
    image.header.set_sform(sform, code=2)
    nib.save(image, path)
    return path


@pytest.mark.parametrize("codes", ["qform-unlike-sform", "no-codes"])
def test_new_labels_layer_is_saved_with_the_header_of_the_file_it_lies_on(make_napari_viewer, tmp_path, codes):
    # Saved with the layer's transform as qform = sform (code 2), such a mask overlaid its scan in napari
    # only: ITK-SNAP and 3D Slicer put the scan at its qform (or, with neither code, at the origin).
    source = _qform_unlike_sform(tmp_path / "scan.nii.gz")
    if codes == "no-codes":
        image = nib.load(source)
        image.header["qform_code"] = image.header["sform_code"] = 0
        nib.save(image, source)
    viewer = make_napari_viewer()
    (image,) = viewer.open(source, plugin=PLUGIN)
    viewer.layers.selection.active = image
    viewer._new_labels()  # napari's "new labels" button: the image's transform, not its metadata
    labels = viewer.layers[-1]
    labels.data[2, 3, 4] = 5
    (written,) = labels.save(str(tmp_path / "painted.nii.gz"), plugin=PLUGIN)

    assert load_labels(written)[0][2, 3, 4] == 5
    for field in HEADER_GEOMETRY:
        np.testing.assert_array_equal(nib.load(written).header[field], nib.load(source).header[field], err_msg=field)


def test_a_padded_ct_with_a_screw_opens_with_its_anatomy_in_contrast(make_napari_viewer, tmp_path):
    # As dcm2niix writes one: int16 with scl_slope 1 and scl_inter -1024, -3024 HU outside the circular field
    # of view and a pedicle screw at +3200 HU. napari's own window, minimum to maximum, showed air at a third
    # and bone at three fifths of one band of grey.
    rng = np.random.default_rng(0)
    rows, cols = np.indices((64, 64)) - 31.5
    plane = np.where((rows / 24) ** 2 + (cols / 28) ** 2 <= 1, 40.0, -1000.0)
    plane[(rows - 8) ** 2 + cols**2 <= 36] = 700.0  # a vertebral body
    hu = np.repeat(plane[:, :, None], 8, axis=2) + rng.normal(0, 15, (64, 64, 8))
    hu[30:33, 20:34, 3:5] = 3200.0  # the screw
    hu[rows**2 + cols**2 > 32**2] = -3024.0
    image = nib.Nifti1Image(np.round(hu + 1024).astype(np.int16), np.diag([-0.7, -0.7, 3.0, 1.0]))
    image.header.set_slope_inter(1.0, -1024.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(tmp_path / "ct.nii.gz", plugin=PLUGIN)
    low, high = layer.contrast_limits
    assert -1100 < low < -900  # air is black
    assert 700 < high < 1000  # bone is white; the screw and the padding are out of the window
