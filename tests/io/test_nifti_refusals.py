"""Files ``load_volume`` must refuse: each message names the file, says what is wrong and what to do.

Every file is real (written by nibabel, or a real header with too few bytes behind it), and every
refusal leaves the file exactly as it was.
"""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.io.nifti import NonFiniteVoxelsError, VolumeError, load_labels, load_volume
from napari_action.system_memory import available_memory_bytes

AFFINE = np.diag([0.8, 0.8, 3.0, 1.0])


def _refused(path: Path, match: str, loader=load_volume) -> VolumeError:
    """Load ``path``, expect a refusal matching ``match``, and check the file was left alone."""
    before = path.read_bytes()
    with pytest.raises(VolumeError, match=match) as caught:
        loader(path)
    assert path.read_bytes() == before
    return caught.value


def _header_only(path: Path, shape: tuple[int, ...], dtype: type, slope: float | None = None) -> Path:
    """A real NIfTI-1 header promising ``shape`` voxels, followed by no voxels at all."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_slope_inter(slope, None if slope is None else 0.0)
    header["vox_offset"] = 352  # where a single-file NIfTI-1 without extensions keeps its voxels
    payload = header.binaryblock + b"\x00" * 4  # the 4 bytes after the header say "no extensions"
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
    return path


def test_complex_voxels_are_refused_with_the_magnitude_as_remedy(tmp_path):
    data = np.ones((6, 5, 4), np.complex64) * (1 + 2j)
    path = tmp_path / "phase.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    _refused(path, r"phase\.nii\.gz: the voxels are complex numbers \(complex64\).*magnitude.*np\.abs")


@pytest.mark.parametrize("channels", ["RGB", "RGBA"])
def test_colour_images_are_refused_with_a_grey_channel_as_remedy(tmp_path, channels):
    data = np.zeros((6, 5, 4), dtype=[(name, np.uint8) for name in channels])  # nibabel's RGB24 / RGBA32
    path = tmp_path / "photo.nii"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    assert nib.load(path).get_data_dtype().names == tuple(channels)
    expected = rf"photo\.nii: the image is in colour \({len(channels)} channels, R, G, B.*one grey channel"
    _refused(path, expected)


@pytest.mark.parametrize(
    ("header", "voxels", "opened"),
    [("scan.hdr", "scan.img", "scan.img"), ("scan.hdr", "scan.img", "scan.hdr"), ("SCAN.HDR", "SCAN.IMG", "SCAN.IMG")],
)
def test_a_nifti_pair_is_refused_as_a_pair_with_the_conversion(tmp_path, header, voxels, opened):
    # FSL's NIFTI_PAIR and SPM write .hdr/.img: "not a NIfTI file ... e.g. with dcm2niix for DICOM" was
    # untrue and pointed at the wrong tool.
    nib.save(nib.Nifti1Pair(np.zeros((4, 5, 6), np.float32), AFFINE), tmp_path / "pair.img")
    (tmp_path / "pair.hdr").rename(tmp_path / header)
    (tmp_path / "pair.img").rename(tmp_path / voxels)
    error = str(_refused(tmp_path / opened, "one file of a NIfTI-1 file pair"))
    assert f"fslchfiletype NIFTI_GZ {tmp_path / header}" in error and "keeps its geometry" in error
    assert "DICOM" not in error


def test_an_analyze_image_is_refused_saying_it_records_no_orientation(tmp_path):
    nib.save(nib.AnalyzeImage(np.zeros((4, 5, 6), np.float32), AFFINE), tmp_path / "old.img")
    error = _refused(tmp_path / "old.img", "one file of an Analyze 7.5 image")
    assert f"nibabel.load('{tmp_path / 'old.hdr'}')" in str(error) and "orientation" in str(error)


def test_an_envi_header_is_no_pair(tmp_path):
    (tmp_path / "cube.hdr").write_text("ENVI\nsamples = 4\n")
    (tmp_path / "cube.img").write_bytes(bytes(64))
    _refused(tmp_path / "cube.img", "not a NIfTI file")


def test_a_dimension_of_size_zero_names_the_header_dims(tmp_path):
    path = tmp_path / "empty.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((24, 0, 12), np.float32), AFFINE), path)
    expected = r"empty\.nii\.gz: the header's dim field says the image is 24 x 0 x 12 voxels: dimension 2 has size 0"
    error = _refused(path, expected)
    assert "no voxels" in str(error) and "re-export" in str(error)


def test_truncated_uncompressed_file_is_refused_before_allocating(tmp_path):
    # 108 TB promised, 352 bytes present: refused from the file size, no allocation attempted.
    path = _header_only(tmp_path / "huge.nii", (30000, 30000, 30000), np.float32)
    expected = (
        r"huge\.nii: the voxel data cannot be read: the header describes \(30000, 30000, 30000\) voxels of "
        r"float32 that end at byte 108,000,000,000,352, but the file holds only 352 bytes\. "
        r"The file is truncated .*re-export or re-download it"
    )
    _refused(path, expected)


def test_a_volume_larger_than_memory_is_refused_before_reading(tmp_path):
    # A compressed file's size says nothing, so the memory check speaks: 108 TB fit on no machine.
    path = _header_only(tmp_path / "huge.nii.gz", (30000, 30000, 30000), np.float32)
    expected = (
        r"huge\.nii\.gz: the image is too large for this machine's memory: its \(30000, 30000, 30000\) voxels "
        r"need 108,000\.0 GB, [\d,.]+ GB available\. Crop or downsample it, or use a machine with more memory\."
    )
    _refused(path, expected)


def test_memory_needed_counts_scaled_voxels_as_float32(tmp_path):
    # 1 byte per stored voxel, but a scaled file loads as float32: 4 bytes each.
    path = _header_only(tmp_path / "scaled.nii.gz", (20000, 20000, 20000), np.int8, slope=0.5)
    _refused(path, r"scaled\.nii\.gz: the image is too large .* need 32,000\.0 GB")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc/self/status are Linux-only")
def test_running_out_of_memory_while_reading_gives_the_same_advice(tmp_path):
    import resource

    path = tmp_path / "big.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((1000, 1000, 40), np.float32), AFFINE), path)  # 160 MB of voxels
    # A real allocation failure: the kernel refuses this process more than 64 MB beyond what it maps now.
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_mapped_bytes() + 64 * 2**20, old_limit[1]))
    try:
        with pytest.raises(VolumeError) as caught:
            load_volume(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old_limit)
    assert str(caught.value) == (
        f"{path}: the image is too large for this machine's memory: its (1000, 1000, 40) voxels need 0.2 GB, "
        "more than is free now. Crop or downsample it, or use a machine with more memory."
    )


def _mapped_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmSize in /proc/self/status")


@pytest.mark.skipif(not hasattr(os, "sysconf"), reason="no sysconf to compare with")
def test_available_memory_is_positive_and_at_most_the_physical_memory():
    available = available_memory_bytes()
    assert available is not None and available > 0
    assert available <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.fixture
def holes(tmp_path) -> Path:
    data = np.ones((6, 5, 4), np.float32)
    data[0, 0, 0], data[1, 1, 1] = np.nan, -np.inf
    path = tmp_path / "holes.nii.gz"
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path


def test_non_finite_error_keeps_the_problem_apart_from_the_advice(holes):
    error = _refused(holes, r"holes\.nii\.gz: 2 of 120 voxels are NaN or infinite.*nan_policy='zero'")
    assert isinstance(error, NonFiniteVoxelsError)
    reworded = str(error.with_advice("Pass --flag."))
    assert reworded == f"{holes}: 2 of 120 voxels are NaN or infinite; napari-action needs finite values. Pass --flag."


def test_labels_with_nan_advise_fixing_the_labels_not_a_load_option(holes):
    error = _refused(holes, r"holes\.nii\.gz: 2 of 120 voxels are NaN or infinite", loader=load_labels)
    assert "Set those voxels to 0 (not painted) or to their class" in str(error)
    assert "nan_policy" not in str(error)


def test_fractional_labels_are_refused_as_an_intensity_image(tmp_path):
    path = tmp_path / "probabilities.nii.gz"
    nib.save(nib.Nifti1Image(np.full((6, 5, 4), 0.25, np.float32), AFFINE), path)
    _refused(path, r"probabilities\.nii\.gz: labels must be whole numbers.*intensity image", loader=load_labels)
