"""Errors of ``napari-action`` in plain words: one line naming the path, what is wrong and what to do.

Each test runs the real command on real files. Permission and full-disk failures run the
command in a fresh process that the kernel refuses for real (:mod:`tests.helpers.os_limits`:
root's override given up, a file size limit); a disk that reports itself full on flushing
raises the OS's own ``ENOSPC`` from ``os.fsync``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_action.cli.main import main
from tests.helpers.engine import cli_predict_args, cli_train_args, write_nifti
from tests.helpers.os_limits import read_only, run_on_small_disk, run_save

USER_ERROR = 2  # nothing was tried
SOME_FILES_FAILED = 1

# Child code: run the command args[1:] and hand back its exit code and what it printed on
# stderr as the message of an exception (the child reports exceptions only; a pipe, unlike a
# log file, is not bound by the file size limit).
_SETUP = (
    "from napari_action.cli.main import main\nimport napari_action.cli.predict, napari_action.inference.out_of_core"
)
_RUN_COMMAND = """
import contextlib, io
class Exited(Exception):
    pass
stderr = io.StringIO()
with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
    status = main(args)
raise Exited(f"{status}\\n{stderr.getvalue()}")
"""


def run_command(capsys, args) -> tuple[int, str]:
    """Exit code and stderr of ``napari-action ARGS``, after checking it is free of the OS's and torch's words."""
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert_plain(err)
    return status, err


def run_command_in_child(args, **limits) -> tuple[int, str]:
    """:func:`run_command` in a fresh process under real OS limits (see :func:`~tests.helpers.os_limits.run_save`)."""
    outcome = run_save(_RUN_COMMAND, *args, setup=_SETUP, **limits)
    assert outcome.type == "Exited", outcome
    status, err = outcome.message.split("\n", 1)
    assert_plain(err)
    return int(status), err


def assert_plain(err: str) -> None:
    for internal in ("Errno", "PytorchStreamReader", "miniz", "Traceback", "Weights only load failed"):
        assert internal not in err, err


# -- a path of the wrong kind ------------------------------------------------------------------
def test_an_out_dir_that_is_a_file(nifti_files, model_file, capsys):
    notes = nifti_files["dir"] / "notes.txt"
    notes.write_text("the user's notes")
    status, err = run_command(capsys, cli_predict_args(model_file, nifti_files["image"], notes))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {notes} is a file, but a folder is needed there; "
        "give the path of a folder, or move the file away.\n"
    )
    assert notes.read_text() == "the user's notes"


def test_an_out_dir_below_a_file(nifti_files, model_file, capsys):
    notes = nifti_files["dir"] / "notes.txt"
    notes.write_text("the user's notes")
    status, err = run_command(capsys, cli_predict_args(model_file, nifti_files["image"], notes / "predictions"))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {notes / 'predictions'} cannot be used: {notes} is a file, not a folder; "
        f"choose another path, or move {notes} away.\n"
    )


def test_a_train_out_below_a_file_is_refused_before_training(nifti_files, capsys):
    notes = nifti_files["dir"] / "notes.txt"
    notes.write_text("the user's notes")
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], notes / "model.pt")
    status, err = run_command(capsys, args)
    assert status == USER_ERROR
    assert err == (
        f"napari-action train: error: {notes} is a file, but a folder is needed there; "
        "give the path of a folder, or move the file away.\n"
    )


def test_a_folder_given_as_model(nifti_files, capsys):
    folder = nifti_files["dir"]
    status, err = run_command(capsys, cli_predict_args(folder, nifti_files["image"], folder / "out"))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {folder} is a folder, but a file is needed there; give the path of a file.\n"
    )


def test_a_missing_model(nifti_files, capsys):
    missing = nifti_files["dir"] / "runs" / "model.pt"
    status, err = run_command(capsys, cli_predict_args(missing, nifti_files["image"], nifti_files["dir"] / "out"))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {missing} does not exist: there is no folder {missing.parent}; "
        "check the path (or create the folder).\n"
    )
    assert not (nifti_files["dir"] / "out").exists()  # was left behind, empty


# -- files that are no (usable) checkpoint ----------------------------------------------------------
def test_a_truncated_model(nifti_files, model_file, capsys):
    truncated = nifti_files["dir"] / "model.pt"
    whole = model_file.read_bytes()
    truncated.write_bytes(whole[: len(whole) * 2 // 3])  # a copy that stopped two thirds in
    status, err = run_command(capsys, cli_predict_args(truncated, nifti_files["image"], nifti_files["dir"] / "out"))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {truncated} is a damaged or truncated checkpoint (incomplete or corrupt, "
        "e.g. a copy or download that stopped early); copy or save the model again.\n"
    )


@pytest.mark.parametrize("given", ["image", "text"])
def test_a_file_that_is_no_checkpoint_at_all(nifti_files, capsys, given):
    if given == "image":
        model, kind = nifti_files["image"], "is a NIfTI image, not a napari-action checkpoint"
    else:
        model, kind = nifti_files["dir"] / "model.txt", "is not a napari-action checkpoint"
        model.write_text("learning_rate = 0.01\n")
    status, err = run_command(capsys, cli_predict_args(model, nifti_files["image"], nifti_files["dir"] / "out"))
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: {model} {kind} (save one with 'Save model…' "
        "or 'napari-action train --out MODEL.pt').\n"
    )


def test_a_model_of_a_newer_napari_action(nifti_files, model_file, capsys):
    newer = nifti_files["dir"] / "newer.pt"
    payload = torch.load(model_file, map_location="cpu", weights_only=True)
    torch.save({**payload, "format_version": payload["format_version"] + 1, "version": "9.0.0"}, newer)
    status, err = run_command(capsys, cli_predict_args(newer, nifti_files["image"], nifti_files["dir"] / "out"))
    assert status == USER_ERROR
    assert f"error: {newer} was written by napari-action 9.0.0, newer than this one" in err
    assert "upgrade napari-action (pip install --upgrade napari-action) to open it." in err


# -- permission and space, refused by the kernel --------------------------------------------------
def test_a_model_this_user_may_not_read(nifti_files, model_file):
    locked = shutil.copy(model_file, nifti_files["dir"] / "model.pt")
    os.chmod(locked, 0)
    try:
        status, err = run_command_in_child(
            cli_predict_args(locked, nifti_files["image"], nifti_files["dir"] / "out"), unwritable=True
        )
    finally:
        os.chmod(locked, 0o644)
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: cannot open {locked}: you do not have permission (Permission denied); "
        "fix its permissions, or use a copy you own.\n"
    )


def test_an_out_dir_in_a_folder_that_is_not_writable(nifti_files, model_file):
    locked = nifti_files["dir"] / "shared"
    locked.mkdir()
    out_dir = locked / "predictions"
    with read_only(locked):
        status, err = run_command_in_child(cli_predict_args(model_file, nifti_files["image"], out_dir), unwritable=True)
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: cannot write {out_dir}: the folder {locked} is not writable "
        "(Permission denied); choose another folder (or fix its permissions).\n"
    )


def test_an_out_dir_that_is_not_writable_is_refused_before_any_image_is_predicted(nifti_files, model_file):
    # Was: every image predicted, then "FAILED: cannot write" for each, the compute of a cohort lost.
    out_dir = nifti_files["dir"] / "predictions"
    out_dir.mkdir()
    with read_only(out_dir):
        status, err = run_command_in_child(cli_predict_args(model_file, nifti_files["image"], out_dir), unwritable=True)
    assert status == USER_ERROR
    assert err == (
        f"napari-action predict: error: cannot write into {out_dir}: the folder is not writable; "
        "choose another --out-dir (or fix its permissions).\n"
    )
    assert list(out_dir.iterdir()) == []


# As on Windows, where os.access ignores folder permissions (and on macOS, where it knows nothing of
# the privacy controls that keep a program out of Documents): every folder reads as writable.
_OS_ACCESS_SAYS_WRITABLE = _SETUP + "\nimport os\nos.access = lambda *args, **kwargs: True"


@pytest.mark.parametrize("command", ["predict", "train"])
def test_a_folder_os_access_calls_writable_is_still_refused_before_the_work(nifti_files, model_file, command):
    # Was: os.access said yes, the model trained (or every image was predicted), then the write failed.
    out_dir = nifti_files["dir"] / "out"
    out_dir.mkdir()
    if command == "predict":
        args, refused = cli_predict_args(model_file, nifti_files["image"], out_dir), f"into {out_dir}: the folder"
    else:
        args = cli_train_args([nifti_files["image"]], nifti_files["labels"], out_dir / "model.pt")
        refused = f"{out_dir / 'model.pt'}: the folder {out_dir}"
    with read_only(out_dir):
        outcome = run_save(_RUN_COMMAND, *map(str, args), setup=_OS_ACCESS_SAYS_WRITABLE, unwritable=True)
    status, err = outcome.message.split("\n", 1)
    assert int(status) == USER_ERROR
    assert err.startswith(f"napari-action {command}: error: cannot write {refused} is not writable; choose another")
    assert list(out_dir.iterdir()) == []


def test_a_demo_into_a_folder_that_is_not_writable_is_refused_before_training(tmp_path):
    # Was: the whole demo trained (2 minutes by default), then "cannot write <out-dir>/model.pt".
    out_dir = tmp_path / "demo"
    out_dir.mkdir()
    demo = ["demo", "--out-dir", str(out_dir), "--supervised-start", "1", "--steps", "1", "--device", "cpu"]
    with read_only(out_dir):
        status, err = run_command_in_child(demo, unwritable=True)
    assert status == USER_ERROR
    assert err == (
        f"napari-action demo: error: cannot write into {out_dir}: the folder is not writable; "
        "choose another --out-dir (or fix its permissions).\n"
    )
    assert list(out_dir.iterdir()) == []


def test_convert_into_a_folder_that_is_not_writable_names_the_store_asked_for(nifti_files):
    locked = nifti_files["dir"] / "stores"
    locked.mkdir()
    out = locked / "scan.zarr"
    with read_only(locked):
        status, err = run_command_in_child(
            ["convert", "--image", str(nifti_files["image"]), "--out", str(out)], unwritable=True
        )
    assert status == USER_ERROR
    # Not the hidden ".scan.zarr.<random>.part" it is built in.
    assert err == (
        f"napari-action convert: error: cannot write {out}: the folder {locked} is not writable "
        "(Permission denied); choose another folder (or fix its permissions).\n"
    )


def test_a_full_disk_while_writing_the_labels(nifti_files, model_file, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    # Writes past 64 bytes fail with EFBIG, through the same path as a full disk (ENOSPC).
    status, err = run_command_in_child(cli_predict_args(model_file, nifti_files["image"], out_dir), file_size_limit=64)
    assert status == SOME_FILES_FAILED
    target = out_dir / "scan_action.nii.gz"
    assert (
        f"{nifti_files['image']}: could not write {target}: the disk is full or the file is too large "
        "(File too large); free some space and save again." in err
    )
    # The quality table cannot be written either: said, and the summary and exit code stay the masks'.
    assert f"Warning: the quality table was not written: could not write {out_dir / 'quality.csv'}" in err
    assert list(out_dir.iterdir()) == []


def test_a_disk_that_reports_full_when_flushed(nifti_files, model_file, capsys, monkeypatch):
    def disk_full(descriptor):
        # Network disks report a full disk when the data is flushed, as ENOSPC.
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    out_dir = nifti_files["dir"] / "out"
    status, err = run_command(capsys, cli_predict_args(model_file, nifti_files["image"], out_dir))
    assert status == SOME_FILES_FAILED
    assert (
        f"{nifti_files['image']}: could not write {out_dir / 'scan_action.nii.gz'}: the disk is full or the file "
        "is too large (No space left on device); free some space and save again." in err
    )


def test_a_disk_too_full_for_the_trained_model_keeps_it_in_the_users_folder_and_says_where(nifti_files, tmp_path):
    # The disk of --out (a real 64 KiB one) has no room for the model once training is over: the error
    # ended the process, and the trained model with it ("save again": there was nothing left to save).
    from napari_action.inference.loaded_model import load_model

    disk, home = tmp_path / "disk", tmp_path / "home"
    disk.mkdir()
    out = disk / "m.pt"
    args = [*cli_train_args([nifti_files["image"]], nifti_files["labels"], out), "--threads", "1"]
    setup = f"{_SETUP}\nimport os\nos.environ['HOME'] = {str(home)!r}"
    outcome = run_on_small_disk(_RUN_COMMAND, disk, 64, *args, setup=setup)
    assert outcome.type == "Exited", outcome
    status, err = outcome.message.split("\n", 1)
    assert int(status) == USER_ERROR
    assert f"could not write {out}: the disk is full" in err
    [kept] = (home / ".napari-action" / "unsaved-models").iterdir()
    assert f"The trained model is kept in {kept} instead: move it to {out}" in err
    assert load_model(kept).class_values.tolist() == [0, 1, 2]


def _run_and_write_meanwhile(args, started, target, home):
    """Run ``napari-action args`` in a child; once a line of its output starts with ``started``, write
    ``target`` as another job would. Its exit code and stderr."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home)}
    command = [sys.executable, "-m", "napari_action.cli.main", *args]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.startswith(started):
                target.write_bytes(b"another job's file")
                break
        rest, _ = child.communicate(timeout=300)
    finally:
        child.kill()
    return child.returncode, "".join(lines) + rest


