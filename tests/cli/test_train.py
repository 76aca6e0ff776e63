"""``napari-action train``: what a user who gives bad labels reads."""

from __future__ import annotations

import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import cli_train_args, disc_volume, write_nifti


def test_train_error_is_one_clear_line(nifti_files, capsys):
    bad = write_nifti(nifti_files["dir"] / "flat.nii.gz", np.zeros((32, 32, 10), np.uint8))
    code = main(
        [
            "train",
            "--image",
            str(nifti_files["image"]),
            "--labels",
            str(bad),
            "--device",
            "cpu",
            "--out",
            str(nifti_files["dir"] / "m.pt"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Paint" in err


def test_train_announces_every_stage_and_runs_exactly_that(nifti_files, capsys):
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"] / "m.pt", method="action")
    assert main([*args, "--warmup", "1"]) == 0
    err = capsys.readouterr().err
    assert "5 steps (stage i: global distillation 1, stage ii: local distillation 1, stage iii: ACTION 3)" in err
    assert "5/5" in err


def test_labels_of_another_shape_name_both_files(nifti_files, capsys):
    image, _ = disc_volume(0)
    small = write_nifti(nifti_files["dir"] / "small.nii.gz", np.zeros((16, 16, 10), np.uint8))
    args = cli_train_args([nifti_files["other"], nifti_files["image"]], small, nifti_files["dir"] / "m.pt")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "small.nii.gz has shape (16, 16, 10)" in err
    assert f"other.nii.gz (--image number 1) has shape {image.shape}" in err
