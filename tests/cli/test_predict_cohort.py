"""``napari-action predict`` over a cohort: patterns and list files, one bad file never stops the rest,
a summary of what was written and what failed, ``--skip-existing`` and the ranks of a shared run."""

from __future__ import annotations

import io
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_action.cli.file_progress import FileProgress
from napari_action.cli.kept_records import RECORDS_FOLDER
from napari_action.cli.main import main
from napari_action.cli.predict import SOME_FILES_FAILED
from napari_action.inference.cohort import FileOutcome
from tests.helpers.engine import disc_volume, write_nifti


@pytest.fixture
def cohort(tmp_path):
    """Two good scans, a corrupt one and a 4D one, in sorted order a, b, c, d."""
    folder = tmp_path / "scans"
    folder.mkdir()
    write_nifti(folder / "a_good.nii.gz", disc_volume(1)[0])
    (folder / "b_corrupt.nii.gz").write_bytes(b"\x1f\x8b this is no gzip stream, nor NIfTI")
    nib.save(nib.Nifti1Image(np.stack([disc_volume(2)[0]] * 2, axis=-1), np.eye(4)), folder / "c_series.nii.gz")
    write_nifti(folder / "d_good.nii.gz", disc_volume(3)[0])
    return folder


#: The written masks' quality records (for a later --skip-existing run).
KEPT = RECORDS_FOLDER
# The model names its classes: each mask gets its colour table beside it.
BOTH_GOOD_WRITTEN = [
    KEPT,
    "a_good_action.ctbl",
    "a_good_action.nii.gz",
    "d_good_action.ctbl",
    "d_good_action.nii.gz",
    "quality.csv",
]


def predict_args(model, out_dir, *images):
    image_args = [arg for image in images for arg in ("--image", str(image))]
    return ["predict", "--model", str(model), *image_args, "--out-dir", str(out_dir), "--device", "cpu"]