def test_a_model_written_to_the_same_out_by_another_job_is_left_and_this_one_kept(nifti_files, tmp_path):
    # Two jobs with one --out: the second to finish said "pass overwrite=True to replace it" (an option the
    # command line does not have) and "move it to m.pt", over the other job's model.
    from napari_action.inference.loaded_model import load_model

    out, home = nifti_files["dir"] / "m.pt", tmp_path / "home"
    args = [*cli_train_args([nifti_files["image"]], nifti_files["labels"], out), "--steps", "40", "--threads", "1"]
    status, err = _run_and_write_meanwhile(args, "Training", out, home)
    assert status == USER_ERROR
    assert f"{out} was written by another process while this model trained (two jobs with the same --out?)" in err
    assert "overwrite=True" not in err and out.read_bytes() == b"another job's file"
    [kept] = (home / ".napari-action" / "unsaved-models").iterdir()
    assert f"The trained model is kept in {kept} instead: move it to wherever you want it." in err
    assert load_model(kept).class_values.tolist() == [0, 1, 2]


def test_a_mask_written_by_another_job_meanwhile_is_left_and_said_so(nifti_files, model_file, tmp_path):
    big = write_nifti(tmp_path / "big.nii.gz", np.random.default_rng(0).normal(100, 10, (96, 96, 60)))
    out_dir = tmp_path / "out"
    args = [*cli_predict_args(model_file, nifti_files["image"], out_dir), "--image", str(big), "--threads", "1"]
    target = out_dir / "big_action.nii.gz"
    status, err = _run_and_write_meanwhile(args, "[1/2]", target, tmp_path)
    assert status == SOME_FILES_FAILED
    assert f"{target} was written by another process while this one predicted it" in err
    assert "overwrite=True" not in err and target.read_bytes() == b"another job's file"


