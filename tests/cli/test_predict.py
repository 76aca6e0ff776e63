"""``napari-action predict``: existing outputs are kept, and a file that is no checkpoint is named as such."""

from __future__ import annotations

from napari_action.cli.main import main
from tests.helpers.engine import TINY_CLI_STEPS


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
            *TINY_CLI_STEPS,
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
