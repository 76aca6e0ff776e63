"""Class names on the command line: read from a label table at ``train``, written beside each mask by ``predict``."""

from __future__ import annotations

from napari_action.cli.main import main
from napari_action.inference.loaded_model import load_model
from napari_action.io.label_table import read_label_table
from tests.helpers.engine import cli_predict_args, cli_train_args


def test_a_table_beside_the_labels_names_the_model_and_each_predicted_mask(nifti_files, capsys):
    # The command line had no way to name classes: models trained there, and their masks, had numbers only.
    folder = nifti_files["dir"]
    (folder / "painted.ctbl").write_text("# value name R G B A\n1 disc 255 0 0 255\n2 ring 0 0 255 255\n")
    model = folder / "m.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], model)) == 0
    assert "Class names from " in capsys.readouterr().err
    assert {k: v for k, v in load_model(model).class_names.items() if k} == {1: "disc", 2: "ring"}

    out = folder / "out"
    assert main(cli_predict_args(model, nifti_files["other"], out)) == 0
    table = read_label_table(out / "other_action.ctbl")
    assert [(e.value, e.name) for e in table] == [(0, "background"), (1, "disc"), (2, "ring")]
    assert table[1].rgba != table[2].rgba and table[0].rgba[3] == 0

    # Predicting again over the same folder: this model's own table is no news; another is replaced only when asked.
    (out / "other_action.nii.gz").unlink()
    assert main(cli_predict_args(model, nifti_files["other"], out)) == 0
    captured = capsys.readouterr()
    assert "Kept the existing" not in captured.out + captured.err
    (out / "other_action.nii.gz").unlink()
    (out / "other_action.ctbl").write_text("1 mine 1 2 3 255\n")
    assert main(cli_predict_args(model, nifti_files["other"], out)) == 0
    captured = capsys.readouterr()
    assert "Kept the existing" in captured.out + captured.err
    assert (out / "other_action.ctbl").read_text() == "1 mine 1 2 3 255\n"


def test_class_names_option_takes_an_itk_snap_file_and_a_missing_one_is_refused_before_training(nifti_files, capsys):
    folder = nifti_files["dir"]
    itk = folder / "snap labels.txt"
    itk.write_text('# ITK-SnAP Label Description File\n  2  0 0 255  1 1 1 "outer ring"\n')
    model = folder / "m.pt"
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], model)
    assert main([*args, "--class-names", str(itk)]) == 0
    assert load_model(model).class_names.get(2) == "outer ring"

    missing = folder / "nothing.ctbl"
    assert main([*args, "--class-names", str(missing), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert f"--class-names {missing}: no such file" in err and "Training" not in err.split("no such file")[-1]
