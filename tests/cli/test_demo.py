"""``napari-action demo``: the phantom demonstration from start to end."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread

from napari_action.cli.demo import _napari_command, open_in_napari_command
from napari_action.cli.demo_files import RECORD, demo_file_names, record_written, refuse_to_replace_others
from napari_action.cli.main import main


def test_demo_end_to_end(tmp_path, capsys):
    # A folder of the user's own: `train --out model.pt`, then `demo --out-dir .`, replaced their model.
    out = tmp_path / "demo"
    out.mkdir()
    (out / "model.pt").write_bytes(b"the user's own model")
    demo = ["demo", "--out-dir", str(out), "--supervised-start", "2", "--steps", "3", "--device", "cpu"]
    assert main(demo) == 2
    assert "model.pt" in capsys.readouterr().err and (out / "model.pt").read_bytes() == b"the user's own model"
    assert [path.name for path in out.iterdir()] == ["model.pt"]  # refused before anything was written

    assert main([*demo, "--overwrite"]) == 0
    # Every file it wrote is on the record that lets the next demo replace them, and no other.
    assert set(json.loads((out / RECORD).read_text())) == {path.name for path in out.iterdir()} - {RECORD}
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
    # The overlay names what it shows: a title band above the image, truth and ACTION panels.
    overlay = imread(out / "overlay.png")
    assert overlay.dtype == np.uint8 and overlay.shape[2] == 3
    title_band = overlay[:22]
    assert title_band.max() == 255 and (title_band == 0).mean() > 0.5  # white text on black
    said = capsys.readouterr()
    assert "mean Dice" in said.out
    assert "times thicker than their pixels" in said.err  # the phantom's 8 mm slices: structures cut, and said


def test_demo_hint_names_a_napari_the_user_can_run(monkeypatch, tmp_path):
    beside = Path(sys.executable).parent / "napari"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # napari not on PATH, as in an unactivated venv
    assert _napari_command() == (str(beside) if beside.exists() else "napari")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert _napari_command() == "napari" or not beside.exists()


def test_demo_hint_can_be_pasted_into_a_shell_when_the_folder_has_spaces(tmp_path):
    out = tmp_path / "my demo ü"
    words = shlex.split(open_in_napari_command(out, "phantom-1"))
    assert words[1:] == [str(out / "phantom-1.nii.gz"), str(out / "phantom-1_action.nii.gz")]


def test_on_windows_the_hint_names_napari_exe_of_the_venv_and_quotes_for_cmd_and_powershell(tmp_path, monkeypatch):
    # A Windows venv has Scripts\\python.exe and Scripts\\napari.exe (no "napari" without a suffix), and
    # cmd.exe keeps single quotes as part of a name: shlex's quoting opened no file there.
    scripts = tmp_path / "venv" / "Scripts"
    scripts.mkdir(parents=True)
    for program in ("python.exe", "napari.exe"):
        (scripts / program).touch(mode=0o755)
    monkeypatch.setattr(sys, "executable", str(scripts / "python.exe"))
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("PATH", str(tmp_path / "elsewhere"))  # an unactivated venv
    monkeypatch.setenv("PATHEXT", ".exe")  # any case on Windows; this file system is not
    monkeypatch.chdir(tmp_path)
    out = Path("napari-action-demo")
    assert open_in_napari_command(out, "phantom-1") == (
        f"{Path('venv', 'Scripts', 'napari.exe')} {out / 'phantom-1.nii.gz'} {out / 'phantom-1_action.nii.gz'}"
    )
    spaced = tmp_path / "my demo"
    assert f' "{spaced / "phantom-1.nii.gz"}" ' in open_in_napari_command(spaced, "phantom-1")


def test_a_second_demo_replaces_what_the_first_wrote_and_nothing_changed_since(tmp_path):
    names = demo_file_names(["phantom-1", "phantom-2"])
    for name in names:
        (tmp_path / name).write_text("written by the demo")
    record_written(tmp_path, names)
    refuse_to_replace_others(tmp_path, names, overwrite=False)  # its own files: no question asked
    (tmp_path / "results.json").write_text("edited by the user, longer than before")
    with pytest.raises(FileExistsError, match=r"holds results\.json, not written by an earlier demo"):
        refuse_to_replace_others(tmp_path, names, overwrite=False)
    refuse_to_replace_others(tmp_path, names, overwrite=True)
    (tmp_path / RECORD).write_text("not json")  # a damaged record protects every file
    with pytest.raises(FileExistsError, match="model.pt"):
        refuse_to_replace_others(tmp_path, names, overwrite=False)
