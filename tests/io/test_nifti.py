"""NIfTI I/O on real files: exact geometry round-trips, every bad input, atomic writes."""

from __future__ import annotations

import gzip
import json
import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.io.nifti import (
    NIFTI_INTENT_LABEL,
    NonFiniteVoxelsWarning,
    VolumeError,
    VolumeMeta,
    is_label_file,
    load_labels,
    load_volume,
    save_labels,
    smallest_label_dtype,
)

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


def test_meta_survives_json_and_stays_read_only(nibabel_data, tmp_path):
    _, meta = load_volume(_first_volume(nibabel_data / "example4d.nii.gz", tmp_path / "v.nii.gz"))
    again = VolumeMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    np.testing.assert_array_equal(again.affine, meta.affine)
    with pytest.raises(ValueError):
        meta.affine[0, 0] = 2.0
    with pytest.raises(ValueError, match="unknown"):
        VolumeMeta.from_dict({**meta.to_dict(), "spacing": [1, 1, 1]})
    with pytest.raises(ValueError, match="missing"):
        VolumeMeta.from_dict({"affine": np.eye(4).tolist()})


def test_from_affine_meta_is_what_a_saved_file_reads_back(tmp_path):
    affine = np.array([[0, -1.5, 0, 90.3], [1.5, 0, 0.1, -12.7], [0, 0, 8.0, 33.1], [0, 0, 0, 1]])
    meta = VolumeMeta.from_affine(affine, (20, 30, 5), code=1)
    np.testing.assert_allclose(meta.affine, affine, atol=1e-5)
    out = save_labels(tmp_path / "a.nii.gz", np.ones((20, 30, 5), np.uint8), meta)
    assert load_labels(out)[1].affine.tolist() == meta.affine.tolist()


def test_squeezes_a_4d_file_holding_one_volume(nibabel_data, tmp_path):
    img = nib.load(nibabel_data / "example4d.nii.gz").slicer[..., :1]
    nib.save(img, tmp_path / "one.nii.gz")
    data, meta = load_volume(tmp_path / "one.nii.gz")
    assert data.shape == meta.shape == img.shape[:3]


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
    with pytest.raises(VolumeError, match=r"test\.mgz: not a NIfTI file .*\.nii or \.nii\.gz"):
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


# -- writing ----------------------------------------------------------------------------------


@pytest.fixture
def meta(nibabel_data) -> VolumeMeta:
    return load_volume(nibabel_data / "anatomical.nii")[1]


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [(0, 3, np.uint8), (0, 255, np.uint8), (0, 300, np.int16), (-5, 7, np.int16),
     (0, 40_000, np.uint16), (0, 70_000, np.int32), (-70_000, 0, np.int32), (0, 2**31, np.int64)],
)  # fmt: skip
def test_writes_smallest_integer_dtype(meta, tmp_path, low, high, dtype):
    labels = np.zeros(meta.shape, np.int64)
    labels[0, 0, 0], labels[-1, -1, -1] = low, high
    assert smallest_label_dtype(labels) == dtype
    out = save_labels(tmp_path / "l.nii.gz", labels, meta)
    assert nib.load(out).get_data_dtype() == dtype
    np.testing.assert_array_equal(load_labels(out)[0], labels)


def test_bool_labels_are_written_as_uint8(meta, tmp_path):
    out = save_labels(tmp_path / "mask.nii", np.ones(meta.shape, bool), meta)
    assert nib.load(out).get_data_dtype() == np.uint8


def test_refuses_to_overwrite_unless_asked(meta, tmp_path):
    target = tmp_path / "seg.nii.gz"
    save_labels(target, np.zeros(meta.shape, np.uint8), meta)
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match=r"seg\.nii\.gz already exists; .*overwrite=True"):
        save_labels(target, np.ones(meta.shape, np.uint8), meta)
    assert target.read_bytes() == before
    save_labels(target, np.ones(meta.shape, np.uint8), meta, overwrite=True)
    assert load_labels(target)[0].min() == 1


def test_bad_labels_raise_before_anything_is_written(meta, tmp_path):
    expected = r"x\.nii\.gz: labels have shape \(3, 3, 3\) .*has shape \(33, 41, 25\)"
    with pytest.raises(VolumeError, match=expected):
        save_labels(tmp_path / "x.nii.gz", np.zeros((3, 3, 3), np.uint8), meta)
    with pytest.raises(VolumeError, match="labels must be whole numbers"):
        save_labels(tmp_path / "x.nii.gz", np.full(meta.shape, 0.5), meta)
    with pytest.raises(VolumeError, match=r"x\.tif: label files must end in \.nii\.gz or \.nii"):
        save_labels(tmp_path / "x.tif", np.zeros(meta.shape, np.uint8), meta)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        save_labels(tmp_path / "no" / "x.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX-only")
def test_failed_write_leaves_existing_file_untouched(meta, tmp_path):
    import resource
    import signal

    target = save_labels(tmp_path / "seg.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    before = target.read_bytes()
    noisy = np.random.default_rng(0).integers(0, 250, meta.shape)  # incompressible: > 4 kB
    # A real write failure: the kernel refuses to grow any file beyond 4 kB (EFBIG).
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            save_labels(target, noisy, meta, overwrite=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]  # no temporary file left


def test_written_file_is_reproducible_with_normal_permissions(meta, tmp_path):
    labels = np.random.default_rng(1).integers(0, 4, meta.shape)
    first = save_labels(tmp_path / "a.nii.gz", labels, meta).read_bytes()
    assert save_labels(tmp_path / "b.nii.gz", labels, meta).read_bytes() == first
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.nii.gz").stat().st_mode & 0o777 == 0o666 & ~umask


# -- label heuristic --------------------------------------------------------------------------


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "expected"), [("ch2.nii.gz", False), ("aal.nii.gz", True), ("brodmann.nii.gz", True)])
def test_label_heuristic_on_colin27(colin27_dir, name, expected):
    data, meta = load_volume(colin27_dir / name)
    assert is_label_file(colin27_dir / name, data, meta) is expected


def test_label_heuristic_on_names_and_values(nibabel_data):
    data, meta = load_volume(nibabel_data / "anatomical.nii")
    assert not is_label_file("anatomical.nii", data, meta)
    assert is_label_file("sub-01_dseg.nii.gz", data, meta)
    assert not is_label_file("sub-01_dseg.nii.gz", data.astype(np.float32), meta)
    codes = np.where(data > 500, 2001, 0).astype(np.int16)
    codes[data > 2000] = 5003
    assert is_label_file("parcels.nii.gz", codes)
    assert is_label_file("standard.nii.gz", *load_volume(nibabel_data / "standard.nii.gz"))
