"""napari-action's zarr stores (``convert``, ``predict --output-format zarr``) opened in a real napari viewer."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import zarr
from napari.utils.notifications import notification_manager

from napari_action._napari import reader
from napari_action._napari.layers import layer_image_data
from napari_action._napari.reader import (
    napari_get_reader,
    open_nifti,
    open_zarr,
    read_zarr,
    refuse_session_store,
)
from napari_action.cli.main import main
from napari_action.io import label_map
from napari_action.io.label_writers import write_label_volume
from napari_action.io.nifti import NonFiniteVoxelsWarning, VolumeError, load_labels, load_volume
from napari_action.io.session_store import Session, SessionVolume, save_session
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import ZARR_ATTRS_KEY, zarr_attrs
from tests.helpers.gui import PLUGIN, messages_since


def _convert(source, store):
    assert main(["convert", "--image", str(source), "--out", str(store), "--axis", "2"]) == 0
    return store


def _mask(shape) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[1:4, 2:6, 1:3] = 2
    return labels


@pytest.fixture
def scan_store(nibabel_data, tmp_path):
    return _convert(nibabel_data / "anatomical.nii", tmp_path / "scan.zarr")


def test_reader_claims_only_the_stores_napari_action_wrote(scan_store, tmp_path):
    assert napari_get_reader(str(scan_store)) is open_zarr
    assert napari_get_reader(scan_store) is open_zarr  # napari passes str or Path
    foreign = tmp_path / "foreign.zarr"
    zarr.create_array(str(foreign), data=np.ones((3, 4, 5), np.uint8))
    group = tmp_path / "group.zarr"
    zarr.open_group(str(group), mode="w", attributes={ZARR_ATTRS_KEY: {"kind": "image"}})
    folder = tmp_path / "plain folder"
    folder.mkdir()
    for other in (foreign, group, folder, tmp_path / "missing.zarr", [scan_store, foreign]):
        assert napari_get_reader(other) is None, other
    assert napari_get_reader([tmp_path / "a.nii"]) is open_nifti
    version_2 = tmp_path / "v2.zarr"  # zarr format 2 keeps its attributes in .zattrs
    meta = VolumeMeta.from_affine(np.eye(4), (3, 4, 5))
    zarr.create_array(str(version_2), data=np.ones((3, 4, 5), np.uint8), zarr_format=2, attributes=zarr_attrs(meta))
    assert napari_get_reader(version_2) is open_zarr


def test_converted_scan_opens_like_its_nifti_and_keeps_the_geometry(make_napari_viewer, nibabel_data, scan_store):
    viewer = make_napari_viewer()
    (from_store,) = viewer.open(scan_store, plugin=PLUGIN)
    (from_file,) = viewer.open(nibabel_data / "anatomical.nii", plugin=PLUGIN)
    data, meta = load_volume(nibabel_data / "anatomical.nii")
    assert from_store._type_string == "image" and from_store.name == "scan"
    np.testing.assert_array_equal(from_store.data, data)
    np.testing.assert_array_equal(from_store.affine.affine_matrix, from_file.affine.affine_matrix)
    assert VolumeMeta.from_dict(from_store.metadata["napari_action"]).affine.tolist() == meta.affine.tolist()


def test_predicted_zarr_mask_opens_as_labels_to_edit_and_saves_with_the_source_geometry(
    make_napari_viewer, nibabel_data, tmp_path
):
    source = nibabel_data / "anatomical.nii"
    _, meta = load_volume(source)
    store = write_label_volume(tmp_path / "scan_action.zarr", _mask(meta.shape), meta, axis=2)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(store, plugin=PLUGIN)
    assert layer._type_string == "labels" and layer.name == "scan_action"
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), 5)  # painting works: held in memory
    (written,) = layer.save(str(tmp_path / "corrected.nii.gz"), plugin=PLUGIN)

    saved, saved_meta = load_labels(written)
    expected = _mask(meta.shape)
    expected[0, 0, 0] = 5
    np.testing.assert_array_equal(saved, expected)
    np.testing.assert_array_equal(saved_meta.affine, meta.affine)
    assert nib.load(written).header.get_sform(coded=True)[1] == nib.load(source).header.get_sform(coded=True)[1]
    # The store itself is untouched by the edit.
    np.testing.assert_array_equal(zarr.open_array(str(store), mode="r")[...], _mask(meta.shape))


def test_a_scan_larger_than_the_free_memory_stays_on_disk_and_trains_from_there(
    make_napari_viewer, scan_store, monkeypatch
):
    monkeypatch.setattr(reader, "available_memory_bytes", lambda: 1024)  # a machine with 1 kB free
    viewer = make_napari_viewer()
    (layer,) = viewer.open(scan_store, plugin=PLUGIN)
    assert isinstance(layer.data, zarr.Array) and layer._type_string == "image"
    assert layer_image_data(layer) is layer.data  # the trainer reads it a slice at a time too
    np.testing.assert_array_equal(np.asarray(layer.data[:, :, 3]), zarr.open_array(str(scan_store))[:, :, 3])


def test_a_mask_store_larger_than_the_free_memory_is_refused_with_what_it_needs(
    make_napari_viewer, nibabel_data, tmp_path, monkeypatch
):
    _, meta = load_volume(nibabel_data / "anatomical.nii")
    store = write_label_volume(tmp_path / "scan_action.zarr", _mask(meta.shape), meta, axis=2)
    monkeypatch.setattr(label_map, "available_memory_bytes", lambda: 1024)  # a machine with 1 kB free
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    assert viewer.open(store, plugin=PLUGIN) == []  # refused in a notification, not raised: napari goes on
    (message,) = messages_since(before, "error")
    assert "too large for this machine's memory" in message
    assert message.endswith("use a machine with more memory. A label map opens whole, to be painted on.")
    assert len(viewer.layers) == 0
    with pytest.raises(VolumeError, match="too large for this machine's memory"):
        read_zarr(store)


def test_a_store_written_before_its_kind_was_recorded_is_judged_by_its_values(tmp_path):
    meta = VolumeMeta.from_affine(np.diag([2.0, 2.0, 3.0, 1.0]), (6, 7, 5))
    attributes = zarr_attrs(meta)
    del attributes[ZARR_ATTRS_KEY]["kind"]
    zarr.create_array(str(tmp_path / "old_action.zarr"), data=_mask((6, 7, 5)), attributes=attributes)
    scan = np.random.default_rng(0).normal(size=(6, 7, 5)).astype(np.float32)
    zarr.create_array(str(tmp_path / "old.zarr"), data=scan, attributes=attributes)

    (mask_layer,), (scan_layer,) = read_zarr(tmp_path / "old_action.zarr"), read_zarr(tmp_path / "old.zarr")
    assert mask_layer[2] == "labels" and scan_layer[2] == "image"
    np.testing.assert_array_equal(scan_layer[1]["affine"], meta.affine)


def test_nan_voxels_of_a_store_become_zero_with_a_warning(tmp_path):
    scan = np.ones((4, 5, 6), np.float32)
    scan[1, 2, 3] = np.nan
    meta = VolumeMeta.from_affine(np.eye(4), scan.shape)
    zarr.create_array(str(tmp_path / "nan.zarr"), data=scan, attributes=zarr_attrs(meta))
    with pytest.warns(NonFiniteVoxelsWarning, match="1 of 120 voxels"):
        ((data, _, kind),) = read_zarr(str(tmp_path / "nan.zarr"))
    assert kind == "image" and data[1, 2, 3] == 0 and np.isfinite(data).all()


def test_a_damaged_store_says_what_is_wrong(tmp_path):
    meta = VolumeMeta.from_affine(np.eye(4), (4, 5, 6))
    zarr.create_array(str(tmp_path / "short.zarr"), data=np.ones((4, 5, 2), np.uint8), attributes=zarr_attrs(meta))
    with pytest.raises(VolumeError, match=r"shape \(4, 5, 2\) but its geometry says \(4, 5, 6\)"):
        read_zarr(str(tmp_path / "short.zarr"))


def test_a_session_store_is_refused_with_the_way_to_open_it(tmp_path):
    volume = SessionVolume(name="scan", shape=(4, 4, 3), painted=np.zeros((4, 4, 3), np.uint8))
    store = save_session(tmp_path / "work.action.zarr", Session(volumes=[volume]))
    assert napari_get_reader(str(store)) is refuse_session_store
    with pytest.raises(VolumeError, match="is a napari-action session. Open it with 'Open session…'"):
        refuse_session_store(str(store))


def test_a_store_with_a_damaged_chunk_is_a_volume_error_so_the_other_files_open_and_sessions_reopen(tmp_path):
    meta = VolumeMeta.from_affine(np.eye(4), (4, 5, 6))
    store = tmp_path / "damaged.zarr"
    zarr.create_array(str(store), data=np.ones((4, 5, 6), np.float32), chunks=(2, 5, 6), attributes=zarr_attrs(meta))
    chunk = next(path for path in sorted(store.rglob("*")) if path.is_file() and path.name != "zarr.json")
    chunk.write_bytes(b"not a compressed chunk")  # zarr's codec raised RuntimeError: napari's traceback
    with pytest.raises(VolumeError, match="a chunk of the zarr store cannot be read"):
        read_zarr(store)


def test_a_store_whose_metadata_zarr_cannot_read_is_named_in_our_words(make_napari_viewer, tmp_path):
    # napari-action's attributes claim it for the reader; its notification was zarr's exception text.
    store = tmp_path / "scan.zarr"
    meta = VolumeMeta.from_affine(np.eye(4), (4, 5, 6))
    zarr.create_array(str(store), data=np.zeros((4, 5, 6), np.float32), attributes=zarr_attrs(meta))
    metadata = json.loads((store / "zarr.json").read_text())
    del metadata["shape"]
    (store / "zarr.json").write_text(json.dumps(metadata))
    assert napari_get_reader(store) is open_zarr
    viewer = make_napari_viewer()
    before = len(notification_manager.records)
    assert viewer.open(store, plugin=PLUGIN) == []
    (message,) = messages_since(before, "error")
    assert message.startswith(f"{store} holds no readable zarr array: its metadata file zarr.json is not")
    assert "Error" not in message and "write it again" in message
