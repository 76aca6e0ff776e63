"""``napari-action reorient``: scans written in one voxel order, every voxel keeping its value and its place."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from napari_action.io.nifti import load_volume


def _lps_file(path, data, *, scaled: bool = False):
    """``data`` stored LPS (x and y reversed), qform (scanner) and sform (aligned) 2 mm apart, as FSL leaves them."""
    affine = np.diag([-0.8, -0.8, 3.0, 1.0])
    affine[:3, 3] = (20.0, 30.0, -10.0)
    image = nib.Nifti1Image(data, None)  # an affine here would replace the qform on saving
    aligned = affine.copy()
    aligned[2, 3] += 2.0
    image.header.set_qform(affine, code=1)
    image.header.set_sform(aligned, code=2)
    image.header.set_xyzt_units("mm", "sec")
    if scaled:
        image.header.set_slope_inter(0.5, -3.0)
    nib.save(image, path)
    return path


def _world(affine, index):
    return (affine @ [*index, 1.0])[:3]


def test_a_scan_stored_lps_is_written_ras_with_every_voxel_in_its_place(tmp_path, capsys):
    data = np.random.default_rng(0).integers(0, 1000, (6, 5, 4)).astype(np.int16)
    lps = _lps_file(tmp_path / "template.nii.gz", data)
    ras = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.diag([1.0, 1.0, 1.0, 1.0])), ras)
    out = tmp_path / "out"
    assert main(["reorient", "--image", str(lps), "--like", str(ras), "--out-dir", str(out)]) == 0
    assert f"{lps} (LPS -> RAS) -> {out / 'template.nii.gz'}" in capsys.readouterr().out

    before, after = nib.load(lps), nib.load(out / "template.nii.gz")
    assert nib.aff2axcodes(after.affine) == ("R", "A", "S") and after.get_data_dtype() == np.int16
    stored, written = np.asarray(before.dataobj), np.asarray(after.dataobj)
    np.testing.assert_array_equal(written, stored[::-1, ::-1, :])  # exact: no resampling
    for index in [(0, 0, 0), (5, 1, 3), (2, 4, 1)]:  # each voxel in the same place in the world, by both matrices
        moved = (5 - index[0], 4 - index[1], index[2])
        for get in ("get_qform", "get_sform"):
            np.testing.assert_allclose(
                _world(getattr(after.header, get)(), moved), _world(getattr(before.header, get)(), index)
            )
    assert (int(after.header["qform_code"]), int(after.header["sform_code"])) == (1, 2)
    assert after.header.get_xyzt_units() == ("mm", "sec")


def test_a_scaled_scan_keeps_the_values_it_reads_as(tmp_path):
    data = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    lps = _lps_file(tmp_path / "scaled.nii", data, scaled=True)
    out = tmp_path / "out"
    assert main(["reorient", "--image", str(lps), "--out-dir", str(out)]) == 0  # default: RAS
    values, _ = load_volume(lps)
    reoriented, meta = load_volume(out / "scaled.nii")
    np.testing.assert_array_equal(reoriented, values[::-1, ::-1, :])
    assert "".join(meta.orientation) == "RAS"


def test_a_scan_is_never_written_over_and_a_bad_order_or_4d_file_is_refused(tmp_path, capsys):
    lps = _lps_file(tmp_path / "scan.nii.gz", np.zeros((4, 4, 4), np.int16))
    original = lps.read_bytes()
    assert main(["reorient", "--image", str(lps), "--out-dir", str(tmp_path)]) == 2
    assert "would write" in capsys.readouterr().err and lps.read_bytes() == original
    series = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 3), np.int16), np.eye(4)), series)
    assert main(["reorient", "--image", str(series), "--out-dir", str(tmp_path / "out")]) == 2
    assert "reorient takes 3D volumes" in capsys.readouterr().err


def test_the_frequency_phase_and_slice_axes_move_with_the_voxels_and_the_slice_times_with_the_slices(tmp_path):
    # A sagittal acquisition stored PSL (dcm2niix writes dim_info and the slice timing of every scan):
    # array axis 0 runs posterior, 1 inferior, 2 left; the slices (axis 2) were taken 0, 1, 2, 3 in order.
    stored = np.array([[0.0, 0.0, -3.0, 9.0], [-0.8, 0.0, 0.0, 4.0], [0.0, -0.8, 0.0, 4.0], [0.0, 0.0, 0.0, 1.0]])
    image = nib.Nifti1Image(np.random.default_rng(0).random((6, 5, 4)).astype(np.float32), None)
    image.header.set_qform(stored, code=1)
    image.header.set_sform(stored, code=1)
    image.header.set_dim_info(freq=0, phase=1, slice=2)
    image.header.set_slice_duration(0.5)
    image.header["slice_code"], image.header["slice_end"] = 1, 3  # sequential, increasing
    source = tmp_path / "sagittal.nii.gz"
    nib.save(image, source)
    out = tmp_path / "out"
    assert main(["reorient", "--image", str(source), "--out-dir", str(out)]) == 0

    header = nib.load(out / "sagittal.nii.gz").header
    # RAS: the slices (left to right) are axis 0, reversed; posterior-anterior (frequency) axis 1, reversed;
    # inferior-superior (phase) axis 2, reversed.
    assert header.get_dim_info() == (1, 2, 0)
    np.testing.assert_allclose(header.get_slice_times(), [1.5, 1.0, 0.5, 0.0])