def test_bad_files_fail_alone_and_the_summary_names_them(cohort, model_file, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code = main(predict_args(model_file, out_dir, cohort / "*.nii.gz"))
    out, err = capsys.readouterr()
    assert code == SOME_FILES_FAILED == 1
    assert sorted(p.name for p in out_dir.iterdir()) == BOTH_GOOD_WRITTEN
    written = nib.load(out_dir / "d_good_action.nii.gz")
    assert written.shape == (32, 32, 10) and set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
    # One line per file, in sorted order, numbered.
    assert f"[1/4] {cohort / 'a_good.nii.gz'} -> {out_dir / 'a_good_action.nii.gz'} (" in out
    assert f"[4/4] {cohort / 'd_good.nii.gz'} -> " in out
    assert "Summary: 2 written, 2 failed of 4 files in" in out
    summary = err[err.index("Failed (2):") :]
    assert "b_corrupt.nii.gz: cannot be read as NIfTI" in summary
    assert "c_series.nii.gz: the image is 4D" in summary and "fslroi" in summary


def test_image_list_with_comments_and_relative_paths(cohort, model_file, tmp_path, capsys):
    lists = tmp_path / "lists"
    lists.mkdir()
    listing = lists / "cohort.txt"
    listing.write_text(f"# the good ones\n\n../scans/a_good.nii.gz\n   {cohort / 'd_good.nii.gz'}  \n")
    out_dir = tmp_path / "out"
    args = ["predict", "--model", str(model_file), "--image-list", str(listing), "--out-dir", str(out_dir)]
    assert main([*args, "--device", "cpu"]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == BOTH_GOOD_WRITTEN
    assert "Summary: 2 written of 2 files" in capsys.readouterr().out


def test_skip_existing_continues_an_interrupted_cohort(cohort, model_file, tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(predict_args(model_file, out_dir, cohort / "a_good.nii.gz")) == 0
    first = (out_dir / "a_good_action.nii.gz").read_bytes()
    capsys.readouterr()
    everything = predict_args(model_file, out_dir, cohort / "a_good.nii.gz", cohort / "d_good.nii.gz")
    # Without a choice, existing outputs stop the run before any work, naming both remedies.
    assert main(everything) == 2
    err = capsys.readouterr().err
    assert "a_good_action.nii.gz already exist" in err and "--skip-existing" in err and "--overwrite" in err
    assert not (out_dir / "d_good_action.nii.gz").exists()
    assert main([*everything, "--skip-existing"]) == 0
    out = capsys.readouterr().out
    assert f"[1/2] {cohort / 'a_good.nii.gz'}: skipped, {out_dir / 'a_good_action.nii.gz'} exists" in out
    assert "Summary: 1 written, 1 skipped of 2 files" in out
    assert (out_dir / "a_good_action.nii.gz").read_bytes() == first and (out_dir / "d_good_action.nii.gz").is_file()


def test_overwrite_and_skip_existing_exclude_each_other(cohort, model_file, tmp_path, capsys):
    args = [*predict_args(model_file, tmp_path, cohort / "a_good.nii.gz"), "--overwrite", "--skip-existing"]
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_pattern_that_matches_nothing_stops_before_any_work(model_file, tmp_path, capsys):
    assert main(predict_args(model_file, tmp_path / "out", tmp_path / "nothing" / "*.nii.gz")) == 2
    assert "the pattern matches no file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_two_images_with_one_output_name_are_refused(model_file, tmp_path, capsys):
    for folder in ("one", "two"):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / "scan.nii.gz", disc_volume(1)[0])
    assert main(predict_args(model_file, tmp_path / "out", tmp_path / "*" / "scan.nii.gz")) == 2
    assert "several images would write the same output" in capsys.readouterr().err


def test_on_macos_two_images_whose_output_names_differ_in_case_only_are_refused(
    model_file, tmp_path, capsys, monkeypatch
):
    # macOS's disks ignore case: one/Scan and two/scan wrote one file, the second mask over the first.
    monkeypatch.setattr(sys, "platform", "darwin")
    for folder, name in (("one", "Scan.nii.gz"), ("two", "scan.nii.gz")):
        (tmp_path / folder).mkdir()
        write_nifti(tmp_path / folder / name, disc_volume(1)[0])
    assert main([*predict_args(model_file, tmp_path / "out", tmp_path / "*" / "*.nii.gz"), "--overwrite"]) == 2
    assert "several images would write the same output" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_pattern_over_the_out_dir_does_not_take_the_masks_for_images(model_file, tmp_path, capsys):
    # BIDS keeps derivatives inside the dataset: the pattern of a resumed run also matches the masks.
    for subject in ("01", "02"):
        (tmp_path / f"sub-{subject}").mkdir()
        write_nifti(tmp_path / f"sub-{subject}" / f"sub-{subject}_T1w.nii.gz", disc_volume(1)[0])
    out_dir = tmp_path / "derivatives" / "action"
    args = predict_args(model_file, out_dir, tmp_path / "**" / "*.nii.gz")
    assert main(args) == 0
    (out_dir / "sub-02_T1w_action.nii.gz").unlink()  # the job was cancelled before the second mask
    capsys.readouterr()
    assert main([*args, "--skip-existing"]) == 0
    out, err = capsys.readouterr()
    assert "Summary: 1 written, 1 skipped of 2 files" in out
    assert f"left out {out_dir / 'sub-01_T1w_action.nii.gz'}" in err
    assert sorted(p.name for p in out_dir.glob("*.nii.gz")) == ["sub-01_T1w_action.nii.gz", "sub-02_T1w_action.nii.gz"]


def test_each_rank_predicts_its_share_and_reports_it(cohort, model_file, tmp_path, capsys, monkeypatch):
    # RANK and WORLD_SIZE set by hand (a job array, no torchrun store): each rank summarises its own files.
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    out_dir = tmp_path / "out"
    # Rank 1 of 2 takes the second and fourth file of the sorted list: the corrupt one and d.
    assert main(predict_args(model_file, out_dir, cohort / "*.nii.gz")) == SOME_FILES_FAILED
    out, err = capsys.readouterr()
    # Without torchrun's store the ranks cannot gather: each writes its own quality table.
    expected = [KEPT, "d_good_action.ctbl", "d_good_action.nii.gz", "quality-rank1.csv"]
    assert sorted(p.name for p in out_dir.iterdir()) == expected
    assert f"[rank 1/2] [1/2] {cohort / 'b_corrupt.nii.gz'}: FAILED (" in err
    assert f"[rank 1/2] [2/2] {cohort / 'd_good.nii.gz'} -> " in out
    assert "[rank 1/2] Summary: 1 written, 1 failed of 2 files" in out
    assert "[rank 1/2] Failed (1):" in err


def test_ranks_of_a_job_array_started_one_after_another_each_predict_their_share(
    cohort, model_file, tmp_path, capsys, monkeypatch
):
    # A job array: rank 0 has finished when rank 1 starts; its masks are not rank 1's outputs.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("TORCHELASTIC_USE_AGENT_STORE", raising=False)
    out_dir = tmp_path / "out"
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        assert main(predict_args(model_file, out_dir, cohort / "*.nii.gz")) == SOME_FILES_FAILED
    out = capsys.readouterr().out
    assert "[rank 1/2] Summary: 1 written, 1 failed of 2 files" in out
    assert {"a_good_action.nii.gz", "d_good_action.nii.gz"} <= {p.name for p in out_dir.iterdir()}
    # Rank 1's own output existing still stops it, naming only that file.
    assert main(predict_args(model_file, out_dir, cohort / "*.nii.gz")) == 2
    err = capsys.readouterr().err
    assert "d_good_action.nii.gz already exist" in err and "a_good_action" not in err


def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal, log = Terminal(), io.StringIO()
    for err in (terminal, log):
        progress = FileProgress(3, out=io.StringIO(), err=err)
        progress.start(2, tmp_path / "scan.nii.gz")
        progress.slices(10, 10)
        progress.finish(FileOutcome("scan.nii.gz", "x", "failed", 1.0, "scan.nii.gz: broken"))
    assert "[2/3] [########################] 10/10 slices of scan.nii.gz" in terminal.getvalue()
    assert "slices" not in log.getvalue()
    # The message names the file already: the line does not repeat it.
    assert log.getvalue() == "[2/3] scan.nii.gz: FAILED (1.0 s): broken\n"
