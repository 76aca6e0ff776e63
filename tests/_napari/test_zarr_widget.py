"""The ACTION widget on scans opened from napari-action zarr stores, in a real (hidden) napari viewer.

A scan larger than a quarter of the free memory stays on disk as a zarr array (the reader's lazy
path, forced here by a machine with 1 kB free): training reads it a slice at a time in its worker,
and nothing on the GUI thread may read it whole (napari would freeze for as long as the read
takes, and a scan larger than memory would not fit). Tiny budgets; every test waits for every
worker it started.
"""

from __future__ import annotations

import threading

import nibabel as nib
import numpy as np
import pytest
import zarr
from napari.utils.notifications import notification_manager

from napari_action._napari import reader
from napari_action._napari.files.snapshot import read_session
from napari_action._napari.reader import read_zarr
from napari_action.cli.main import main
from napari_action.io.nifti import load_labels, load_volume
from napari_action.io.session_store import load_session
from tests.helpers.gui import PLUGIN, dock, messages_since, wait_idle

PAINTED = (6, 12, 18)  # along axis 2, the axis the store is chunked along


class GuiReadLog:
    """A lazily read array as napari hands it on, counting the reads of the whole volume made on the GUI thread.

    A stand-in for a zarr array of a scan larger than memory (the array it wraps is small).
    """

    def __init__(self, array):
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))
        self.whole_reads_on_gui = 0

    def _note(self, size: int) -> None:
        if size == self.size and threading.current_thread() is threading.main_thread():
            self.whole_reads_on_gui += 1

    def __getitem__(self, index):
        block = np.asarray(self.array[index])
        self._note(block.size)
        return block

    def __array__(self, dtype=None, copy=None):
        self._note(self.size)
        return np.asarray(self.array[...], dtype=dtype)


def _paint_bright_voxels(labels, scan: np.ndarray) -> None:
    threshold = np.percentile(scan, 75)
    for s in PAINTED:
        rows, cols = np.nonzero(scan[:, :, s] > threshold)
        labels.data_setitem((rows, cols, np.full(rows.shape, s)), 1)


@pytest.fixture
def lazy_scan(nibabel_data, tmp_path, monkeypatch):
    """nibabel's anatomical.nii converted to a store, read as the reader reads a scan larger than memory."""
    source = nibabel_data / "anatomical.nii"
    store = tmp_path / "anatomical.zarr"
    assert main(["convert", "--image", str(source), "--out", str(store), "--axis", "2", "--chunk-slices", "4"]) == 0
    monkeypatch.setattr(reader, "available_memory_bytes", lambda: 1024)  # a machine with 1 kB free
    ((data, kwargs, kind),) = read_zarr(store)
    assert kind == "image" and not isinstance(data, np.ndarray)
    return source, store, data, kwargs


def test_a_scan_kept_on_disk_is_never_read_whole_on_the_gui_thread_and_exports_onto_its_nifti(
    viewer, qtbot, tmp_path, lazy_scan
):
    source, _, data, kwargs = lazy_scan
    log = GuiReadLog(data)
    image = viewer.add_image(log, **kwargs)
    labels = viewer.add_labels(np.zeros(log.shape, np.uint8), name="anatomical labels", affine=image.affine)
    scan, meta = load_volume(source)
    _paint_bright_voxels(labels, scan)
    widget = dock(viewer)
    log.whole_reads_on_gui = 0  # napari's own reads while adding the layer are not the widget's

    widget.options.view.value = "axial"  # the anatomical planes come from the header
    widget.train_button.click()
    wait_idle(qtbot, widget)
    widget.predict_all()
    wait_idle(qtbot, widget)
    out = tmp_path / "export"
    out.mkdir()
    widget.files_panel.export_masks(out)
    wait_idle(qtbot, widget)
    widget.files_panel.save_session(tmp_path / "work.action.zarr")  # an image without a source: its voxels
    wait_idle(qtbot, widget)

    assert log.whole_reads_on_gui == 0
    np.testing.assert_array_equal(load_session(tmp_path / "work.action.zarr").volume("anatomical").image, scan)
    exported, exported_meta = load_labels(out / "anatomical_action.nii.gz")
    np.testing.assert_array_equal(exported, viewer.layers["anatomical ACTION"].data)
    np.testing.assert_array_equal(exported_meta.affine, meta.affine)
    written, original = nib.load(out / "anatomical_action.nii.gz").header, nib.load(source).header
    np.testing.assert_array_equal(written.get_sform(), original.get_sform())
    np.testing.assert_array_equal(written.get_qform(), original.get_qform())
    assert (written["sform_code"], written["qform_code"]) == (original["sform_code"], original["qform_code"])


def _painted_scene(viewer, store):
    """The store opened as File > Open Folder opens it, a few slices painted, the widget docked."""
    (image,) = viewer.open(str(store), plugin=PLUGIN)
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="anatomical labels", affine=image.affine)
    _paint_bright_voxels(labels, np.asarray(image.data[...]))
    return dock(viewer)


@pytest.fixture
def scan_store(nibabel_data, tmp_path):
    store = tmp_path / "anatomical.zarr"
    assert main(["convert", "--image", str(nibabel_data / "anatomical.nii"), "--out", str(store), "--axis", "2"]) == 0
    return store


def test_a_session_refers_to_the_zarr_store_its_scan_was_opened_from_and_reopens_it(
    make_napari_viewer, qtbot, tmp_path, scan_store, monkeypatch
):
    first = make_napari_viewer()
    widget = _painted_scene(first, scan_store)
    expected = first.layers["anatomical"]
    session = tmp_path / "work.action.zarr"
    widget.files_panel.save_session(session)
    wait_idle(qtbot, widget)
    stored = load_session(session).volume("anatomical")
    assert stored.source_path == str(scan_store) and stored.source_sha256 and stored.image is None  # not copied
    painted = np.array(first.layers["anatomical labels"].data)

    monkeypatch.setattr(reader, "available_memory_bytes", lambda: 1024)  # reopened where it no longer fits
    second = make_napari_viewer()
    widget = dock(second)
    before = len(notification_manager.records)
    widget.files_panel.open_session(session)
    wait_idle(qtbot, widget)
    assert messages_since(before, "warning") == []
    image = second.layers["anatomical"]
    assert isinstance(image.data, zarr.Array)  # read from the store again, a slice at a time
    assert image.source.path == str(scan_store)
    np.testing.assert_array_equal(image.data[...], expected.data)
    np.testing.assert_array_equal(image.affine.affine_matrix, expected.affine.affine_matrix)
    assert image.metadata["napari_action"] == expected.metadata["napari_action"]  # exports keep the header
    np.testing.assert_array_equal(second.layers["anatomical labels"].data, painted)

    zarr.open_array(str(scan_store), mode="r+")[0, 0, :] = 7  # the scan changed since the session was saved
    assert any("changed since the session was saved" in w for w in read_session(session).warnings)
