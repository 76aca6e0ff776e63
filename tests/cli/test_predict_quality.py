"""``napari-action predict`` rates what it writes: ``quality.csv`` beside the masks, the worst files printed."""

from __future__ import annotations

import csv
import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from napari_action.cli.main import main
from napari_action.cli.predict import SOME_FILES_FAILED
from napari_action.io.checkpoint import load_checkpoint, save_checkpoint
from tests.helpers.engine import DISC_CLASS_NAMES, disc_volume, write_nifti

# write_nifti's voxels: 0.8 x 0.8 x 3 mm.
VOXEL_ML = 0.8 * 0.8 * 3.0 / 1000.0


@pytest.fixture
def scans(tmp_path):
    """Two disc scans, a corrupt file and a blank scan (nothing for the model to find), sorted a, b, c, d."""
    folder = tmp_path / "scans"
    folder.mkdir()
    write_nifti(folder / "a_disc.nii.gz", disc_volume(1)[0])
    (folder / "b_corrupt.nii.gz").write_bytes(b"\x1f\x8b this is no gzip stream, nor NIfTI")
    blank = np.random.default_rng(0).normal(100.0, 1.0, (32, 32, 10)).astype(np.float32)
    write_nifti(folder / "c_blank.nii.gz", blank)
    write_nifti(folder / "d_disc.nii.gz", disc_volume(3)[0])
    return folder


def predict(model, out_dir, *images, extra=()):
    image_args = [arg for image in images for arg in ("--image", str(image))]
    return main(["predict", "--model", str(model), *image_args, "--out-dir", str(out_dir), "--device", "cpu", *extra])


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as table:
        return list(csv.DictReader(table))


def assert_rows_match_masks(rows, out_dir):
    """Each predicted row's volumes are its written mask's, and a class the mask lacks is flagged missing."""
    for row in rows:
        mask = np.asarray(nib.load(out_dir / row["file"].split("/")[-1].replace(".nii.gz", "_action.nii.gz")).dataobj)
        for value, name in DISC_CLASS_NAMES.items():
            assert float(row[f"{name} mL"]) == pytest.approx((mask == value).sum() * VOXEL_ML, abs=1e-4)
            assert ((mask == value).sum() == 0) == (f"{name} missing" in row["flags"])
        assert 0 <= int(row["worst_slice"]) < 10 and row["slicing_axis"] == "2"


