"""Tests for napari_action.data.painting_slips: paint on slices the user did not look at (numpy only)."""

from __future__ import annotations

import numpy as np

from napari_action.data.painted_slices import read_painted_slices, scan_paint
from napari_action.data.painting_slips import brushed_through_advice, filled_slice_advice, painting_slip_advice
from napari_action.io.volume_source import open_volume_source
from tests.helpers import engine

SHAPE = (24, 32, 32)
PAINTED = (4, 12, 20)


def painted_truth() -> np.ndarray:
    """A disc in a ring on every slice along axis 0, painted completely on :data:`PAINTED`."""
    _, truth = engine.disc_volume(0, shape=SHAPE, axis=0)
    return engine.sparse(truth, slices=PAINTED, axis=0)


def ball(labels: np.ndarray, centre: tuple[int, int, int], radius: float, value: int) -> np.ndarray:
    """``labels`` with a ball of ``value`` painted around ``centre``, as a brush painting in 3D leaves it."""
    zz, yy, xx = np.ogrid[tuple(slice(0, n) for n in labels.shape)]
    inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
    painted = labels.copy()
    painted[inside] = value
    return painted


def test_slices_painted_by_hand_raise_no_advice():
    labels = painted_truth()
    assert painting_slip_advice([labels], 0) is None
    # Three slices in a row painted completely by hand: a structure's paint grows and shrinks, it does not nest.
    _, truth = engine.disc_volume(0, shape=SHAPE, axis=0)
    assert brushed_through_advice([engine.sparse(truth, slices=(4, 5, 6), axis=0)], 0) is None


def test_a_ball_painted_on_an_empty_slice_names_the_slices_around_the_one_shown():
    labels = ball(painted_truth(), (8, 16, 16), radius=3.5, value=1)  # slice 8 shown, slices 5 to 11 reached
    # Slices 7 and 9 hold the very disc of slice 8 (on a grid this coarse): either could be the one shown.
    advice = brushed_through_advice([labels], 0)
    assert advice is not None and "slices 5, 6, 10 and 11 along axis 0" in advice
    assert "n edit dim 3" in advice and "background everywhere else" in advice
    assert painting_slip_advice([labels], 0) == advice


def test_a_ball_painted_beside_a_painted_slice_names_the_slices_it_reached_only():
    # The ball centred on painted slice 12 adds to it (the user saw it) and reaches 11 and 13 unseen.
    labels = ball(painted_truth(), (12, 16, 16), radius=1.5, value=1)
    advice = brushed_through_advice([labels], 0)
    assert advice is not None and "Paint on slices 11 and 13 along axis 0" in advice


def test_a_complete_mask_is_not_taken_for_a_ball():
    _, truth = engine.disc_volume(0, shape=SHAPE, axis=0)
    tapered = ball(np.zeros(SHAPE, np.uint8), (12, 16, 16), radius=11, value=1)  # a structure narrowing to its ends
    assert brushed_through_advice([truth], 0) is None and brushed_through_advice([tapered], 0) is None


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
    labels = ball(painted_truth(), (8, 16, 16), radius=3.5, value=1)
    labels[16] = 2
    source = open_volume_source(engine.write_nifti(tmp_path / "labels.nii", labels))
    profile = scan_paint(source)
    lazy = read_painted_slices(source, 0, profile)
    assert "Slice 16 along axis 0" in filled_slice_advice([lazy], 0)
    assert "slices 5, 6, 10 and 11 along axis 0" in brushed_through_advice([lazy], 0)
    assert painting_slip_advice([profile], 0) is None  # a profile alone holds no slices to look at
