"""The Cohort tab beside ``napari-action predict``'s ``quality.csv``: which rows the painted labels helped make.

Real NIfTI files opened with the plugin's reader, the docked widget with the tiny budget of
tests/helpers/gui.py, real training, the model saved by the widget and run by the command line.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from napari_action._napari.refine.cohort import AIDED_TAG
from napari_action.cli.kept_records import record_path
from napari_action.cli.main import main
from napari_action.inference.quality import PredictionStats, rate
from napari_action.training.volume_prediction import PAINTED_AID
from tests.helpers import engine, gui

# 3 mm slices along array axis 0, 1 mm pixels: the layout of tests/helpers/gui.py.
AFFINE = np.diag([3.0, 1.0, 1.0, 1.0])


def write_scan(folder, name: str, seed: int, painted: bool = False):
    image, truth = engine.disc_volume(seed, shape=gui.SHAPE, axis=0)
    nib.save(nib.Nifti1Image(image.astype(np.float32), AFFINE), folder / f"{name}.nii.gz")
    if painted:
        labels = np.zeros(gui.SHAPE, np.uint8)
        labels[list(gui.PAINTED)] = truth[list(gui.PAINTED)]
        nib.save(nib.Nifti1Image(labels, AFFINE), folder / f"{name}_labels.nii.gz")
    return folder / f"{name}.nii.gz"


def test_rows_the_painted_labels_helped_predict_say_so_and_a_scan_opened_after_train_is_rated_as_by_the_cli(
    viewer, qtbot, tmp_path
):
    # A scan nobody painted, opened as training data, was predicted with its structures cut where the painted
    # scan's labels reach; `napari-action predict` with the saved model predicts the network's own mask of it.
    # The Cohort tab rated the one 0.497, quality.csv the other 0.558, and no row said why they differ.
    scans = tmp_path / "scans"
    scans.mkdir()
    write_scan(scans, "vol", 0, painted=True)
    write_scan(scans, "unpainted", 2)
    gui.open_nifti(viewer, *sorted(scans.glob("*.nii.gz")))
    widget = gui.dock(viewer)
    assert widget.start_training()
    gui.wait_finished(qtbot, widget)
    late = write_scan(tmp_path, "late", 1)
    gui.open_nifti(viewer, late)
    widget.predict_button.click()
    gui.wait_finished(qtbot, widget)

    tab = widget.refine_panel.cohort_tab
    rows = {tab.qualities[i].name: tab.cohort_list.item(i) for i in range(tab.cohort_list.count())}
    assert sorted(rows) == ["late", "unpainted", "vol"]
    for name in ("vol", "unpainted"):  # training volumes: the painted slices, or where their labels reach
        assert rows[name].text().endswith(f" · {AIDED_TAG}")
        assert "napari-action predict with the saved model has only the network" in rows[name].toolTip()
    assert f"Predicted {AIDED_TAG}: {PAINTED_AID}." in rows["vol"].toolTip()
    assert AIDED_TAG not in rows["late"].text() and "napari-action predict" not in rows["late"].toolTip()
    assert f'Rows "{AIDED_TAG}"' in tab.summary_label.text()

    # Nothing but the network predicted "late": the command line gives it the same record, and so the same score.
    model = tmp_path / "model.pt"
    widget.save_model(str(model))
    gui.wait_finished(qtbot, widget)
    out = tmp_path / "out"
    assert main(engine.cli_predict_args(model, late, out)) == 0
    kept = json.loads(record_path(out / "late_action.nii.gz").read_text())["record"]
    cli, shown = PredictionStats.from_dict(kept), tab.records["late"]
    assert cli.voxels == shown.voxels and cli.voxel_ml == pytest.approx(shown.voxel_ml)
    np.testing.assert_allclose(cli.entropy_sums, shown.entropy_sums, rtol=1e-5)
    assert rate("late", cli).score == pytest.approx(rate("late", shown).score, abs=1e-6)