def test_scores_that_cannot_be_written_leave_the_last_ones_whole(nifti_files, tmp_path):
    # evaluate --json truncated the file, then failed half-way: yesterday's scores were lost for a fragment.
    (tmp_path / "scores").mkdir()
    scores = tmp_path / "scores" / "scores.json"
    scores.write_text('{"earlier": "scores"}')
    args = ["evaluate", "--pred", nifti_files["truth"], "--truth", nifti_files["truth"], "--json", scores]
    status, err = run_command_in_child(args, file_size_limit=64)  # writes past 64 bytes fail, as on a full disk
    assert status == USER_ERROR
    assert f"could not write {scores}: the disk is full or the file is too large" in err
    assert "unchanged" in err
    assert scores.read_text() == '{"earlier": "scores"}'
    assert [path.name for path in scores.parent.iterdir()] == ["scores.json"]  # no part file left


def test_a_metaimage_given_to_train_and_predict_is_told_how_to_convert_it_not_dcm2niix(nifti_files, model_file, capsys):
    # Both said "Convert it to NIfTI first, e.g. with dcm2niix for DICOM series", of any file not named .nii.
    scan = nifti_files["dir"] / "scan.mha"
    scan.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n" + bytes(64))
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([scan], nifti_files["labels"], out)) == 2
    trained = capsys.readouterr().err
    assert main(cli_predict_args(model_file, scan, nifti_files["dir"] / "out")) == 1
    predicted = capsys.readouterr().err
    for err in (trained, predicted):
        assert f"{scan}: a .mha volume, not NIfTI" in err and "sitk.WriteImage(sitk.ReadImage(" in err
        assert "dcm2niix" not in err
    assert not out.exists()
