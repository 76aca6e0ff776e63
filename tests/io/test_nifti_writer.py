"""Label maps written as NIfTI: the smallest integer type, refusals before writing, atomic writes."""

from __future__ import annotations

import os
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_action.io.nifti import VolumeError, load_labels, load_volume
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta
from napari_action.label_values import smallest_label_dtype


@pytest.fixture
def meta(nibabel_data) -> VolumeMeta:
    return load_volume(nibabel_data / "anatomical.nii")[1]


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [(0, 3, np.uint8), (0, 255, np.uint8), (0, 300, np.int16), (-5, 7, np.int16),
     (0, 40_000, np.uint16), (0, 70_000, np.int32), (-70_000, 0, np.int32), (0, 2**31, np.int64)],
)  # fmt: skip
def test_writes_smallest_integer_dtype(meta, tmp_path, low, high, dtype):
    labels = np.zeros(meta.shape, np.int64)
    labels[0, 0, 0], labels[-1, -1, -1] = low, high
    assert smallest_label_dtype(labels) == dtype
    out = save_labels(tmp_path / "l.nii.gz", labels, meta)
    assert nib.load(out).get_data_dtype() == dtype
    np.testing.assert_array_equal(load_labels(out)[0], labels)


def test_bool_labels_are_written_as_uint8(meta, tmp_path):
    out = save_labels(tmp_path / "mask.nii", np.ones(meta.shape, bool), meta)
    assert nib.load(out).get_data_dtype() == np.uint8


def test_refuses_to_overwrite_unless_asked(meta, tmp_path):
    target = tmp_path / "seg.nii.gz"
    save_labels(target, np.zeros(meta.shape, np.uint8), meta)
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match=r"seg\.nii\.gz already exists; .*overwrite=True"):
        save_labels(target, np.ones(meta.shape, np.uint8), meta)
    assert target.read_bytes() == before
    save_labels(target, np.ones(meta.shape, np.uint8), meta, overwrite=True)
    assert load_labels(target)[0].min() == 1


def test_bad_labels_raise_before_anything_is_written(meta, tmp_path):
    expected = r"x\.nii\.gz: labels have shape \(3, 3, 3\) .*has shape \(33, 41, 25\)"
    with pytest.raises(VolumeError, match=expected):
        save_labels(tmp_path / "x.nii.gz", np.zeros((3, 3, 3), np.uint8), meta)
    with pytest.raises(VolumeError, match="labels must be whole numbers"):
        save_labels(tmp_path / "x.nii.gz", np.full(meta.shape, 0.5), meta)
    with pytest.raises(VolumeError, match=r"x\.tif: label files must end in \.nii\.gz or \.nii"):
        save_labels(tmp_path / "x.tif", np.zeros(meta.shape, np.uint8), meta)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        save_labels(tmp_path / "no" / "x.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    assert list(tmp_path.iterdir()) == []


def test_geometry_that_is_not_a_volume_meta_is_refused_saying_where_one_comes_from(meta, tmp_path):
    # Raised AttributeError: 'numpy.ndarray' object has no attribute 'shape' / 'path' (an affine passed as meta).
    labels = np.zeros(meta.shape, np.uint8)
    for wrong in (meta.affine, None):
        with pytest.raises(TypeError, match=r"the second value load_volume returns\), got a .*VolumeMeta\.from_affine"):
            save_labels(tmp_path / "x.nii.gz", labels, wrong)
    assert list(tmp_path.iterdir()) == []
    out = save_labels(tmp_path / "x.nii.gz", labels, VolumeMeta.from_affine(meta.affine, labels.shape))
    np.testing.assert_allclose(nib.load(out).affine, meta.affine, atol=1e-5)


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX-only")
def test_failed_write_leaves_existing_file_untouched(meta, tmp_path):
    import resource
    import signal

    target = save_labels(tmp_path / "seg.nii.gz", np.zeros(meta.shape, np.uint8), meta)
    before = target.read_bytes()
    noisy = np.random.default_rng(0).integers(0, 250, meta.shape)  # incompressible: > 4 kB
    # A real write failure: the kernel refuses to grow any file beyond 4 kB (EFBIG).
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            save_labels(target, noisy, meta, overwrite=True)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["seg.nii.gz"]  # no temporary file left


def test_written_file_is_reproducible_with_normal_permissions(meta, tmp_path):
    labels = np.random.default_rng(1).integers(0, 4, meta.shape)
    first = save_labels(tmp_path / "a.nii.gz", labels, meta).read_bytes()
    assert save_labels(tmp_path / "b.nii.gz", labels, meta).read_bytes() == first
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "a.nii.gz").stat().st_mode & 0o777 == 0o666 & ~umask
