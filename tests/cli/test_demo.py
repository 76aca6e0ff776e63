"""``napari-action demo``: the phantom demonstration from start to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from skimage.io import imread

from napari_action.cli.demo import _napari_command
from napari_action.cli.main import main


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out-dir", str(out), "--supervised-start", "2", "--steps", "3", "--device", "cpu"]) == 0
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
