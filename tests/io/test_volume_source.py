"""Volumes read slice by slice: uncompressed NIfTI through a memory map, zarr arrays with their geometry."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from napari_action.cli.convert import convert_to_zarr
from napari_action.io.label_map import load_label_map
from napari_action.io.nifti import NonFiniteVoxelsError, VolumeError, load_volume
from napari_action.io.volume_source import (
    ArraySlices,
    NiftiSlices,
    ZarrSlices,
    is_lazy,
    open_volume_source,
    zarr_attrs,
)
from tests.helpers.engine import disc_volume, write_nifti


def test_uncompressed_nifti_slices_equal_the_loaded_volume_along_every_axis(tmp_path):
    image, _ = disc_volume(1)
    path = write_nifti(tmp_path / "scan.nii", image)
    source = open_volume_source(path)
    volume, meta = load_volume(path)
    assert isinstance(source, NiftiSlices) and is_lazy(source) and source.meta == meta
    for axis in range(3):
        expected = np.moveaxis(volume, axis, 0)[3:7]
        np.testing.assert_array_equal(source.read(axis, 3, 7), expected)


def test_scaled_big_endian_voxels_read_as_nibabel_scales_them(tmp_path):
    raw = np.arange(6 * 5 * 4, dtype=">i2").reshape(6, 5, 4)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.5, 10.0)
    path = tmp_path / "scaled.nii"
    nib.save(img, path)
    volume, _ = load_volume(path)  # scaled: float32
    block = NiftiSlices(path).read(2, 1, 3)
    assert block.dtype == np.float32
    np.testing.assert_array_equal(block, np.moveaxis(volume, 2, 0)[1:3])


def test_nan_voxels_are_found_when_their_slices_are_read(tmp_path):
    image, _ = disc_volume(1)
    image[4, 5, 6] = np.nan
    path = write_nifti(tmp_path / "holes.nii", image)
    source = NiftiSlices(path)
    assert np.isfinite(source.read(2, 0, 6)).all()
    with pytest.raises(NonFiniteVoxelsError, match=r"holes.nii: 1 voxels of slices 6-7 along axis 2"):
        source.read(2, 6, 8)
    assert NiftiSlices(path, nan_to_zero=True).read(2, 6, 7)[0, 4, 5] == 0


def test_header_refusals_apply_before_any_voxel_is_read(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "series.nii")
    with pytest.raises(VolumeError, match="4D"):
        open_volume_source(tmp_path / "series.nii")
    path = write_nifti(tmp_path / "cut.nii", disc_volume(1)[0])
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(VolumeError, match="truncated"):
        open_volume_source(path)


def test_compressed_files_are_held_whole_in_their_stored_type(tmp_path):
    path = write_nifti(tmp_path / "scan.nii.gz", disc_volume(1)[0].astype(np.int16))
    source = open_volume_source(path)
    assert isinstance(source, ArraySlices) and not is_lazy(source) and source.volume.dtype == np.int16


def test_a_converted_zarr_array_keeps_voxels_and_geometry(tmp_path):
    image, _ = disc_volume(1)
    path = write_nifti(tmp_path / "scan.nii.gz", image)
    store = convert_to_zarr(path, tmp_path / "scan.zarr", axis=2, chunk_slices=4)
    source = open_volume_source(store)
    volume, meta = load_volume(path)
    assert isinstance(source, ZarrSlices) and is_lazy(source)
    assert source.array.chunks == (32, 32, 4) and source.array.dtype == np.float32
    assert source.meta == meta
    np.testing.assert_array_equal(source.read(0, 10, 12), np.moveaxis(volume, 0, 0)[10:12])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


def test_a_damaged_chunk_read_slice_by_slice_is_a_volume_error_naming_the_store(tmp_path):
    # zarr's codec raised RuntimeError: `train --image damaged.zarr` ended in a traceback, `predict`
    # printed "RuntimeError: Zstd decompression error" without saying what to do.
    image, _ = disc_volume(1)
    store = convert_to_zarr(
        write_nifti(tmp_path / "scan.nii.gz", image), tmp_path / "scan.zarr", axis=2, chunk_slices=4
    )
    chunk = next(p for p in sorted(store.rglob("*")) if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(b"not a compressed chunk")
    with pytest.raises(VolumeError, match="the store is damaged or incomplete: write it again") as refused:
        open_volume_source(store).read(2, 0, 4)
    assert str(refused.value).startswith(f"{store}: a chunk of the zarr store cannot be read")


def test_a_zarr_array_without_geometry_gets_1_mm_voxels_and_a_warning(tmp_path, caplog):
    import zarr

    zarr.create_array(str(tmp_path / "plain.zarr"), data=np.ones((4, 5, 6), np.uint8))
    with caplog.at_level(logging.WARNING):
        meta = open_volume_source(tmp_path / "plain.zarr").meta
    assert "no napari-action geometry" in caplog.text
    np.testing.assert_array_equal(meta.affine, np.eye(4))
    zarr.create_array(str(tmp_path / "flat.zarr"), data=np.ones((4, 5), np.uint8))
    with pytest.raises(VolumeError, match="needs one 3D volume"):
        open_volume_source(tmp_path / "flat.zarr")
    other = load_volume(write_nifti(tmp_path / "x.nii", disc_volume(1)[0]))[1]
    zarr.create_array(str(tmp_path / "wrong.zarr"), data=np.ones((4, 5, 6), np.uint8), attributes=zarr_attrs(other))
    with pytest.raises(VolumeError, match="its geometry says"):
        open_volume_source(tmp_path / "wrong.zarr")


def _folder(path: Path, *entries: str) -> Path:
    """A folder named as a zarr store holding the empty files (and folders, ending in /) named."""
    path.mkdir()
    for entry in entries:
        (path / entry).mkdir() if entry.endswith("/") else (path / entry).write_text("")
    return path


def _refusal(path: Path, read=open_volume_source) -> str:
    with pytest.raises(VolumeError) as refused:
        read(path)
    message = str(refused.value)
    # It was zarr's own wording: "ArrayNotFoundError: No array found in store file://…", "JSONDecodeError: …".
    assert "Error" not in message and "file://" not in message and "No array found" not in message
    return message


@pytest.mark.parametrize("read", [open_volume_source, load_label_map])
def test_an_empty_folder_named_as_a_zarr_store_is_told_to_hold_no_zarr_array_and_what_to_give(tmp_path, read):
    store = _folder(tmp_path / "scan.zarr")
    message = _refusal(store, read)
    assert message.startswith(f"{store} holds no zarr array: the folder is empty.")
    assert "napari-action convert" in message and "a NIfTI file (.nii or .nii.gz)" in message


def test_a_zarr_named_folder_without_zarr_metadata_names_what_it_holds(tmp_path):
    store = _folder(tmp_path / "scan.zarr", "notes.txt", "c/", "scan.nii.gz")
    message = _refusal(store)
    assert message.startswith(f"{store} holds no zarr array: it holds c/, notes.txt, scan.nii.gz and no zarr.json")


def test_a_zarr_store_whose_metadata_is_not_json_is_told_it_is_damaged_and_to_write_it_again(tmp_path):
    store = _folder(tmp_path / "scan.zarr")
    (store / "zarr.json").write_text('{"shape": [4, 5')  # a write cut short
    message = _refusal(store)
    assert message.startswith(f"{store} holds no readable zarr array: its metadata file zarr.json is not valid JSON")
    assert "write it again" in message


def test_a_zarr_store_whose_metadata_zarr_cannot_read_is_told_it_is_damaged(tmp_path):
    store = tmp_path / "scan.zarr"
    zarr.create_array(str(store), data=np.zeros((4, 5, 6), np.float32))
    metadata = json.loads((store / "zarr.json").read_text())
    del metadata["shape"]
    (store / "zarr.json").write_text(json.dumps(metadata))
    message = _refusal(store)
    assert message.startswith(f"{store} holds no readable zarr array: its metadata file zarr.json is not")
    assert "write it again" in message


def test_a_zarr_group_is_told_to_hold_no_array(tmp_path):
    store = tmp_path / "scan.zarr"
    zarr.open_group(str(store), mode="w")
    message = _refusal(store)
    assert message.startswith(f"{store} holds a zarr group, not one array;")
    assert "one 3D array per store, as `napari-action convert` writes it" in message
