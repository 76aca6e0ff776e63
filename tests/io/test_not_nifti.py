"""A file that is not NIfTI by name, refused with advice that fits what it is (dcm2niix for DICOM only)."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from napari_action.io.nifti import VolumeError, load_volume

SHAPE = (4, 5, 3)


def write_metaimage(path: Path, spacing=(0.5, 0.5, 2.0), offset=(10.0, -5.0, 3.0)) -> Path:
    """A MetaImage volume (``.mha``: its text header, then the voxels), as ITK writes it."""
    header = (
        f"ObjectType = Image\nNDims = 3\nDimSize = {' '.join(map(str, SHAPE))}\n"
        f"ElementSpacing = {' '.join(map(str, spacing))}\nOffset = {' '.join(map(str, offset))}\n"
        "TransformMatrix = 1 0 0 0 1 0 0 0 1\nElementType = MET_SHORT\nElementByteOrderMSB = False\n"
        "ElementDataFile = LOCAL\n"
    )
    path.write_bytes(header.encode() + np.arange(np.prod(SHAPE), dtype="<i2").tobytes())
    return path


def write_nrrd(path: Path) -> Path:
    """A NRRD volume: its text header, a blank line, the raw voxels."""
    header = (
        f"NRRD0004\ntype: short\ndimension: 3\nsizes: {' '.join(map(str, SHAPE))}\nendian: little\n"
        "encoding: raw\nspace: left-posterior-superior\nspace directions: (0.5,0,0) (0,0.5,0) (0,0,2)\n\n"
    )
    path.write_bytes(header.encode() + np.zeros(SHAPE, dtype="<i2").tobytes())
    return path


def write_mgz(path: Path) -> Path:
    nib.save(nib.MGHImage(np.zeros(SHAPE, dtype=np.float32), np.eye(4)), path)
    return path


def write_npy(path: Path) -> Path:
    np.save(path, np.zeros(SHAPE, dtype=np.float32))
    return path


def write_dicom_mark(path: Path) -> Path:
    """A DICOM Part 10 file as far as its kind shows: a 128-byte preamble, then ``DICM``."""
    path.write_bytes(bytes(128) + b"DICM" + bytes(64))
    return path


def write_picture_bytes(path: Path) -> Path:
    """A few bytes under a picture's name: only the name decides."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n" if path.suffix == ".png" else b"II*\x00")
    return path


def refusal(path: Path) -> str:
    with pytest.raises(VolumeError) as caught:
        load_volume(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("name", "write", "told"),
    [
        ("scan.mha", write_metaimage, "a .mha volume, not NIfTI"),
        ("scan.nrrd", write_nrrd, "a .nrrd volume, not NIfTI"),
        ("scan.mhd", write_metaimage, "a .mhd volume, not NIfTI"),
    ],
)
def test_an_itk_volume_is_told_to_be_converted_with_simpleitk_keeping_its_geometry(tmp_path, name, write, told):
    # It was told to convert "with dcm2niix for DICOM series", whatever the file was.
    path = write(tmp_path / name)
    message = refusal(path)
    assert f"{path}: {told}" in message and "keeping its geometry" in message
    assert f'sitk.WriteImage(sitk.ReadImage("{path}"), "{tmp_path / "scan.nii.gz"}")' in message
    assert "dcm2niix" not in message and "DICOM" not in message


def test_the_simpleitk_line_of_the_advice_makes_a_nifti_file_with_the_volumes_geometry(tmp_path):
    # SimpleITK is in the testing extra (named in the advice only, not a dependency of the product).
    path = write_metaimage(tmp_path / "scan.mha", spacing=(0.5, 0.5, 2.0), offset=(10.0, -5.0, 3.0))
    command = refusal(path).split("`")[1]  # the one line between backticks, as a user copies it
    words = shlex.split(command)
    assert words[:2] == ["python", "-c"]
    subprocess.run([sys.executable, *words[1:]], check=True)
    volume, meta = load_volume(tmp_path / "scan.nii.gz")
    assert volume.shape == SHAPE and volume.ravel(order="F")[7] == 7
    np.testing.assert_allclose(meta.zooms[:3], (0.5, 0.5, 2.0))
    np.testing.assert_allclose(meta.affine[:3, 3], (-10.0, 5.0, 3.0))  # ITK's LPS origin, in NIfTI's RAS


