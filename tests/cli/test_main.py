"""The ``napari-action`` command on real NIfTI files and tiny budgets: train, predict, evaluate in a row."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import TINY_CLI_STEPS


def test_train_predict_evaluate(nifti_files, capsys):
    model = nifti_files["dir"] / "model.pt"
    assert (
        main(
            [
                "train",
                "--image",
                str(nifti_files["image"]),
                "--image",
                str(nifti_files["other"]),
                "--labels",
                str(nifti_files["labels"]),
                "--method",
                "supervised",
                "--device",
                "cpu",
                *TINY_CLI_STEPS,
                "--out",
                str(model),
            ]
        )
        == 0
    )
    assert model.is_file()
    out_dir = nifti_files["dir"] / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--image",
                str(nifti_files["other"]),
                "--largest-components",
                "1",
                "--out-dir",
                str(out_dir),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
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
