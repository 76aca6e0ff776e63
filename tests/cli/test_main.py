"""The ``napari-action`` command on real NIfTI files and tiny budgets: train, predict, evaluate in a row."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import cli_predict_args, cli_train_args


def test_train_predict_evaluate(nifti_files, capsys):
    model = nifti_files["dir"] / "model.pt"
    images = [nifti_files["image"], nifti_files["other"]]
    assert main(cli_train_args(images, nifti_files["labels"], model)) == 0
    assert model.is_file()
    out_dir = nifti_files["dir"] / "pred"
    assert main([*cli_predict_args(model, nifti_files["other"], out_dir), "--largest-components", "1"]) == 0
    written = out_dir / "other_action.nii.gz"
    source, result = nib.load(str(nifti_files["other"])), nib.load(str(written))
    np.testing.assert_allclose(result.affine, source.affine)
    assert result.shape == source.shape
    assert set(np.unique(np.asarray(result.dataobj))) <= {0, 1, 2}

    report = nifti_files["dir"] / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(written),
                "--truth",
                str(nifti_files["truth"]),
                "--exclude-slices",
                "2,7",
                "--axis",
                "2",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    scores = json.loads(report.read_text())
    assert "mean_dice" in scores
    assert "dice" in capsys.readouterr().out.lower()
