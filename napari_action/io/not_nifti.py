"""A file that is not NIfTI by name, told apart by what it is, with the way to a NIfTI file that fits it.

One source of this advice for every front end: the command line, the Python API and the napari widget all read
images through :func:`~napari_action.io.nifti.load_volume`, which refuses such a file with
:func:`not_nifti_message`. The tools named are only advice: none is a dependency of napari-action.
"""

from __future__ import annotations

from pathlib import Path

#: A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
DICOM_MARK, DICOM_MARK_AT = b"DICM", 128
DICOM_SUFFIXES = (".dcm", ".ima")
#: Volumes SimpleITK reads with their geometry (voxel size, origin, direction): MetaImage, NRRD, GIPL, MINC, VTK.
_ITK_VOLUME_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".gipl", ".gipl.gz", ".mnc", ".vtk")
#: FreeSurfer's volumes.
_MGH_SUFFIXES = (".mgz", ".mgh")
#: Formats of one picture: at best a stack of slices without voxel size or orientation.
_PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: TIFF: often a 3D stack, one slice a page (microscopes, some CT exports), mostly without a voxel size.
_TIFF_SUFFIXES = (".tif", ".tiff")
_ACCEPTED = "napari-action reads 3D NIfTI volumes (.nii or .nii.gz) and zarr stores (folders ending in .zarr)"


def not_nifti_message(path: Path) -> str:
    """What ``path``, not NIfTI by name, is and how to get a NIfTI file from it (naming it)."""
    suffix = _suffix(path)
    if suffix in _ITK_VOLUME_SUFFIXES:
        return _itk_volume_message(path, suffix)
    if suffix in _MGH_SUFFIXES:
        return (
            f"{path}: a FreeSurfer volume ({suffix}), not NIfTI; {_ACCEPTED}. Convert it keeping its geometry, "
            f"e.g. `mri_convert {path} {_as_nifti(path, suffix)}` (FreeSurfer), and give that file."
        )
    if is_dicom_file(path):
        return (
            f"{path}: a DICOM file, not NIfTI; {_ACCEPTED}. Convert its series (the folder holding it) to one NIfTI "
            f"file first, e.g. `dcm2niix -z y {path.parent}`, and give that file."
        )
    if suffix in _TIFF_SUFFIXES:
        return _tiff_message(path, suffix)
    if suffix in _PICTURE_SUFFIXES:
        return (
            f"{path}: a 2D picture ({suffix}), not a 3D volume; napari-action needs a 3D volume as a NIfTI file "
            "(.nii or .nii.gz). Give the scan the picture was taken from, or stack its slices into one 3D NIfTI "
            "file with their voxel size."
        )
    return f"{path}: not a NIfTI file (expected a name ending in .nii or .nii.gz); {_ACCEPTED}."


def is_dicom_file(path: Path) -> bool:
    """DICOM by name (``.dcm``, ``.ima``, ``DICOMDIR``) or by the mark scanners write into files named ``IM0001``."""
    if path.name.lower().endswith(DICOM_SUFFIXES) or path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as stream:
            stream.seek(DICOM_MARK_AT)
            return stream.read(len(DICOM_MARK)) == DICOM_MARK
    except OSError:  # missing or unreadable: nothing tells it is DICOM
        return False


def _itk_volume_message(path: Path, suffix: str) -> str:
    # ReadImage and WriteImage carry voxel size, origin and direction over; the one line runs in any shell.
    one_line = (
        f"python -c 'import SimpleITK as sitk; "
        f'sitk.WriteImage(sitk.ReadImage("{path}"), "{_as_nifti(path, suffix)}")\''
    )
    return (
        f"{path}: a {suffix} volume, not NIfTI; {_ACCEPTED}. Convert it keeping its geometry, e.g. with "
        f"SimpleITK (pip install SimpleITK): `{one_line}`, and give that file."
    )


def _tiff_message(path: Path, suffix: str) -> str:
    # SimpleITK reads a multi-page TIFF as one 3D image, but its voxel size is absent or in the wrong unit
    # (dots per inch) as often as not: the user states it. DX, DY, DZ left as they are stop the line
    # (NameError) instead of writing a volume of 1 mm voxels that nothing would question.
    one_line = (
        f'python -c \'import SimpleITK as sitk; image = sitk.ReadImage("{path}"); '
        f'image.SetSpacing((DX, DY, DZ)); sitk.WriteImage(image, "{_as_nifti(path, suffix)}")\''
    )
    return (
        f"{path}: a TIFF file ({suffix}), not NIfTI; {_ACCEPTED}. If it holds a 3D stack (one slice a page), "
        f"convert it stating its voxel size, e.g. with SimpleITK (pip install SimpleITK): `{one_line}`, "
        "replacing DX, DY, DZ by the voxel size in mm along a row, down a column and from page to page "
        "(a TIFF seldom holds it), and give that file. A single page is a 2D picture, not a volume."
    )


def _suffix(path: Path) -> str:
    """The extension that tells the format, lower case; ``.gipl.gz`` whole."""
    name = path.name.lower()
    return ".gipl.gz" if name.endswith(".gipl.gz") else Path(name).suffix


def _as_nifti(path: Path, suffix: str) -> Path:
    """``path`` with its extension replaced by ``.nii.gz``, where the converted file can go."""
    return path.with_name(path.name[: -len(suffix)] + ".nii.gz")
