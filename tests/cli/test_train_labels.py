"""``napari-action train``: the label maps a user gives, and what they read when one does not fit its image
(another shape, another voxel grid, values that are no labels, a zarr store, a session)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.cli.main import main
from tests.helpers.engine import cli_train_args, disc_volume, sparse, write_nifti


def test_labels_of_another_shape_name_both_files(nifti_files, capsys):
    image, _ = disc_volume(0)
    small = write_nifti(nifti_files["dir"] / "small.nii.gz", np.zeros((16, 16, 10), np.uint8))
    args = cli_train_args([nifti_files["other"], nifti_files["image"]], small, nifti_files["dir"] / "m.pt")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "small.nii.gz has shape (16, 16, 10)" in err
    assert f"other.nii.gz (--image number 1) has shape {image.shape}" in err


def _write_on_grid(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def _grid(zooms=(0.8, 0.8, 3.0), origin=(-10.0, 5.0, 2.5)):
    """An axis-aligned affine; the defaults are the grid ``write_nifti`` gives the fixture's image."""
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = origin
    return affine


def _rotated(affine, degrees):
    """The voxel axes turned about the world z axis; the origin stays."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    turned = affine.copy()
    turned[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    return turned


@pytest.mark.parametrize(
    ("label_affine", "expected"),
    [
        (_grid(zooms=(1.6, 1.6, 3.0)), "labels: voxels 1.6 x 1.6 x 3 mm, origin (-10, 5, 2.5) mm"),
        (_grid(origin=(-10.0, 5.0, 4.0)), "labels: voxels 0.8 x 0.8 x 3 mm, origin (-10, 5, 4) mm"),
        (_rotated(_grid(), 0.05), "(the axes are rotated differently)"),
    ],
    ids=["voxel-size", "origin", "rotation"],
)  # fmt: skip
def test_labels_on_another_voxel_grid_name_both_files_and_grids(nifti_files, capsys, label_affine, expected):
    _, truth = disc_volume(0)
    labels = _write_on_grid(nifti_files["dir"] / "elsewhere.nii.gz", sparse(truth), label_affine)
    before = labels.read_bytes()
    assert main(cli_train_args([nifti_files["image"]], labels, nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert "elsewhere.nii.gz has the shape of" in err and "scan.nii.gz (--image number 1) but not its voxel grid" in err
    assert expected in err
    assert "image: voxels 0.8 x 0.8 x 3 mm, origin (-10, 5, 2.5) mm, axes RAS" in err
    assert "resample them onto the image's grid" in err
    assert labels.read_bytes() == before and not (nifti_files["dir"] / "m.pt").exists()


def test_labels_whose_grid_differs_only_by_float32_rounding_are_accepted(nifti_files):
    _, truth = disc_volume(0)
    rounded = _grid(zooms=(0.8 + 1e-6, 0.8, 3.0), origin=(-10.0 + 2e-5, 5.0 - 2e-5, 2.5))  # float32-like noise
    labels = _write_on_grid(nifti_files["dir"] / "resaved.nii.gz", sparse(truth), rounded)
    assert main([*cli_train_args([nifti_files["image"]], labels, nifti_files["dir"] / "m.pt"), "--steps", "1"]) == 0


def _micrometre_file(path, data, origin_x_um):
    """A microscope's volume: 0.5 x 0.5 x 2 micrometre voxels, the header's unit micrometres."""
    affine = _grid(zooms=(0.5, 0.5, 2.0), origin=(origin_x_um, 200.0, 50.0))
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("micron")
    nib.save(image, str(path))
    return path


def test_labels_a_voxel_off_their_micrometre_image_are_refused(tmp_path, capsys):
    # 1.2 voxels of 0.5 um are 0.0006 mm: a tolerance in mm alone took them for float32 rounding.
    image, truth = disc_volume(0)
    scan = _micrometre_file(tmp_path / "cells.nii.gz", image.astype(np.float32), 100.0)
    labels = _micrometre_file(tmp_path / "cells_labels.nii.gz", sparse(truth), 100.6)
    assert main(cli_train_args([scan], labels, tmp_path / "m.pt")) == 2
    err = capsys.readouterr().err
    assert "cells_labels.nii.gz has the shape of" in err and "but not its voxel grid" in err
    assert "origin (0.1006, 0.2, 0.05) mm" in err and "origin (0.1, 0.2, 0.05) mm" in err
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, -1], "negative.nii.gz: labels contain negative values (min -1); label values must be >= 0: "
                     "0 means not painted and each class is a positive number."),
        ([0.0, 1.0, 2.5], "negative.nii.gz: labels must be whole numbers"),
    ],
    ids=["negative", "fractional"],
)  # fmt: skip
def test_bad_label_values_name_the_file(nifti_files, capsys, values, expected):
    _, truth = disc_volume(0)
    labels = sparse(truth).astype(np.int16 if isinstance(values[2], int) else np.float32)
    labels[labels == 2] = values[2]
    path = write_nifti(nifti_files["dir"] / "negative.nii.gz", labels)
    assert main(cli_train_args([nifti_files["image"]], path, nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert expected in err
    if values[2] == -1:  # a CT scan given as labels, most often
        assert "--labels takes the label map and --image the scan: are they swapped?" in err


def test_a_scan_given_as_labels_is_refused_before_training(nifti_files, capsys):
    # A 12-bit scan as --labels, its two edge slices empty: it trained a network of ~3000 outputs at 0.1 steps/s.
    scan = np.random.default_rng(0).integers(1, 3000, size=nib.load(nifti_files["image"]).shape, dtype=np.uint16)
    scan[:, :, :2] = 0
    path = write_nifti(nifti_files["dir"] / "t2w.nii.gz", scan)
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([nifti_files["image"]], path, out)) == 2
    err = capsys.readouterr().err
    values = np.unique(scan)
    assert f"{path}: labels hold {values.size - 1} different values (from 0 to {values[-1]}), more than the 255" in err
    assert "are they swapped?" in err and "step 1/" not in err and not out.exists()


def _label_store(path: Path, labels: np.ndarray, meta) -> tuple[Path, dict[str, bytes]]:
    """A label map written by napari-action's zarr writer (``kind: labels``), and its files' bytes as written."""
    from napari_action.io.label_writers import write_label_volume

    store = write_label_volume(path, labels, meta, axis=2)
    return store, {str(part): part.read_bytes() for part in sorted(store.rglob("*")) if part.is_file()}


def test_zarr_labels_beside_an_image_held_whole_are_read_from_the_store(nifti_files, capsys):
    # train --image scan.nii.gz --labels painted.zarr sent the store to the NIfTI reader, which called it "a folder
    # holding no NIfTI or DICOM file" and asked for "a zarr store (a folder whose name ends in .zarr)".
    from napari_action.io.nifti import load_volume

    _, truth = disc_volume(0)
    store, written = _label_store(
        nifti_files["dir"] / "painted.zarr", sparse(truth), load_volume(nifti_files["image"])[1]
    )
    out = nifti_files["dir"] / "m.pt"
    assert main(cli_train_args([nifti_files["image"]], store, out)) == 0
    assert "classes [0, 1, 2]" in capsys.readouterr().err and out.is_file()
    assert {str(part): part.read_bytes() for part in sorted(store.rglob("*")) if part.is_file()} == written


def test_zarr_labels_on_another_voxel_grid_are_refused_as_nifti_labels_are(nifti_files, capsys):
    from napari_action.io.volume_meta import VolumeMeta

    _, truth = disc_volume(0)
    elsewhere = VolumeMeta.from_affine(_grid(zooms=(1.6, 1.6, 3.0)), truth.shape, dtype="uint8")
    store, _ = _label_store(nifti_files["dir"] / "elsewhere.zarr", sparse(truth), elsewhere)
    assert main(cli_train_args([nifti_files["image"]], store, nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert "elsewhere.zarr has the shape of" in err and "labels: voxels 1.6 x 1.6 x 3 mm" in err
    assert not (nifti_files["dir"] / "m.pt").exists()


def test_a_session_store_given_as_labels_is_told_how_to_get_its_labels(nifti_files, capsys):
    from napari_action.io.session_store import Session, SessionVolume, save_session

    _, truth = disc_volume(0)
    volume = SessionVolume(name="scan", shape=truth.shape, painted=sparse(truth))
    session = save_session(nifti_files["dir"] / "work.action.zarr", Session(volumes=[volume]))
    assert main(cli_train_args([nifti_files["image"]], session, nifti_files["dir"] / "m.pt")) == 2
    err = capsys.readouterr().err
    assert f"{session} is a napari-action session, not a label map. Open it with 'Open session…'" in err
