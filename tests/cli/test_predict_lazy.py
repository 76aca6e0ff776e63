"""``napari-action predict`` on volumes read slice by slice (``.nii``, zarr) into ``.nii`` and zarr outputs;
``napari-action convert``."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from napari_action.io.nifti import load_labels, load_volume
from napari_action.io.volume_source import open_volume_source
from tests.helpers.engine import cli_predict_args, disc_volume, write_nifti


def test_every_input_and_output_format_gives_the_same_labels(model_file, tmp_path, capsys):
    image, _ = disc_volume(5)
    (tmp_path / "in").mkdir()
    compressed = write_nifti(tmp_path / "in" / "gz.nii.gz", image)
    write_nifti(tmp_path / "in" / "plain.nii", image)
    store = tmp_path / "in" / "store.zarr"
    assert main(["convert", "--image", str(compressed), "--out", str(store), "--axis", "2"]) == 0
    assert f"{compressed} -> {store}" in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(cli_predict_args(model_file, compressed, out)) == 0  # the reference: .nii.gz in and out
    reference, meta = load_labels(out / "gz_action.nii.gz")
    for fmt, suffix in (("nii", ".nii"), ("zarr", ".zarr")):
        assert main([*cli_predict_args(model_file, tmp_path / "in" / "*", out / fmt), "--output-format", fmt]) == 0
        for name in ("gz", "plain", "store"):
            written = open_volume_source(out / fmt / f"{name}_action{suffix}")
            np.testing.assert_array_equal(written.read(0, 0, written.shape[0]), reference)
            assert written.meta.shape == meta.shape
            np.testing.assert_array_equal(written.meta.affine, meta.affine)
    assert nib.load(out / "nii" / "plain_action.nii").header["intent_code"] == 1002  # a label map


def test_nan_voxels_of_a_lazy_volume_fail_that_file_with_the_flag_as_advice(model_file, tmp_path, capsys):
    image, _ = disc_volume(5)
    image[2, 3, 8] = np.inf
    holes = write_nifti(tmp_path / "holes.nii", image)
    assert main([*cli_predict_args(model_file, holes, tmp_path / "out"), "--output-format", "nii"]) == 1
    err = capsys.readouterr().err
    assert "holes.nii: 1 voxels of slices 0-9 along axis 2 are NaN or infinite" in err and "--nan-to-zero" in err
    # The partial output was removed; the quality table names the failed file.
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["quality.csv"]
    args = [*cli_predict_args(model_file, holes, tmp_path / "out"), "--output-format", "nii"]
    assert main([*args, "--nan-to-zero"]) == 0
    assert (tmp_path / "out" / "holes_action.nii").is_file()


def test_convert_keeps_voxels_and_refuses_to_replace_a_store(tmp_path, capsys):
    image = disc_volume(5)[0].astype(np.int16)
    path = write_nifti(tmp_path / "scan.nii.gz", image)
    store = tmp_path / "scan.zarr"
    args = ["convert", "--image", str(path), "--out", str(store), "--axis", "0", "--chunk-slices", "8"]
    assert main(args) == 0
    source = open_volume_source(store)
    assert source.array.chunks == (8, 32, 10) and source.array.dtype == np.int16
    np.testing.assert_array_equal(source.read(0, 0, 32), load_volume(path)[0])
    capsys.readouterr()
    assert main(args) == 2 and "--overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
