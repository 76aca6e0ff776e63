"""The ``napari-action`` command on real NIfTI files and tiny budgets."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_action.cli.main import main
from tests.helpers.engine import disc_volume, sparse

TINY = ["--steps", "3"]


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _write(path, data, zooms=(0.8, 0.8, 3.0)):
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.5)
    image = nib.Nifti1Image(data, affine)
    image.header.set_zooms(zooms)
    nib.save(image, str(path))
    return path


@pytest.fixture
def files(tmp_path):
    image, truth = disc_volume(0)
    other, _ = disc_volume(1)
    return {
        "image": _write(tmp_path / "scan.nii.gz", image),
        "other": _write(tmp_path / "other.nii.gz", other),
        "labels": _write(tmp_path / "painted.nii.gz", sparse(truth)),
        "truth": _write(tmp_path / "truth.nii.gz", truth),
        "dir": tmp_path,
    }


def test_train_predict_evaluate(files, capsys):
    model = files["dir"] / "model.pt"
    assert (
        main(
            [
                "train",
                "--image",
                str(files["image"]),
                "--image",
                str(files["other"]),
                "--labels",
                str(files["labels"]),
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
    out_dir = files["dir"] / "pred"
    assert (
        main(
            [
                "predict",
                "--model",
                str(model),
                "--image",
                str(files["other"]),
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
    source, result = nib.load(str(files["other"])), nib.load(str(written))
    np.testing.assert_allclose(result.affine, source.affine)
    assert result.shape == source.shape
    assert set(np.unique(np.asarray(result.dataobj))) <= {0, 1, 2}

    report = files["dir"] / "scores.json"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(written),
                "--truth",
                str(files["truth"]),
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


def test_predict_refuses_to_overwrite(files, capsys):
    model = files["dir"] / "model.pt"
    main(
        [
            "train",
            "--image",
            str(files["image"]),
            "--labels",
            str(files["labels"]),
            "--method",
            "supervised",
            "--device",
            "cpu",
            *TINY,
            "--out",
            str(model),
        ]
    )
    out_dir = files["dir"] / "pred"
    args = [
        "predict",
        "--model",
        str(model),
        "--image",
        str(files["image"]),
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


def test_train_error_is_one_clear_line(files, capsys):
    bad = _write(files["dir"] / "flat.nii.gz", np.zeros((32, 32, 10), np.uint8))
    code = main(
        [
            "train",
            "--image",
            str(files["image"]),
            "--labels",
            str(bad),
            "--device",
            "cpu",
            "--out",
            str(files["dir"] / "m.pt"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Paint" in err


def test_not_a_checkpoint(files, capsys):
    code = main(
        ["predict", "--model", str(files["image"]), "--image", str(files["image"]), "--out-dir", str(files["dir"])]
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
