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

from napari_action._napari import reader
from napari_action._napari.reader import read_zarr
from napari_action.cli.main import main
from napari_action.io.nifti import load_labels, load_volume
from napari_action.io.session_store import load_session
from tests.helpers.gui import dock, wait_idle

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
