"""Tests for napari_action.data.painting_slips: paint on slices the user did not look at (numpy only)."""

from __future__ import annotations

import numpy as np

from napari_action.data.painted_slices import read_painted_slices, scan_paint
from napari_action.data.painting_slips import filled_slice_advice, painting_slip_advice
from napari_action.io.volume_source import open_volume_source
from tests.helpers import engine

SHAPE = (24, 32, 32)
PAINTED = (4, 12, 20)


def painted_truth() -> np.ndarray:
    """A disc in a ring on every slice along axis 0, painted completely on :data:`PAINTED`."""
    _, truth = engine.disc_volume(0, shape=SHAPE, axis=0)
    return engine.sparse(truth, slices=PAINTED, axis=0)


def test_slices_painted_by_hand_raise_no_advice():
    labels = painted_truth()
    assert painting_slip_advice([labels], 0) is None


def test_a_slice_one_label_fills_whole_is_named_with_that_label():
    labels = painted_truth()
    labels[8] = 3  # a fill on an empty slice, or one whose outline was not closed
    labels[16] = 3
    advice = filled_slice_advice([labels], 0)
    assert advice is not None and advice.startswith("Slices 8 and 16 along axis 0, the slicing axis, hold one label")
    assert "(3)" in advice and "no background" in advice
    assert painting_slip_advice([labels], 0) == advice
    # Painted completely with two labels and no background: each label was put there by hand.
    labels[8, :16] = 1
    assert "Slice 16 along" in filled_slice_advice([labels], 0)


def test_a_fill_through_the_volume_lists_the_first_slices_and_how_many():
    labels = painted_truth()
    labels[labels == 0] = 5  # a 3D fill of the background
    advice = filled_slice_advice([labels], 0)
    assert "Slices 0, 1, 2, 3, 5, 6, 7, 8, … (21 in all) along axis 0" in advice and "(5)" in advice


def test_a_large_file_read_slice_by_slice_is_looked_at_through_its_painted_slices(tmp_path):
    labels = painted_truth()
    labels[16] = 2
    source = open_volume_source(engine.write_nifti(tmp_path / "labels.nii", labels))
    profile = scan_paint(source)
    lazy = read_painted_slices(source, 0, profile)
    assert "Slice 16 along axis 0" in filled_slice_advice([lazy], 0)
    assert painting_slip_advice([profile], 0) is None  # a profile alone holds no slices to look at
