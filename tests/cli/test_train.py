"""``napari-action train``: its stages and messages, its inputs and output (large images read slice by slice, an image
given twice, NaN voxels, the model file), the prior, continuing from a model, scans stored in another voxel order.
The label maps it is given: test_train_labels.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.cli.main import main
from tests.helpers.engine import cli_train_args, disc_volume, sparse, write_nifti


def test_train_error_is_one_clear_line(nifti_files, capsys):
    bad = write_nifti(nifti_files["dir"] / "flat.nii.gz", np.zeros((32, 32, 10), np.uint8))
    code = main(
        [
            "train",
            "--image",
            str(nifti_files["image"]),
            "--labels",
            str(bad),
            "--device",
            "cpu",
            "--out",
            str(nifti_files["dir"] / "m.pt"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "error" in err and "Paint" in err


def test_slices_marked_as_labeled_without_any_paint_are_refused(nifti_files, capsys):
    # Trained a model of background alone ("classes [0]") and wrote it, advising on "a single painted slice".
    out = nifti_files["dir"] / "m.pt"
    args = ["train", "--image", str(nifti_files["image"]), "--labeled-slices", "0,1", "--axis", "2"]
    assert main([*args, "--device", "cpu", "--out", str(out)]) == 2
    assert "Paint at least one structure: --labeled-slices marks slices as background" in capsys.readouterr().err
    assert not out.exists()


def test_train_announces_every_stage_and_runs_exactly_that(nifti_files, capsys):
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"] / "m.pt", method="action")
    assert main([*args, "--warmup", "1"]) == 0
    err = capsys.readouterr().err
    stages = "supervised start 1, stage i: global distillation 1, stage ii: local distillation 1, stage iii: ACTION 3"
    assert f"6 steps ({stages})" in err
    assert "6/6" in err


@pytest.mark.parametrize(("prior", "words"), [("propagation", "propagat"), ("interpolation", "interpolat")])
def test_train_says_it_carries_the_painted_labels_before_the_first_step(nifti_files, capsys, prior, words):
    # On a CT of 512 x 512 x 400 the propagation took over a minute before step 1, with nothing printed, and
    # step 1's remaining time counted it as a step's (eta 7:31 for 7 steps of 2 s).
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"] / "m.pt")
    assert main([*args, "--prior", prior]) == 0
    lines = capsys.readouterr().err.splitlines()
    starts = [i for i, line in enumerate(lines) if line.endswith(f"{words}ing the painted labels along axis 2...")]
    ends = [i for i, line in enumerate(lines) if re.search(rf"labels {words}ed to \d+ slices in 0:\d\d$", line)]
    first_step = next(i for i, line in enumerate(lines) if " step 1/" in line)
    assert len(starts) == 1 and len(ends) == 1 and starts[0] < ends[0] < first_step


def test_one_painted_class_trains_foreground_against_background(nifti_files, capsys):
    _, truth = disc_volume(0)
    disc_only = sparse(np.where(truth == 1, 1, 0).astype(np.uint8))  # the ring is left unpainted: background
    labels = write_nifti(nifti_files["dir"] / "disc.nii.gz", disc_only)
    model = nifti_files["dir"] / "m.pt"
    assert main([*cli_train_args([nifti_files["image"]], labels, model), "--steps", "1"]) == 0
    assert "classes [0, 1]" in capsys.readouterr().err
    assert model.is_file()


def test_nan_voxels_advise_the_flag_which_then_trains(nifti_files, capsys):
    image, _ = disc_volume(0)
    image[0, 0, :2] = np.nan
    image[5, 5, 5] = np.inf
    holes = write_nifti(nifti_files["dir"] / "holes.nii.gz", image)
    before = holes.read_bytes()
    args = [*cli_train_args([holes], nifti_files["labels"], nifti_files["dir"] / "m.pt"), "--steps", "1"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holes.nii.gz: 3 of 10240 voxels are NaN or infinite" in err
    assert "pass --nan-to-zero to replace them by 0" in err and "nan_policy" not in err
    assert main([*args, "--nan-to-zero"]) == 0
    assert holes.read_bytes() == before


def test_an_existing_model_file_is_refused_before_training_unless_overwrite(nifti_files, capsys):
    out = nifti_files["dir"] / "model.pt"
    out.write_bytes(b"the user's earlier model")
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], out)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite" in err and "Training" not in err
    assert out.read_bytes() == b"the user's earlier model"
    assert main([*args, "--overwrite"]) == 0
    assert out.read_bytes() != b"the user's earlier model"


def test_an_input_file_as_out_is_refused_even_with_overwrite(nifti_files, capsys):
    labels = nifti_files["labels"]
    before = labels.read_bytes()
    args = cli_train_args([nifti_files["image"]], labels, labels)
    assert main([*args, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "is the input file" in err and "Training" not in err
    assert labels.read_bytes() == before


def test_a_folder_as_out_is_refused_before_training(nifti_files, capsys):
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is a folder; give a file name" in err and "Training" not in err


@pytest.mark.parametrize("suffix", [".nii", ".zarr"])
def test_a_large_uncompressed_image_trains_read_slice_by_slice(nifti_files, monkeypatch, suffix):
    from napari_action.cli import train
    from napari_action.inference.loaded_model import load_model
    from napari_action.io.volume_source import is_lazy

    image, _ = disc_volume(0)
    stored = write_nifti(nifti_files["dir"] / "scan.nii", image)
    if suffix == ".zarr":
        stored_zarr = nifti_files["dir"] / "scan.zarr"
        assert main(["convert", "--image", str(stored), "--out", str(stored_zarr), "--axis", "2"]) == 0
        stored = stored_zarr
    small, _ = train.training_image(stored, nan_to_zero=False)
    assert isinstance(small, np.ndarray)  # below the sample size it is held whole, as before
    monkeypatch.setattr(train, "SAMPLE_VOXELS", image.size // 2)  # "large": more voxels than the sample
    large, meta = train.training_image(stored, nan_to_zero=False)
    assert is_lazy(large) and large.shape == image.shape and meta.zooms[:3] == pytest.approx((0.8, 0.8, 3.0))
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([stored], nifti_files["labels"], out, method="action") + ["--warmup", "1"]) == 0
    labels = load_model(out, device="cpu").predictor.predict(image)[0]
    assert labels.shape == image.shape and set(np.unique(labels)) <= {0, 1, 2}


def test_a_compressed_image_is_loaded_whole_however_large(nifti_files, monkeypatch):
    from napari_action.cli import train

    monkeypatch.setattr(train, "SAMPLE_VOXELS", 10)
    volume, _ = train.training_image(nifti_files["image"], nan_to_zero=False)
    assert isinstance(volume, np.ndarray)


@pytest.mark.parametrize("prior", ["propagation", "interpolation"])
def test_the_prior_source_is_chosen_and_kept_in_the_model(nifti_files, prior):
    from napari_action.io.checkpoint import load_checkpoint

    model = nifti_files["dir"] / f"{prior}.pt"
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], model, method="action")
    assert main([*args, "--warmup", "1", "--prior", prior]) == 0
    assert load_checkpoint(model).config.prior_source == prior


@pytest.mark.parametrize("choice", ["registration", "none"])
def test_an_unlabeled_image_gets_the_carried_prior_unless_told_not_to(nifti_files, choice):
    from napari_action.io.checkpoint import load_checkpoint

    model = nifti_files["dir"] / f"unpainted-{choice}.pt"
    unlabeled = nifti_files["dir"] / f"unlabeled-{choice}.nii.gz"
    shutil.copyfile(nifti_files["image"], unlabeled)  # another scan of the anatomy (the same file twice is refused)
    images = [nifti_files["image"], unlabeled]
    args = cli_train_args(images, nifti_files["labels"], model, method="action")
    assert main([*args, "--warmup", "1", "--unpainted-prior", choice]) == 0
    assert load_checkpoint(model).config.unpainted_prior == choice


def test_an_unknown_prior_source_is_refused_by_the_parser(nifti_files, capsys):
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"] / "m.pt")
    with pytest.raises(SystemExit):
        main([*args, "--prior", "registration"])
    assert "registration" in capsys.readouterr().err


def test_labels_beside_a_large_image_are_read_for_their_painted_slices_only(nifti_files, monkeypatch):
    from napari_action.cli import train
    from napari_action.data.painted_slices import PaintedSlices

    image, truth = disc_volume(0)
    stored = write_nifti(nifti_files["dir"] / "scan.nii", image)
    painted = write_nifti(nifti_files["dir"] / "painted.nii", sparse(truth))
    monkeypatch.setattr(train, "SAMPLE_VOXELS", image.size // 2)
    large, _ = train.training_image(stored, nan_to_zero=False)
    [(labels, meta)] = train.training_labels([painted], [large], axis=None, labeled_slices=[4])
    assert isinstance(labels, PaintedSlices) and labels.axis == 2 and sorted(labels.slices) == [2, 4, 7]
    np.testing.assert_array_equal(labels.slices[7], truth[:, :, 7])
    [(whole, _)] = train.training_labels([painted], [image], axis=None)  # an image in memory: labels whole
    assert isinstance(whole, np.ndarray)

    out = nifti_files["dir"] / "m.pt"
    assert main([*cli_train_args([stored], painted, out), "--steps", "2", "--labeled-slices", "4"]) == 0
    assert out.is_file()


def test_a_stroke_in_another_view_is_pointed_out_beside_a_large_image(nifti_files, monkeypatch, capsys):
    # A large uncompressed scan (a 512 x 512 x 70 CT, dcm2niix's default .nii) has its labels read for their
    # painted slices only, and the check for a stroke made in another view was skipped: the slices it crossed
    # trained as background but for a line, and nothing said so.
    from napari_action.cli import train

    image, truth = disc_volume(0)
    labels = sparse(truth)  # painted on slices 2 and 7 along axis 2
    labels[4:12, 16, 0:6] = 1  # one short stroke in the coronal view, across slices 0 to 5
    stored = write_nifti(nifti_files["dir"] / "scan.nii", image)
    painted = write_nifti(nifti_files["dir"] / "painted.nii", labels)
    monkeypatch.setattr(train, "SAMPLE_VOXELS", image.size // 2)
    assert main([*cli_train_args([stored], painted, nifti_files["dir"] / "m.pt"), "--steps", "2"]) == 0
    assert "Paint on slice 16 along axis 1 crosses 5 slices along axis 2, the slicing axis" in capsys.readouterr().err


def test_nan_voxels_met_while_reading_a_large_image_advise_the_flag(nifti_files, monkeypatch, capsys):
    from napari_action.cli import train

    image, _ = disc_volume(0)
    image[:, :, 6] = np.nan  # an unpainted slice: found only when the lazily read image reaches it
    stored = write_nifti(nifti_files["dir"] / "holes.nii", image)
    monkeypatch.setattr(train, "SAMPLE_VOXELS", image.size // 2)
    args = [*cli_train_args([stored], nifti_files["labels"], nifti_files["dir"] / "m.pt"), "--steps", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "holes.nii: 1024 voxels of slices" in err and "pass --nan-to-zero to replace them by 0" in err
    assert "nan_policy" not in err
    assert main([*args, "--nan-to-zero"]) == 0


def test_a_complete_mask_as_labels_says_what_to_do_before_training(nifti_files, capsys):
    # Every slice of the truth holds paint: ACTION found no unpainted slice once its supervised start was over.
    out = nifti_files["dir"] / "m.pt"
    args = cli_train_args([nifti_files["image"]], nifti_files["truth"], out, method="action")
    assert main([*args, "--axis", "2"]) == 2
    err = capsys.readouterr().err
    assert "All 10 slices along axis 2 are painted" in err and "choose the method supervised" in err
    assert "step 1/" not in err and not out.exists()


def test_init_continues_from_a_saved_model_keeping_its_class_names(nifti_files, model_file, capsys):
    # The command line could not continue a model (the widget and the Python API could): each run started over.
    from napari_action.inference.loaded_model import load_model

    out = nifti_files["dir"] / "continued.pt"
    args = cli_train_args([nifti_files["image"], nifti_files["other"]], nifti_files["labels"], out)
    assert main([*args, "--init", str(model_file)]) == 0
    err = capsys.readouterr().err
    assert f"Continuing from {model_file} (trained " in err
    assert "step 3/3 supervised" in err
    continued, before = load_model(out), load_model(model_file)
    assert continued.class_names == before.class_names and continued.checkpoint().step > before.checkpoint().step


def test_init_that_is_no_model_is_refused_before_any_image_is_read(nifti_files, capsys):
    out = nifti_files["dir"] / "m.pt"
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], out)
    assert main([*args, "--init", str(nifti_files["truth"])]) == 2
    err = capsys.readouterr().err
    assert "truth.nii.gz is a NIfTI image, not a napari-action checkpoint" in err
    assert "Training" not in err and not out.exists()


def test_init_along_another_axis_than_the_chosen_one_says_to_drop_one_of_them(nifti_files, model_file, capsys):
    # The model's axis 2 silently won over --axis 0, and the advice said to choose axis 0: what the user had done.
    image, truth = disc_volume(0)
    painted = write_nifti(nifti_files["dir"] / "axial.nii.gz", sparse(truth, slices=(3, 20), axis=0))
    out = nifti_files["dir"] / "continued.pt"
    args = cli_train_args([nifti_files["image"]], painted, out, method="action")
    assert main([*args, "--axis", "0", "--init", str(model_file)]) == 2
    err = capsys.readouterr().err
    assert f"--axis 0, but the --init model {model_file} slices along axis 2" in err
    assert "drop --axis to continue it" in err and "drop --init to train a new model along axis 0" in err
    assert "Training" not in err and not out.exists()


def test_a_scan_stored_the_other_way_round_trains_in_the_painted_order_and_the_model_records_that_order(
    nifti_files, capsys
):
    # Listed first and painted nowhere: the model must still record the painted scan's voxel order, which
    # `predict` reads other scans in (the network learned the anatomy that way round).
    scan = nib.load(nifti_files["image"])
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = (scan.shape[0] - 1, scan.shape[1] - 1)
    lps = nifti_files["dir"] / "scan_lps.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(scan.dataobj)[::-1, ::-1].copy(), scan.affine @ flip), lps)
    nothing = nifti_files["dir"] / "nothing.nii.gz"  # a labels file on its grid with no paint
    nib.save(nib.Nifti1Image(np.zeros(scan.shape, np.uint8), scan.affine @ flip), nothing)
    model = nifti_files["dir"] / "model.pt"
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], model, method="action")
    painted = ["--image", str(nifti_files["image"]), "--labels", str(nifti_files["labels"])]
    args[1:5] = ["--image", str(lps), "--labels", str(nothing), *painted]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"Note: '{lps}' is stored LPS, the painted volumes RAS: ACTION reads it in RAS order" in err
    from napari_action.inference.loaded_model import load_model

    references = load_model(model, device="cpu").references
    assert [ref.voxel_order() for ref in references] == ["RAS", "RAS"]  # both as the network saw them


def test_init_reads_a_scan_stored_with_its_axial_slices_along_another_axis_in_the_order_the_model_learned(
    nifti_files, capsys
):
    # The model learned axial slices along axis 2 of a RAS scan. Continued on a scan storing them along axis 0,
    # the new scan's own order was taken: its axial paint then crossed the model's axis 2 as lines.
    first = nifti_files["dir"] / "first.pt"
    assert main(cli_train_args([nifti_files["image"]], nifti_files["labels"], first, method="action")) == 0
    scan, painted = nib.load(nifti_files["image"]), nib.load(nifti_files["labels"])
    turned = scan.affine[:, [2, 0, 1, 3]]  # the same voxels, array axes (2, 0, 1): axial slices along axis 0
    image = nifti_files["dir"] / "sagittal_acquisition.nii.gz"
    labels = nifti_files["dir"] / "sagittal_acquisition_labels.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(scan.dataobj).transpose(2, 0, 1).copy(), turned), image)
    nib.save(nib.Nifti1Image(np.asarray(painted.dataobj).transpose(2, 0, 1).copy(), turned), labels)
    capsys.readouterr()
    continued = nifti_files["dir"] / "continued.pt"
    args = cli_train_args([image], labels, continued, method="action")
    assert main([*args, "--init", str(first)]) == 0
    err = capsys.readouterr().err
    assert "crosses" not in err  # the paint lies along the model's slicing axis
    assert "is stored SRA, the model's training volumes RAS: ACTION reads it in RAS order" in err
    from napari_action.inference.loaded_model import load_model

    model = load_model(continued, device="cpu")
    assert model.axis == 2 and [ref.voxel_order() for ref in model.references] == ["RAS"]


def test_a_second_painted_scan_large_and_stored_with_its_axial_slices_along_another_axis_trains_as_axial(
    nifti_files, monkeypatch, capsys
):
    # Its labels file, read for its painted slices only, was taken as stored: its axial paint crossed the first
    # scan's axial axis as lines (an LPS one trained mirrored, without a word).
    from napari_action.cli import train
    from napari_action.data.painted_slices import PaintedSlices
    from napari_action.training.trainer import Trainer
    from tests.helpers.engine import tiny_config

    image, truth = disc_volume(1)
    scan = nib.load(nifti_files["image"])
    turned = scan.affine[:, [2, 0, 1, 3]]  # axial slices along array axis 0
    large = nifti_files["dir"] / "sagittal_acquisition.nii"
    large_labels = nifti_files["dir"] / "sagittal_acquisition_labels.nii"
    nib.save(nib.Nifti1Image(image.transpose(2, 0, 1).copy(), turned), large)
    nib.save(nib.Nifti1Image(sparse(truth).transpose(2, 0, 1).copy(), turned), large_labels)
    monkeypatch.setattr(train, "SAMPLE_VOXELS", image.size // 2)
    args = cli_train_args([nifti_files["image"]], nifti_files["labels"], nifti_files["dir"] / "m.pt", method="action")
    assert main([*args, "--image", str(large), "--labels", str(large_labels)]) == 0
    err = capsys.readouterr().err
    assert "crosses" not in err and f"'{large}' is stored SRA, the painted volumes RAS" in err

    opened = [train.training_image(path, nan_to_zero=False) for path in (nifti_files["image"], large)]
    images, affines = [volume for volume, _ in opened], [meta.affine for _, meta in opened]
    read = train.training_labels([nifti_files["labels"], large_labels], images, axis=None, affines=affines)
    labels = [array for array, _ in read]
    assert isinstance(labels[1], PaintedSlices) and labels[1].axis == 0 and sorted(labels[1].slices) == [2, 7]
    trainer = Trainer(images, labels, tiny_config(), affines=affines)
    assert trainer.axis == 2 and trainer.annotation.labeled_slices(1) == [2, 7]
    np.testing.assert_array_equal(trainer.annotation.target(1, 7), truth[:, :, 7])


@pytest.mark.parametrize("spelling", ["as given", "relative with ./", "absolute", "a symlink"])
def test_one_image_given_twice_is_refused_before_anything_is_read(nifti_files, capsys, monkeypatch, spelling):
    # It trained as two volumes: the image's unlabeled slices counted twice and the cohort's last stage lengthened.
    folder = nifti_files["dir"]
    monkeypatch.chdir(folder)
    first = "scan.nii.gz"
    second = {
        "as given": first,
        "relative with ./": f"./{first}",
        "absolute": str(folder / first),
        "a symlink": "again.nii.gz",
    }[spelling]
    if spelling == "a symlink":
        (folder / second).symlink_to(folder / first)
    out = folder / "m.pt"
    args = cli_train_args([first, second], nifti_files["labels"], out)
    assert main(args) == 2
    err = capsys.readouterr().err
    shown = Path(second)  # as the command read it: "./scan.nii.gz" is "scan.nii.gz"
    assert f"--image {first} (number 1) and --image {shown} (number 2) are the same file" in err
    assert "Give each image once" in err
    assert "Training" not in err and "Propagating" not in err
    assert not out.exists()
