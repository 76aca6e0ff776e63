"""The ``napari-action`` command on real NIfTI files and tiny budgets: train, predict, evaluate in a row."""

from __future__ import annotations

import io
import json
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_action.cli.main import main
from tests.helpers.engine import cli_predict_args, cli_train_args, disc_volume, write_nifti


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


def test_evaluate_refuses_a_prediction_on_another_voxel_grid(nifti_files, capsys):
    truth = nib.load(str(nifti_files["truth"]))
    moved = truth.affine.copy()
    moved[:3, 3] += (0.0, 0.0, 3.0)  # one slice further up: same shape, every voxel elsewhere
    elsewhere = nifti_files["dir"] / "elsewhere.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(truth.dataobj), moved), str(elsewhere))

    assert main(["evaluate", "--pred", str(elsewhere), "--truth", str(nifti_files["truth"])]) == 2
    err = capsys.readouterr().err
    assert f"{elsewhere} lies on another voxel grid than {nifti_files['truth']}" in err
    assert "origin (-10, 5, 5.5) mm" in err and "Resample the prediction" in err


def test_evaluate_gives_distances_in_mm_for_files_in_micrometres(tmp_path, capsys):
    # A file whose header says micrometres was scored with its voxel sizes read as mm: an HD95 of 800 "mm".
    truth = np.zeros((12, 12, 6), np.uint8)
    truth[3:8, 3:8, 1:5] = 1
    shifted = np.roll(truth, 1, axis=0)  # one voxel of 800 um along axis 0
    paths = []
    for name, labels in (("truth", truth), ("pred", shifted)):
        image = nib.Nifti1Image(labels, np.diag([800.0, 800.0, 3000.0, 1.0]))
        image.header.set_xyzt_units(xyz="micron")
        nib.save(image, tmp_path / f"{name}.nii.gz")
        paths.append(str(tmp_path / f"{name}.nii.gz"))
    report = tmp_path / "scores.json"
    assert main(["evaluate", "--truth", paths[0], "--pred", paths[1], "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert scores["spacing_mm"] == pytest.approx([0.8, 0.8, 3.0])
    assert scores["mean_hd95_mm"] == pytest.approx(0.8)


def test_evaluate_refuses_a_prediction_of_another_shape(nifti_files, capsys):
    small = nifti_files["dir"] / "small.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(small))
    assert main(["evaluate", "--pred", str(small), "--truth", str(nifti_files["truth"])]) == 2
    assert f"{small} has shape (4, 4, 4) but" in capsys.readouterr().err


@pytest.mark.parametrize("role", ["--truth", "--pred"])
def test_evaluate_refuses_a_ct_scan_given_as_a_label_map(nifti_files, capsys, role):
    # A CT scan as --truth (its mask as --pred) was scored as thousands of classes, one per Hounsfield value.
    image, _ = disc_volume(0)
    ct = write_nifti(nifti_files["dir"] / "ct.nii.gz", np.round(image * 4 - 1000).astype(np.int16))
    files = {"--pred": str(nifti_files["truth"]), "--truth": str(nifti_files["truth"]), role: str(ct)}
    assert main(["evaluate", *(word for pair in files.items() for word in pair)]) == 2
    captured = capsys.readouterr()
    assert f"{ct} holds negative values (min -" in captured.err
    assert f"{role} takes a label map" in captured.err and "a scan" in captured.err
    assert "Dice" not in captured.out


def test_a_path_the_console_cannot_show_is_printed_escaped(tmp_path, monkeypatch):
    # Output redirected to a file on Windows is cp1252: printing this path raised UnicodeEncodeError.
    console = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    monkeypatch.setattr(sys, "stderr", console)
    missing = tmp_path / "\u8111" / "scan.nii.gz"
    assert main(["evaluate", "--pred", str(missing), "--truth", str(missing)]) == 2
    console.flush()
    printed = console.buffer.getvalue().decode("cp1252")
    assert printed.startswith("napari-action evaluate: error: ") and "\\u8111" in printed


@pytest.mark.parametrize("role", ["--truth", "--pred"])
def test_evaluate_refuses_to_write_its_scores_over_an_input(nifti_files, capsys, role):
    # `--json truth.nii.gz` (a slip of the shell's completion) replaced the expert mask with the scores.
    files = {"--pred": nifti_files["dir"] / "pred.nii.gz", "--truth": nifti_files["dir"] / "truth-copy.nii.gz"}
    for path in files.values():
        path.write_bytes(nifti_files["truth"].read_bytes())
    before = files[role].read_bytes()
    words = [word for option, path in files.items() for word in (option, str(path))]
    assert main(["evaluate", *words, "--json", str(files[role])]) == 2
    captured = capsys.readouterr()
    assert f"--json {files[role]} is the {role} file" in captured.err and "Choose another --json" in captured.err
    assert "Dice" not in captured.out  # refused before scoring
    assert files[role].read_bytes() == before


def test_evaluate_reads_zarr_label_maps_as_it_reads_their_nifti_files(nifti_files, capsys):
    # --pred of predict --output-format zarr was sent to the NIfTI reader: "a folder holding no NIfTI or DICOM file".
    from napari_action.io.label_writers import write_label_volume
    from napari_action.io.nifti import load_labels

    truth, meta = load_labels(nifti_files["truth"])
    pred = write_label_volume(nifti_files["dir"] / "pred.zarr", np.roll(truth, 1, axis=0), meta, axis=2)
    as_nifti = write_nifti(nifti_files["dir"] / "pred.nii.gz", np.roll(truth, 1, axis=0))
    scores = {}
    for given in (pred, as_nifti):
        report = nifti_files["dir"] / f"{given.name}.json"
        assert (
            main(["evaluate", "--pred", str(given), "--truth", str(nifti_files["truth"]), "--json", str(report)]) == 0
        )
        scores[given] = json.loads(report.read_text())
    assert scores[pred] == scores[as_nifti] and 0 < scores[pred]["mean_dice"] < 1
