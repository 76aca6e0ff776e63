"""A folder given where an image or a mask is expected: said to be a folder, with advice that fits what it holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from napari_action.cli.main import main
from tests.helpers.engine import cli_predict_args, cli_train_args


def folder_of(nifti_files, name: str, members: tuple[str, ...]) -> Path:
    """A folder ``name`` holding copies of the ``members`` of ``nifti_files``."""
    folder = nifti_files["dir"] / name
    folder.mkdir()
    for member in members:
        shutil.copy(nifti_files[member], folder)
    return folder


def folder_of_scans(nifti_files) -> Path:
    return folder_of(nifti_files, "scans", ("image", "other"))


def folder_of_dicom(nifti_files) -> Path:
    folder = nifti_files["dir"] / "series"
    folder.mkdir()
    for number in range(3):  # a DICOM Part 10 file: a 128-byte preamble, then "DICM"
        (folder / f"IM{number:04d}").write_bytes(bytes(128) + b"DICM" + bytes(64))
    return folder


def test_train_given_a_folder_of_nifti_files_says_to_give_each_with_its_own_image(nifti_files, capsys):
    # It read "not a NIfTI file … Convert it to NIfTI first, e.g. with dcm2niix for DICOM series".
    folder = folder_of_scans(nifti_files)
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([folder], nifti_files["labels"], out)) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder, not an image: it holds 2 NIfTI files (other.nii.gz, scan.nii.gz)" in err
    assert f"--image {folder / 'other.nii.gz'} --image {folder / 'scan.nii.gz'}" in err
    assert "DICOM" not in err and "Training" not in err and not out.exists()


def test_predict_given_a_folder_of_nifti_files_says_how_to_name_them_all(nifti_files, model_file, capsys):
    folder = folder_of_scans(nifti_files)
    assert main(cli_predict_args(model_file, folder, nifti_files["dir"] / "out")) == 1
    err = capsys.readouterr().err
    assert f"{folder} is a folder, not an image: it holds 2 NIfTI files" in err
    assert f"--image '{folder / '*.nii.gz'}'" in err and "--image-list" in err
    assert "DICOM" not in err


def test_a_folder_of_dicom_files_is_named_as_such_with_how_to_convert_it(nifti_files, capsys):
    folder = folder_of_dicom(nifti_files)
    assert main(cli_train_args([folder], nifti_files["labels"], nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder of DICOM files, not an image" in err and "dcm2niix" in err


def test_evaluate_given_an_empty_folder_says_it_holds_no_image(nifti_files, capsys):
    folder = nifti_files["dir"] / "empty"
    folder.mkdir()
    assert main(["evaluate", "--pred", str(folder), "--truth", str(nifti_files["truth"])]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder holding no NIfTI or DICOM file" in err and "DICOM series" not in err


def folder_of_label_maps(nifti_files) -> Path:
    return folder_of(nifti_files, "masks", ("labels", "truth"))


def test_train_given_a_folder_as_labels_says_one_label_map_per_image_in_image_order(nifti_files, capsys):
    # It read "… is a folder, not an image … Give one of them", advice for an --image.
    folder = folder_of_label_maps(nifti_files)
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([nifti_files["image"]], folder, out)) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder, not a label map: it holds 2 NIfTI files (painted.nii.gz, truth.nii.gz)" in err
    assert "one label map per --image, in --image order" in err
    assert f"--labels {folder / 'painted.nii.gz'} --labels {folder / 'truth.nii.gz'}" in err
    assert "not an image" not in err and "Training" not in err and not out.exists()


def test_evaluate_given_a_folder_as_truth_says_to_give_the_expert_mask_of_the_predicted_image(nifti_files, capsys):
    folder = folder_of_label_maps(nifti_files)
    assert main(["evaluate", "--pred", str(nifti_files["truth"]), "--truth", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder, not a label map: it holds 2 NIfTI files" in err
    assert "--truth takes one label map, the expert mask of the image --pred was predicted on" in err
    assert f"such as {folder / 'painted.nii.gz'}" in err and "not an image" not in err


def test_evaluate_given_an_empty_folder_as_truth_is_told_what_it_reads(nifti_files, capsys):
    folder = nifti_files["dir"] / "empty"
    folder.mkdir()
    assert main(["evaluate", "--pred", str(nifti_files["truth"]), "--truth", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder holding no NIfTI or DICOM file" in err
    assert "--truth takes one label map, the expert mask" in err
    assert "a NIfTI file (.nii or .nii.gz) or a zarr store (a folder whose name ends in .zarr)" in err


def test_a_zarr_store_not_named_zarr_is_named_as_one_and_the_rename_it_advises_is_read(nifti_files, model_file, capsys):
    # It read "scan_store is a folder holding no NIfTI or DICOM file", of a store `convert` wrote.
    written = nifti_files["dir"] / "scan.zarr"
    assert main(["convert", "--image", str(nifti_files["image"]), "--out", str(written)]) == 0
    store = written.rename(nifti_files["dir"] / "scan_store")
    out_dir = nifti_files["dir"] / "out"
    capsys.readouterr()
    assert main(cli_predict_args(model_file, store, out_dir)) == 1
    err = capsys.readouterr().err
    assert f"{store} is a zarr store (it holds zarr.json) whose name does not end in .zarr" in err
    assert f"rename it to {store.name}.zarr" in err and "no NIfTI or DICOM" not in err
    renamed = store.rename(store.with_name(f"{store.name}.zarr"))
    assert main(cli_predict_args(model_file, renamed, out_dir)) == 0
    assert (out_dir / "scan_store_action.nii.gz").is_file()


@pytest.mark.parametrize(("node", "metadata"), [("array", ".zarray"), ("group", ".zgroup")])
def test_a_zarr_format_2_store_not_named_zarr_is_told_by_its_metadata_file(nifti_files, node, metadata, capsys):
    store = nifti_files["dir"] / "old_store"
    if node == "array":
        zarr.open_array(str(store), mode="w", shape=(4, 4, 4), dtype="float32", zarr_format=2)
    else:
        zarr.open_group(str(store), mode="w", zarr_format=2)
    assert main(cli_train_args([store], nifti_files["labels"], nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert f"{store} is a zarr store (it holds {metadata}) whose name does not end in .zarr" in err
    assert f"rename it to {store.name}.zarr" in err and "no NIfTI or DICOM" not in err
    assert ("not a group of arrays" in err) == (node == "group")


def test_evaluate_given_a_zarr_store_not_named_zarr_as_truth_is_told_to_rename_it_and_reads_it_renamed(
    nifti_files, capsys
):
    # evaluate read label maps as NIfTI only and asked for a NIfTI file; it reads stores named .zarr now.
    from napari_action.io.nifti import load_labels
    from napari_action.io.volume_source import zarr_attrs

    truth, meta = load_labels(nifti_files["truth"])
    store = nifti_files["dir"] / "mask_store"
    zarr.create_array(str(store), data=truth, attributes=zarr_attrs(meta, kind="labels"))
    assert main(["evaluate", "--pred", str(nifti_files["truth"]), "--truth", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"{store} is a zarr store (it holds zarr.json)" in err and f"rename it to {store.name}.zarr" in err
    renamed = store.rename(store.with_name(f"{store.name}.zarr"))
    assert main(["evaluate", "--pred", str(nifti_files["truth"]), "--truth", str(renamed)]) == 0


def test_a_zarr_store_given_to_the_nifti_reader_of_a_script_is_told_where_stores_are_read(tmp_path):
    from napari_action.io.nifti import VolumeError, load_labels, load_volume

    store = tmp_path / "scan.zarr"
    zarr.create_array(store, data=np.zeros((4, 5, 6), np.float32))
    for read in (load_volume, load_labels):
        with pytest.raises(VolumeError) as refused:
            read(store)
        message = str(refused.value)
        # It said the store held "no NIfTI or DICOM file" and asked for "a zarr store": what it was given.
        assert "is a zarr store" in message and "no NIfTI or DICOM" not in message
        assert "open_volume_source" in message and "load_label_map" in message


def test_an_empty_folder_named_as_a_zarr_store_is_told_to_hold_no_zarr_array_by_every_command(
    nifti_files, model_file, capsys
):
    # Each said "cannot be read as a zarr array (ArrayNotFoundError: No array found in store file://…)".
    store = nifti_files["dir"] / "empty.zarr"
    store.mkdir()
    out = nifti_files["dir"] / "m.pt"
    commands = [
        (cli_train_args([store], nifti_files["labels"], out), 2),
        (cli_train_args([nifti_files["image"]], store, out), 2),
        (cli_predict_args(model_file, store, nifti_files["dir"] / "out"), 1),
        (["evaluate", "--pred", str(nifti_files["truth"]), "--truth", str(store)], 2),
    ]
    for args, status in commands:
        assert main(args) == status, args
        err = capsys.readouterr().err
        assert f"{store} holds no zarr array: the folder is empty." in err, args
        assert "ArrayNotFoundError" not in err and "file://" not in err
    assert not out.exists()
