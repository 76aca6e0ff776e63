"""The ``napari-action`` command on real NIfTI files and tiny budgets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from napari_action.cli.main import main
from tests.helpers.engine import write_nifti

TINY = ["--steps", "3"]


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
                *TINY,
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


def test_predict_refuses_to_overwrite(nifti_files, capsys):
    model = nifti_files["dir"] / "model.pt"
    main(
        [
            "train",
            "--image",
            str(nifti_files["image"]),
            "--labels",
            str(nifti_files["labels"]),
            "--method",
            "supervised",
            "--device",
            "cpu",
            *TINY,
            "--out",
            str(model),
        ]
    )
    out_dir = nifti_files["dir"] / "pred"
    args = [
        "predict",
        "--model",
        str(model),
        "--image",
        str(nifti_files["image"]),
        "--out-dir",
        str(out_dir),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    before = (out_dir / "scan_action.nii.gz").read_bytes()
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert (out_dir / "scan_action.nii.gz").read_bytes() == before


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


def test_not_a_checkpoint(nifti_files, capsys):
    code = main(
        [
            "predict",
            "--model",
            str(nifti_files["image"]),
            "--image",
            str(nifti_files["image"]),
            "--out-dir",
            str(nifti_files["dir"]),
        ]
    )
    assert code == 2
    assert "checkpoint" in capsys.readouterr().err


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out), "--warmup", "2", "--steps", "3", "--device", "cpu"]) == 0
    for name in (
        "model.pt",
        "overlay.png",
        "results.json",
        "phantom-1_action.nii.gz",
        "phantom-1_painted.nii.gz",
        "phantom-2_action.nii.gz",
    ):
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"phantom-1", "phantom-2", "phantom-3"}
    assert "mean Dice" in capsys.readouterr().out
