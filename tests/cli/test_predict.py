"""``napari-action predict``: existing outputs are kept, a file that is no checkpoint is named as such,
label values of any width come back, and NaN voxels are refused unless ``--nan-to-zero``."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import cli_predict_args, cli_train_args, disc_volume, sparse, write_nifti


def test_predict_refuses_to_overwrite(nifti_files, capsys):
    model = nifti_files["dir"] / "model.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], model)) == 0
    out_dir = nifti_files["dir"] / "pred"
    args = cli_predict_args(model, nifti_files["image"], out_dir)
    assert main(args) == 0
    before = (out_dir / "scan_action.nii.gz").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exist" in err and "--overwrite" in err and "overwrite=True" not in err
    assert (out_dir / "scan_action.nii.gz").read_bytes() == before


def test_not_a_checkpoint(nifti_files, capsys):
    code = main(cli_predict_args(nifti_files["image"], nifti_files["image"], nifti_files["dir"]))
    assert code == 2
    assert "checkpoint" in capsys.readouterr().err


def test_overwrite_replaces_the_existing_output(nifti_files):
    model = nifti_files["dir"] / "model.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], model)) == 0
    out_dir = nifti_files["dir"] / "pred"
    out_dir.mkdir()
    target = out_dir / "scan_action.nii.gz"
    target.write_bytes(b"an older result")
    assert main([*cli_predict_args(model, nifti_files["image"], out_dir), "--overwrite"]) == 0
    assert target.read_bytes() != b"an older result"


def test_predict_warns_about_voxels_unlike_the_training_volumes(nifti_files, capsys):
    model = nifti_files["dir"] / "model.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], model)) == 0
    image, _ = disc_volume(2)
    # Trained on 0.8 mm: slices of 1.6 mm are resized two-fold without a word, 2 mm ones (2.5-fold) get a warning.
    coarse = write_nifti(nifti_files["dir"] / "coarse.nii.gz", image, zooms=(1.6, 1.6, 3.0))
    coarser = write_nifti(nifti_files["dir"] / "coarser.nii.gz", image, zooms=(2.0, 2.0, 3.0))
    capsys.readouterr()
    assert main(cli_predict_args(model, coarse, nifti_files["dir"] / "pred")) == 0
    assert "Warning" not in capsys.readouterr().err
    assert main(cli_predict_args(model, coarser, nifti_files["dir"] / "pred")) == 0
    err = capsys.readouterr().err
    assert "Warning: " in err and "coarser.nii.gz" in err and "2.5-fold" in err
    assert main(cli_predict_args(model, nifti_files["other"], nifti_files["dir"] / "pred")) == 0
    assert "Warning" not in capsys.readouterr().err  # same voxels as training: nothing to say


def test_a_scan_stored_the_other_way_round_is_predicted_in_the_training_order_and_written_in_its_own(
    nifti_files, capsys
):
    # The same scan stored LPS beside RAS training scans: each slice was seen turned half round (a Colin27 crop on
    # 5 mm slices: mean Dice 0.72 as trained, 0.17 stored LPS; the MNI152 template beside Colin27: 0.13 against 0.64).
    model = nifti_files["dir"] / "model.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], model)) == 0
    scan = nib.load(nifti_files["image"])
    shape = scan.shape
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = (shape[0] - 1, shape[1] - 1)
    stored_lps = nifti_files["dir"] / "scan_lps.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(scan.dataobj)[::-1, ::-1].copy(), scan.affine @ flip), stored_lps)
    capsys.readouterr()
    assert main(cli_predict_args(model, nifti_files["image"], nifti_files["dir"] / "as-trained")) == 0
    assert main(cli_predict_args(model, stored_lps, nifti_files["dir"] / "pred")) == 0
    out, err = capsys.readouterr()
    assert "Note: scan_lps.nii.gz is stored LPS, the training volumes RAS: predicted in their voxel order" in err + out
    assert "turned or mirrored" not in err
    as_trained = nib.load(nifti_files["dir"] / "as-trained" / "scan_action.nii.gz")
    reoriented = nib.load(nifti_files["dir"] / "pred" / "scan_lps_action.nii.gz")
    # The network saw the very same slices: the labels are the same, voxel for voxel, in each file's own order
    # (read as stored, 11 % of the voxels differed).
    np.testing.assert_array_equal(np.asarray(reoriented.dataobj), np.asarray(as_trained.dataobj)[::-1, ::-1])
    np.testing.assert_allclose(reoriented.affine, nib.load(stored_lps).affine, atol=1e-5)


def test_label_values_beyond_16_bits_come_back_exactly(nifti_files):
    _, truth = disc_volume(0)
    wide = sparse(truth).astype(np.int32)
    wide[wide == 1], wide[wide == 2] = 300, 70_000  # beyond uint8 and beyond uint16
    labels = write_nifti(nifti_files["dir"] / "wide.nii.gz", wide)
    model = nifti_files["dir"] / "model.pt"
    assert main(cli_train_args([nifti_files["image"]], labels, model)) == 0
    assert main(cli_predict_args(model, nifti_files["image"], nifti_files["dir"] / "pred")) == 0
    written = nib.load(nifti_files["dir"] / "pred" / "scan_action.nii.gz")
    assert written.get_data_dtype() == np.int32
    predicted = np.asarray(written.dataobj)
    assert set(np.unique(predicted)) <= {0, 300, 70_000}
    assert (predicted == 70_000).any()  # the ring, found even by a 3-step model


def test_predict_nan_voxels_advise_the_flag_which_then_predicts(nifti_files, model_file, capsys):
    image, _ = disc_volume(2)
    image[3, 3, 3] = np.nan
    holes = write_nifti(nifti_files["dir"] / "holes.nii.gz", image)
    before = holes.read_bytes()
    out_dir = nifti_files["dir"] / "pred"
    assert main(cli_predict_args(model_file, holes, out_dir)) == 1  # the file failed (2: nothing was tried)
    err = capsys.readouterr().err
    assert "holes.nii.gz: 1 of 10240 voxels are NaN or infinite" in err and "pass --nan-to-zero" in err
    assert main([*cli_predict_args(model_file, holes, out_dir), "--nan-to-zero"]) == 0
    assert (out_dir / "holes_action.nii.gz").is_file() and holes.read_bytes() == before
