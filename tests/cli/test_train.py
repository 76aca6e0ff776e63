"""``napari-action train``: what a user who gives bad labels reads."""

from __future__ import annotations

import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import write_nifti


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