def test_a_freesurfer_volume_is_told_to_be_converted_with_mri_convert(tmp_path):
    path = write_mgz(tmp_path / "brain.mgz")
    message = refusal(path)
    assert f"{path}: a FreeSurfer volume (.mgz), not NIfTI" in message
    assert f"`mri_convert {path} {tmp_path / 'brain.nii.gz'}`" in message and "dcm2niix" not in message


@pytest.mark.parametrize("name", ["slice.dcm", "SLICE.IMA", "IM0001"])
def test_a_dicom_file_by_name_or_by_its_mark_keeps_the_dcm2niix_advice(tmp_path, name):
    path = write_dicom_mark(tmp_path / name)
    message = refusal(path)
    assert f"{path}: a DICOM file, not NIfTI" in message and f"`dcm2niix -z y {tmp_path}`" in message


@pytest.mark.parametrize("name", ["slice.png", "photo.jpg"])
def test_a_picture_is_told_that_a_3d_volume_is_needed(tmp_path, name):
    path = write_picture_bytes(tmp_path / name)
    message = refusal(path)
    assert "a 2D picture" in message and "napari-action needs a 3D volume as a NIfTI file" in message
    assert "dcm2niix" not in message


def write_tiff_stack(path: Path, pages: np.ndarray) -> Path:
    """A multi-page TIFF, one slice a page, as microscopes write a 3D stack (Pillow: no voxel size in it)."""
    first, *rest = [Image.fromarray(page) for page in pages]
    first.save(path, save_all=True, append_images=rest)
    return path


@pytest.mark.parametrize("name", ["stack.tif", "STACK.TIFF"])
def test_a_tiff_is_told_to_be_converted_stating_its_voxel_size_not_that_a_3d_volume_is_needed(tmp_path, name):
    # A TIFF was told it was "a 2D picture, not a 3D volume": a multi-page TIFF is the 3D stack of a microscope.
    path = write_picture_bytes(tmp_path / name)
    message = refusal(path)
    assert f"{path}: a TIFF file (.{name.split('.')[-1].lower()}), not NIfTI" in message
    assert "reads 3D NIfTI volumes (.nii or .nii.gz) and zarr stores" in message
    assert "stating its voxel size" in message and "dcm2niix" not in message
    assert "a 2D picture (" not in message and "needs a 3D volume" not in message


def test_the_simpleitk_line_of_the_tiff_advice_makes_a_nifti_file_of_the_stack_with_the_voxel_size_stated(tmp_path):
    pages = np.arange(3 * 6 * 7, dtype=np.uint16).reshape(3, 6, 7)  # 3 pages of 6 rows of 7 columns
    path = write_tiff_stack(tmp_path / "stack.tif", pages)
    command = refusal(path).split("`")[1]  # the one line between backticks, as a user copies it
    assert "DX, DY, DZ" in command  # the voxel size, which the user states: unset, the line stops (NameError)
    words = shlex.split(command.replace("DX, DY, DZ", "0.5, 0.25, 2.0"))
    assert words[:2] == ["python", "-c"]
    subprocess.run([sys.executable, *words[1:]], check=True)
    volume, meta = load_volume(tmp_path / "stack.nii.gz")
    assert volume.shape == (7, 6, 3)  # x along a row, y down the columns, z from page to page
    np.testing.assert_array_equal(volume, pages.transpose(2, 1, 0))
    np.testing.assert_allclose(meta.zooms[:3], (0.5, 0.25, 2.0))


def test_any_other_file_is_plainly_not_nifti_with_the_formats_read(tmp_path):
    path = write_npy(tmp_path / "volume.npy")
    message = refusal(path)
    assert f"{path}: not a NIfTI file (expected a name ending in .nii or .nii.gz)" in message
    assert "napari-action reads 3D NIfTI volumes (.nii or .nii.gz) and zarr stores" in message
    assert "dcm2niix" not in message
