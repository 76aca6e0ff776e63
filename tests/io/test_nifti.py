"""NIfTI input on real files: exact geometry round-trips, every bad input, the label heuristic."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.io.nifti import (
    NIFTI_INTENT_LABEL,
    NonFiniteVoxelsWarning,
    VolumeError,
    is_label_file,
    load_labels,
    load_volume,
    named_as_labels,
)
from napari_action.io.nifti_writer import save_labels

GEOMETRY_FIELDS = (
    "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z",
    "srow_x", "srow_y", "srow_z", "pixdim", "qform_code", "sform_code", "xyzt_units",
)  # fmt: skip


def _first_volume(src: Path, dest: Path) -> Path:
    """A real 3D file cut from a real 4D one; nibabel keeps its header geometry."""
    nib.save(nib.load(src).slicer[..., 0], dest)
    return dest


@pytest.fixture
def real_volume(request, nibabel_data, tmp_path) -> Path:
    """Real 3D NIfTI files with varied geometry (see the ids in ``ROUND_TRIP``)."""
    kind = request.param
    if kind in ("ch2", "aal"):
        return request.getfixturevalue("colin27_dir") / f"{kind}.nii.gz"
    if kind == "oblique":  # qform/sform code 1, non-diagonal affine
        return _first_volume(nibabel_data / "example4d.nii.gz", tmp_path / "oblique.nii.gz")
    if kind == "nifti2":
        return _first_volume(nibabel_data / "example_nifti2.nii.gz", tmp_path / "nifti2.nii.gz")
    return nibabel_data / kind


ROUND_TRIP = [
    pytest.param("ch2", marks=pytest.mark.realdata, id="colin27-ch2-sform4"),
    pytest.param("aal", marks=pytest.mark.realdata, id="colin27-aal-labels"),
    pytest.param("anatomical.nii", id="bigendian-int16-LAS"),
    pytest.param("standard.nii.gz", id="qform0-sform2"),
    pytest.param("reoriented_anat_moved.nii", id="float32-moved"),
    pytest.param("oblique", id="oblique-code1"),
    pytest.param("nifti2", id="nifti2"),
]


@pytest.mark.parametrize("real_volume", ROUND_TRIP, indirect=True)
def test_labels_round_trip_keeps_geometry_exactly(real_volume, tmp_path):
    data, meta = load_volume(real_volume)
    labels = (data > np.median(data)).astype(np.int32) * 3
    out = save_labels(tmp_path / "labels.nii.gz", labels, meta)

    back, back_meta = load_labels(out)
    np.testing.assert_array_equal(back, labels)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back_meta.affine, meta.affine)
    np.testing.assert_array_equal(back_meta.qform, meta.qform)
    np.testing.assert_array_equal(back_meta.sform, meta.sform)
    assert (back_meta.qform_code, back_meta.sform_code) == (meta.qform_code, meta.sform_code)
    assert back_meta.zooms == meta.zooms
    source, written = nib.load(real_volume).header, nib.load(out).header
    assert type(written) is type(source)
    for name in GEOMETRY_FIELDS:
        np.testing.assert_array_equal(written[name], source[name], err_msg=name)
    assert int(written["intent_code"]) == NIFTI_INTENT_LABEL
    assert np.isnan(written["scl_slope"]) and np.isnan(written["scl_inter"])


@pytest.mark.realdata
def test_atlas_voxels_round_trip_identically(colin27_dir, tmp_path):
    aal, meta = load_labels(colin27_dir / "aal.nii.gz")
    out = save_labels(tmp_path / "aal_copy.nii", aal, meta)
    back, _ = load_labels(out)
    assert back.dtype == aal.dtype == np.uint8
    np.testing.assert_array_equal(back, aal)
    np.testing.assert_array_equal(back, np.asarray(nib.load(colin27_dir / "aal.nii.gz").dataobj))


def test_load_volume_keeps_file_voxel_order_and_native_byte_order(nibabel_data):
    path = nibabel_data / "anatomical.nii"  # stored big-endian, LAS
    data, meta = load_volume(path)
    raw = np.asarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(data, raw)
    assert data.dtype.isnative and data.dtype == np.int16
    assert meta.shape == raw.shape and meta.dtype == "int16" and meta.path == str(path)
    assert meta.orientation == "LAS"


def test_squeezes_a_4d_file_holding_one_volume(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "example4d.nii.gz").slicer[..., :1]
    nib.save(img, tmp_path / "one.nii.gz")
    data, meta = load_volume(tmp_path / "one.nii.gz")
    assert data.shape == meta.shape == img.shape[:3]


def _in_micrometres(path: Path, data: np.ndarray) -> Path:
    """``data`` saved with 500 x 500 x 2000 um voxels, a rotation and an origin, in micrometres (xyzt_units 3)."""
    affine = np.array(
        [[0.0, -500.0, 0.0, 12_000.0], [500.0, 0.0, 0.0, -4_000.0], [0.0, 0.0, 2_000.0, 750.0], [0, 0, 0, 1]]
    )
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units(xyz="micron", t="sec")
    nib.save(image, path)
    return path


def test_a_file_in_micrometres_is_read_in_millimetres_and_written_back_in_its_own_unit(tmp_path):
    # Read as 500 mm voxels: prediction resized every slice 625-fold and failed on an 85 GB allocation.
    source = _in_micrometres(tmp_path / "micro.nii.gz", np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    _, meta = load_volume(source)
    assert meta.zooms == (0.5, 0.5, 2.0)  # mm, as ITK (ITK-SNAP, Slicer) reads the file
    np.testing.assert_allclose(meta.affine, [[0, -0.5, 0, 12], [0.5, 0, 0, -4], [0, 0, 2, 0.75], [0, 0, 0, 1]])
    out = save_labels(tmp_path / "micro_labels.nii.gz", np.ones(meta.shape, np.uint8), meta)
    written, original = nib.load(out).header, nib.load(source).header
    for name in GEOMETRY_FIELDS:  # the file's own unit, untouched
        np.testing.assert_array_equal(written[name], original[name], err_msg=name)
    np.testing.assert_array_equal(load_labels(out)[1].affine, meta.affine)


def test_scaled_file_loads_as_scaled_float32_and_is_not_labels(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "anatomical.nii")
    img.header.set_slope_inter(2.0, 10.0)
    nib.save(img, tmp_path / "scaled_seg.nii")
    data, _ = load_volume(tmp_path / "scaled_seg.nii")
    assert data.dtype == np.float32
    raw = np.asarray(nib.load(nibabel_data / "anatomical.nii").dataobj).astype(np.float64)
    np.testing.assert_allclose(data, raw * 2 + 10)
    assert not is_label_file(tmp_path / "scaled_seg.nii", data)


# -- bad inputs -------------------------------------------------------------------------------


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def test_rejects_non_nifti_names(nibabel_data):
    with pytest.raises(VolumeError, match=r"test\.mgz: a FreeSurfer volume \(\.mgz\), not NIfTI; .*\.nii or \.nii\.gz"):
        load_volume(nibabel_data / "test.mgz")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz: no such file"):
        load_volume(tmp_path / "nope.nii.gz")


def test_truncated_gzip_says_truncated(nibabel_data, tmp_path):
    # A 3D file: a cut 4D series is refused for being 4D, before its voxels are read.
    raw = gzip.compress((nibabel_data / "anatomical.nii").read_bytes())
    path = _write(tmp_path / "cut.nii.gz", raw[: len(raw) // 2])
    with pytest.raises(VolumeError, match=r"cut\.nii\.gz: .*truncated or corrupt; re-export"):
        load_volume(path)


def test_truncated_uncompressed_file(nibabel_data, tmp_path):
    raw = (nibabel_data / "anatomical.nii").read_bytes()
    with pytest.raises(VolumeError, match=r"cut\.nii: the voxel data cannot be read"):
        load_volume(_write(tmp_path / "cut.nii", raw[:5000]))
    with pytest.raises(VolumeError, match=r"head\.nii: cannot be read as NIfTI"):
        load_volume(_write(tmp_path / "head.nii", raw[:100]))


def test_garbage_and_mislabelled_files(nibabel_data, tmp_path):
    with pytest.raises(VolumeError, match=r"junk\.nii: cannot be read as NIfTI"):
        load_volume(_write(tmp_path / "junk.nii", b"not an image at all" * 40))
    plain = (nibabel_data / "anatomical.nii").read_bytes()
    with pytest.raises(VolumeError, match=r"plain\.nii\.gz: cannot be read as NIfTI .*gzip"):
        load_volume(_write(tmp_path / "plain.nii.gz", plain))
    # The same bytes gzip-compressed are fine: the message above is about the mismatch.
    assert load_volume(_write(tmp_path / "ok.nii.gz", gzip.compress(plain)))[0].shape == (33, 41, 25)


def test_rejects_cifti(nibabel_data):
    with pytest.raises(VolumeError, match=r"row_major\.dconn\.nii: is a Cifti2Image file"):
        load_volume(nibabel_data / "row_major.dconn.nii")


@pytest.mark.parametrize("name", ["example4d.nii.gz", "example_nifti2.nii.gz"])
def test_rejects_4d_series_and_says_how_to_extract(nibabel_data, name):
    with pytest.raises(VolumeError, match=rf"{name}: the image is 4D .* a series of 2 volumes.*fslroi"):
        load_volume(nibabel_data / name)


def test_rejects_2d(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "anatomical.nii")
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 0], img.affine), tmp_path / "flat.nii.gz")
    with pytest.raises(VolumeError, match=r"flat\.nii\.gz: the image is 2D .*needs a 3D volume"):
        load_volume(tmp_path / "flat.nii.gz")


@pytest.fixture
def nan_file(nibabel_data, tmp_path) -> Path:
    img = nib.load(nibabel_data / "reoriented_anat_moved.nii")
    data = np.asarray(img.dataobj).astype(np.float32)
    data[0, 0, :3] = np.nan
    data[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(data, img.affine, img.header), tmp_path / "holes.nii.gz")
    return tmp_path / "holes.nii.gz"


def test_nan_voxels_raise_with_count_and_file(nan_file):
    expected = r"holes\.nii\.gz: 4 of 12012 voxels are NaN or infinite.*nan_policy='zero'"
    with pytest.raises(VolumeError, match=expected):
        load_volume(nan_file)


def test_nan_policy_zero_fills_and_logs(nan_file, caplog):
    with caplog.at_level(logging.WARNING, logger="napari_action.io.nifti"):
        data, _ = load_volume(nan_file, nan_policy="zero")
    assert np.isfinite(data).all() and data[0, 0, 0] == 0
    assert "4 of 12012 voxels are NaN or infinite; replaced them by 0" in caplog.text


def test_nan_policy_warn_also_warns(nan_file):
    with pytest.warns(NonFiniteVoxelsWarning, match="holes.nii.gz: 4 of 12012"):
        load_volume(nan_file, nan_policy="warn")
    with pytest.raises(ValueError, match="nan_policy must be"):
        load_volume(nan_file, nan_policy="ignore")


def test_load_labels_accepts_whole_floats_and_rejects_intensities(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "reoriented_anat_moved.nii")
    whole = (np.asarray(img.dataobj) > 0).astype(np.float32) * 300
    nib.save(nib.Nifti1Image(whole, img.affine), tmp_path / "whole.nii.gz")
    labels, _ = load_labels(tmp_path / "whole.nii.gz")
    assert labels.dtype == np.int16 and set(np.unique(labels)) <= {0, 300}
    with pytest.raises(VolumeError, match=r"reoriented_anat_moved\.nii: labels must be whole numbers"):
        load_labels(nibabel_data / "reoriented_anat_moved.nii")


# -- label heuristic --------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "expected"), [("ch2.nii.gz", False), ("aal.nii.gz", True), ("brodmann.nii.gz", True)])
def test_label_heuristic_on_colin27(colin27_dir, name, expected):
    data, meta = load_volume(colin27_dir / name)
    assert is_label_file(colin27_dir / name, data, meta) is expected


@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("sub-ct_seg-vert_label-22_msk.nii.gz", True),
        ("sub-01_desc-aseg_dseg.nii.gz", True),
        ("sub-01_space-MNI_desc-brain_mask.nii.gz", True),
        ("AAL3v1.nii", True),
        ("brainmask.nii", True),
        ("painted labels.nii.gz", True),
        ("liver_segmentation.nii.gz", True),
        ("sub-ct_label-22_ct.nii.gz", False),
        ("sub-mri_label-6_T2w.nii.gz", False),
        ("masked_t1.nii.gz", False),
        ("colin27_t1.nii.gz", False),
    ],
)
def test_a_name_calls_a_file_labels_by_its_words_and_a_bids_name_by_its_suffix(name, labels):
    assert named_as_labels(name) is labels


def test_whole_number_floats_count_as_labels_as_integers_do(nibabel_data):
    # FSL and ANTs write masks and warped atlases as float32: they opened as images, not as labels.
    data, meta = load_volume(nibabel_data / "anatomical.nii")
    mask = (data > np.median(data)).astype(np.float32)
    assert is_label_file("brain_mask.nii.gz", mask, meta)
    assert is_label_file("warped.nii.gz", mask * 7, meta)  # two values, no name: as for integers
    assert not is_label_file("brain_mask.nii.gz", mask * 0.9999, meta)  # not whole numbers: not labels
    assert not is_label_file("warped.nii.gz", data.astype(np.float32) / 3, meta)


def test_label_heuristic_on_names_and_values(nibabel_data):
    data, meta = load_volume(nibabel_data / "anatomical.nii")
    assert not is_label_file("anatomical.nii", data, meta)
    assert is_label_file("sub-01_dseg.nii.gz", data, meta)
    # Names that speak of labels without being label maps: a BIDS entity (TPTBox's CT of vertebra 22) and
    # an image with a mask applied. Both opened as Labels layers.
    assert not is_label_file("sub-ct_label-22_ct.nii.gz", data, meta)
    assert not is_label_file("sub-01_desc-masked_T1w.nii.gz", data, meta)
    assert not is_label_file("sub-01_dseg.nii.gz", data.astype(np.float32), meta)
    codes = np.where(data > 500, 2001, 0).astype(np.int16)
    codes[data > 2000] = 5003
    assert is_label_file("parcels.nii.gz", codes)
    assert is_label_file("standard.nii.gz", *load_volume(nibabel_data / "standard.nii.gz"))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_telling_labels_from_a_scan_does_not_copy_the_scan(dtype):
    # nibabel loads voxels in Fortran order; counting their values must not make a C-ordered copy of a CT.
    scan = np.asfortranarray(np.random.default_rng(0).normal(0, 300, (256, 256, 128)).astype(dtype))
    tracemalloc.start()
    try:
        assert not is_label_file("ct.nii.gz", scan)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < scan.nbytes / 2
