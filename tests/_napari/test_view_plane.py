"""The widget's "view slices" choice puts the slider on the plane the user asks for."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.view_plane import KEEP, PAINTED, viewer_slicing_axis
from tests.helpers.gui import PLUGIN, dock, messages_since

# Array axis 0 runs inferior-superior, 1 left-right, 2 posterior-anterior: a file stored
# "SRA", as some scanners' sagittal or axial acquisitions are.
SRA = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def _open(viewer, tmp_path, affine):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).normal(size=(10, 12, 14)).astype(np.float32), affine), path)
    viewer.open(path, plugin=PLUGIN)
    return dock(viewer)


# napari cannot show a permuted file in world coordinates; the reader says so, which is not under test here.
@pytest.mark.filterwarnings("ignore::napari_action._napari.reader.DisplayGeometryWarning")
@pytest.mark.parametrize(
    ("affine", "expected"),
    [
        (np.eye(4), {"sagittal": 0, "coronal": 1, "axial": 2}),
        (SRA, {"axial": 0, "sagittal": 1, "coronal": 2}),
    ],
    ids=["RAS", "SRA"],
)
def test_anatomical_planes_follow_the_files_orientation(viewer, tmp_path, affine, expected):
    widget = _open(viewer, tmp_path, affine)
    for plane, axis in expected.items():
        widget.options.view.value = plane
        widget.options.view.native.textActivated.emit(plane)  # what a choice in the list sends
        assert viewer_slicing_axis(viewer) == axis, plane
        assert viewer.dims.ndisplay == 2
    assert widget.status_label.text().startswith(f"Showing {plane} slices")


def test_the_painted_plane_is_the_axis_the_slices_were_painted_along(viewer, tmp_path):
    widget = _open(viewer, tmp_path, np.eye(4))
    labels = viewer.add_labels(np.zeros((10, 12, 14), np.uint8), name="scan labels")
    labels.data[:, 3, :] = 1  # two slices painted along axis 1
    labels.data[:, 8, 2:9] = 2
    assert widget.show_slices(PAINTED) == 1
    assert viewer_slicing_axis(viewer) == 1
    assert widget.show_slices(KEEP) is None and viewer_slicing_axis(viewer) == 1


def test_asking_for_the_painted_plane_before_painting_says_what_to_do(viewer, tmp_path):
    widget = _open(viewer, tmp_path, np.eye(4))
    viewer.add_labels(np.zeros((10, 12, 14), np.uint8), name="scan labels")
    order = viewer.dims.order
    before = len(notification_manager.records)
    assert widget.show_slices(PAINTED) is None
    assert any("paint a slice first" in message for message in messages_since(before, "warning"))
    assert viewer.dims.order == order