def test_the_table_lists_the_failed_file_first_then_the_masks_worst_first(scans, model_file, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert predict(model_file, out_dir, scans / "*.nii.gz") == SOME_FILES_FAILED
    out = capsys.readouterr().out
    rows = read_rows(out_dir / "quality.csv")
    assert list(rows[0]) == [
        "file",
        "status",
        "quality_score",
        "flags",
        "worst_slice",
        "slicing_axis",
        "disc mL",
        "ring mL",
    ]
    assert (rows[0]["file"], rows[0]["status"]) == (str(scans / "b_corrupt.nii.gz"), "failed")
    assert "cannot be read as NIfTI" in rows[0]["flags"]
    predicted = rows[1:]
    names = ("a_disc", "c_blank", "d_disc")
    assert sorted(row["file"] for row in predicted) == [str(scans / f"{name}.nii.gz") for name in names]
    scores = [float(row["quality_score"]) for row in predicted]
    assert scores == sorted(scores) and all(0.0 <= s <= 1.0 for s in scores)
    assert_rows_match_masks(predicted, out_dir)
    # The worst few on screen, in the table's order, after the summary.
    shown = out[out.index("Check first") :].splitlines()
    assert shown[0] == f"Check first (lowest quality of 3; every file in {out_dir / 'quality.csv'}):"
    for line, row in zip(shown[1:], predicted, strict=True):
        assert line.startswith(f"  {float(row['quality_score']):.3f}  {row['file']}: ")
        assert line.endswith(f"worst slice {row['worst_slice']} along axis 2")


def test_largest_components_count_the_mask_written_and_kept_masks_are_rated_again(scans, model_file, tmp_path, capsys):
    out_dir = tmp_path / "out"
    images = (scans / "a_disc.nii.gz", scans / "c_blank.nii.gz")
    assert predict(model_file, out_dir, *images, extra=("--largest-components", "1")) == 0
    first = {row["file"]: row for row in read_rows(out_dir / "quality.csv")}
    assert_rows_match_masks(first.values(), out_dir)
    capsys.readouterr()
    # A continued run predicts only the new file and rates the kept masks with it, from their records.
    assert predict(model_file, out_dir, *images, scans / "d_disc.nii.gz", extra=("--skip-existing",)) == 0
    rows = read_rows(out_dir / "quality.csv")
    status = {row["file"]: row["status"] for row in rows}
    assert status == {str(scans / "d_disc.nii.gz"): "predicted"} | {str(image): "kept" for image in images}
    scores = [float(row["quality_score"]) for row in rows]
    assert scores == sorted(scores)
    assert_rows_match_masks(rows, out_dir)
    for image in images:  # the same mask and the same doubt: only the cohort it is compared with grew
        again = next(row for row in rows if row["file"] == str(image))
        assert again["worst_slice"] == first[str(image)]["worst_slice"]
    assert "Check first (lowest quality of 3;" in capsys.readouterr().out


def test_a_kept_mask_changed_since_its_prediction_is_listed_unrated(scans, model_file, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert predict(model_file, out_dir, scans / "a_disc.nii.gz", scans / "d_disc.nii.gz") == 0
    corrected = out_dir / "a_disc_action.nii.gz"
    mask = nib.load(corrected)
    edited = np.asarray(mask.dataobj).copy()
    edited[0] = 0  # a correction made after prediction: the record's volumes and doubt no longer describe it
    nib.save(nib.Nifti1Image(edited, mask.affine, mask.header), corrected)
    (out_dir / ".napari-action-quality" / "d_disc_action.nii.gz.json").write_text("{ damaged")
    images = (scans / "a_disc.nii.gz", scans / "d_disc.nii.gz", scans / "c_blank.nii.gz")
    assert predict(model_file, out_dir, *images, extra=("--skip-existing",)) == 0
    rows = read_rows(out_dir / "quality.csv")
    assert [(row["file"], row["status"]) for row in rows] == [
        (str(scans / "c_blank.nii.gz"), "predicted"),
        (str(scans / "a_disc.nii.gz"), "skipped"),
        (str(scans / "d_disc.nii.gz"), "skipped"),
    ]
    assert "no record of its prediction" in rows[1]["flags"] and rows[1]["quality_score"] == ""
    assert np.array_equal(np.asarray(nib.load(corrected).dataobj), edited)  # the correction is left alone


def test_runs_predicting_into_one_folder_leave_one_table_of_every_mask(scans, model_file, tmp_path, capsys):
    # The tasks of a job array, each predicting its scan into one --out-dir: each rewrote quality.csv with its
    # own file, so the last left one row, and the first had printed "every file in .../quality.csv".
    out_dir = tmp_path / "out"
    assert predict(model_file, out_dir, scans / "a_disc.nii.gz") == 0
    assert predict(model_file, out_dir, scans / "c_blank.nii.gz") == 0
    record = out_dir / ".napari-action-quality" / "c_blank_action.nii.gz.json"
    kept = json.loads(record.read_text())
    kept["record"]["class_values"] = [0, 1, 2, 3]  # as a model of other classes would have left it
    record.write_text(json.dumps(kept))
    capsys.readouterr()
    assert predict(model_file, out_dir, scans / "d_disc.nii.gz") == 0
    rows = read_rows(out_dir / "quality.csv")
    status = {row["file"]: row["status"] for row in rows}
    assert status == {str(scans / "d_disc.nii.gz"): "predicted", str(scans / "a_disc.nii.gz"): "kept"}
    assert_rows_match_masks(rows, out_dir)
    assert "Check first (lowest quality of 2;" in capsys.readouterr().out


def test_masks_another_model_predicted_into_the_folder_are_not_rated_with_this_models(
    scans, model_file, tmp_path, capsys
):
    # A retrained model predicting a new scan into a folder of older masks rated them all against one median,
    # and --skip-existing kept the old masks' scores as if this model had predicted them.
    out_dir = tmp_path / "out"
    assert predict(model_file, out_dir, scans / "a_disc.nii.gz", scans / "c_blank.nii.gz") == 0
    checkpoint = load_checkpoint(model_file)
    name = next(iter(checkpoint.teacher))
    teacher = {**checkpoint.teacher, name: checkpoint.teacher[name] + 0.01}  # trained on a little: another model
    retrained = save_checkpoint(tmp_path / "retrained.pt", dataclasses.replace(checkpoint, teacher=teacher))
    capsys.readouterr()
    assert predict(retrained, out_dir, scans / "d_disc.nii.gz") == 0
    rows = read_rows(out_dir / "quality.csv")
    assert [(row["file"], row["status"]) for row in rows] == [(str(scans / "d_disc.nii.gz"), "predicted")]
    out = capsys.readouterr().out
    assert "Not in quality.csv: 2 other masks in" in out and "predicted by another model" in out
    assert predict(retrained, out_dir, scans / "a_disc.nii.gz", extra=("--skip-existing",)) == 0
    status = {row["file"]: row["status"] for row in read_rows(out_dir / "quality.csv")}
    assert status == {str(scans / "a_disc.nii.gz"): "skipped", str(scans / "d_disc.nii.gz"): "kept"}
    # The model that predicted them, under another file name, rates them together again.
    same = save_checkpoint(tmp_path / "same.pt", checkpoint)
    assert predict(same, out_dir, scans / "c_blank.nii.gz", extra=("--overwrite",)) == 0
    status = {row["file"]: row["status"] for row in read_rows(out_dir / "quality.csv")}
    assert status == {str(scans / "c_blank.nii.gz"): "predicted", str(scans / "a_disc.nii.gz"): "kept"}


def test_a_quality_csv_of_the_users_own_is_not_replaced_without_overwrite(scans, model_file, tmp_path, capsys):
    # A results folder holding the user's own quality.csv (a QC sheet) lost it to the table of the masks.
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    own = out_dir / "quality.csv"
    own.write_text("subject,rater,passed\ns01,AB,yes\n", encoding="utf-8")
    assert predict(model_file, out_dir, scans / "a_disc.nii.gz") == 2
    err = capsys.readouterr().err
    assert f"{own} is not a quality table of napari-action" in err and "pass --overwrite to replace it" in err
    assert own.read_text(encoding="utf-8") == "subject,rater,passed\ns01,AB,yes\n"
    assert sorted(path.name for path in out_dir.iterdir()) == ["quality.csv"]  # refused before any mask

    assert predict(model_file, out_dir, scans / "a_disc.nii.gz", extra=("--overwrite",)) == 0
    assert [row["file"] for row in read_rows(own)] == [str(scans / "a_disc.nii.gz")]
    # Its own table is no obstacle: the next run rates its masks with the first run's.
    assert predict(model_file, out_dir, scans / "d_disc.nii.gz") == 0
    assert len(read_rows(own)) == 2
