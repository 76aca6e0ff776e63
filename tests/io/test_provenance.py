"""What a mask says about where it came from: the header's ``descrip`` line and the JSON sidecar beside it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import nibabel as nib
import numpy as np
import pytest

from napari_action import __version__
from napari_action.io.label_writers import write_label_volume
from napari_action.io.nifti import load_volume
from napari_action.io.nifti_writer import save_labels
from napari_action.io.provenance import local_timestamp, mask_descrip, sidecar_path, write_sidecar
from napari_action.io.session_store import HashCache, file_sha256


def test_the_header_line_names_the_version_and_the_first_12_digits_of_the_model():
    assert mask_descrip("0123456789abcdef") == f"napari-action {__version__}, model 0123456789ab"
    assert mask_descrip(None) == f"napari-action {__version__}"  # a mask made by hand: no model to name


@pytest.mark.parametrize("name", ["labels.nii.gz", "labels.nii"])
def test_only_descrip_differs_from_the_header_written_before(nibabel_data, tmp_path, name):
    # The source geometry is written back bit for bit: the line is the one field that changes.
    _, meta = load_volume(nibabel_data / "anatomical.nii")
    labels = np.zeros(meta.shape, np.uint8)
    plain = nib.load(save_labels(tmp_path / f"plain_{name}", labels, meta)).header
    named = nib.load(save_labels(tmp_path / name, labels, meta, descrip=mask_descrip("0123456789abcdef"))).header
    assert named["descrip"].item().decode() == f"napari-action {__version__}, model 0123456789ab"
    assert plain["descrip"].item() == b"napari-action labels"
    for field in plain:
        if field != "descrip":
            np.testing.assert_array_equal(named[field], plain[field], err_msg=field)


def test_a_long_line_is_cut_to_the_80_bytes_of_the_field_at_a_whole_character(tmp_path):
    meta = load_volume_meta_of_shape((4, 4, 2))
    line = "x" * 79 + "é and more"  # "é" takes bytes 80 and 81: it goes whole
    header = nib.load(save_labels(tmp_path / "m.nii", np.zeros((4, 4, 2), np.uint8), meta, descrip=line)).header
    assert header["descrip"].item() == b"x" * 79


def test_slice_by_slice_writers_write_the_line_too(tmp_path):
    meta = load_volume_meta_of_shape((4, 4, 2))
    line = mask_descrip("fedcba9876543210")
    for name in ("slices.nii", "memory.nii.gz"):
        path = write_label_volume(tmp_path / name, np.ones((4, 4, 2), np.uint8), meta, 2, descrip=line)
        assert nib.load(path).header["descrip"].item().decode() == line


def load_volume_meta_of_shape(shape):
    from napari_action.io.volume_meta import VolumeMeta

    return VolumeMeta.from_affine(np.eye(4), shape)


def test_the_sidecar_sits_beside_its_mask_and_replaces_a_file_only_when_told(tmp_path):
    assert sidecar_path(tmp_path / "liver_action.nii.gz") == tmp_path / "liver_action.json"
    assert sidecar_path(tmp_path / "liver_action.nii") == tmp_path / "liver_action.json"
    path = tmp_path / "liver_action.json"
    write_sidecar(path, {"mask": "liver_action.nii.gz", "model": None, "edited_voxels": 3})
    text = path.read_text()
    assert json.loads(text) == {"edited_voxels": 3, "mask": "liver_action.nii.gz", "model": None}
    assert text.index('"edited_voxels"') < text.index('"mask"') < text.index('"model"')  # sorted, one key a line
    with pytest.raises(FileExistsError):
        write_sidecar(path, {"mask": "other"})
    assert path.read_text() == text
    write_sidecar(path, {"mask": "other"}, overwrite=True)
    assert json.loads(path.read_text()) == {"mask": "other"}


def test_the_export_time_carries_the_local_offset():
    moment = datetime(2025, 3, 4, 15, 20, 7, 123456)  # a local time, as the clock reads it
    offset = moment.astimezone().utcoffset()
    sign, minutes = "-" if offset < timedelta(0) else "+", abs(int(offset.total_seconds())) // 60
    assert local_timestamp(moment) == f"2025-03-04T15:20:07{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    assert datetime.fromisoformat(local_timestamp()).utcoffset() is not None


def test_a_hash_is_known_only_once_computed_and_while_the_file_is_unchanged(tmp_path):
    # An export names a source file's hash only when a session save has computed it (no reading a large scan).
    path = tmp_path / "scan.nii"
    path.write_bytes(b"voxels")
    hashes = HashCache()
    assert hashes.known(path) is None
    assert hashes.sha256(path) == file_sha256(path) == hashes.known(path)
    path.write_bytes(b"other voxels")
    assert hashes.known(path) is None
    path.unlink()
    assert hashes.known(path) is None
