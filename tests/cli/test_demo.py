"""``napari-action demo``: the phantom demonstration from start to end."""

from __future__ import annotations

import json

from napari_action.cli.main import main


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
