"""Tests for napari_action.data.slicing_axis: the axis the slices were painted along (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.slicing_axis import (
    AxisDecision,
    axis_mismatch_advice,
    crossing_slice_advice,
    decide_axis,
    infer_axis,
)

CUBE = (24, 24, 24)


def painted_on(axis: int, slices: tuple[int, ...]) -> np.ndarray:
    """A cube with a square painted on each of ``slices`` along ``axis``."""
    labels = np.zeros(CUBE, dtype=np.uint16)
    for s in slices:
        index = [slice(2, 9)] * 3
        index[axis] = s
        labels[tuple(index)] = 3
    return labels


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_infer_axis_finds_painted_axis(axis):
    assert infer_axis([painted_on(axis, slices=(1, 4, 7))]) == axis


def test_infer_axis_pools_volumes_and_skips_none():
    assert infer_axis([None, painted_on(1, slices=(3,)), np.zeros(CUBE)]) == 1


def test_infer_axis_ties_and_empty():
    single = np.zeros((5, 5, 5), dtype=np.uint8)
    single[2, 2, 2] = 1
    assert infer_axis([single]) == 2
    assert infer_axis([single], fallback=0) == 0
    assert infer_axis([single], fallback=-3) == 0
    assert infer_axis([np.zeros((4, 4, 4))], fallback=1) == 1
    with pytest.raises(ValueError, match="no painted voxels"):
        infer_axis([np.zeros((4, 4, 4)), None])


def test_infer_axis_ignores_untied_fallback():
    assert infer_axis([painted_on(0, slices=(1,))], fallback=2) == 0


def test_infer_axis_rejects_mixed_dimensions():
    with pytest.raises(ValueError, match="same number of dimensions"):
        infer_axis([np.ones((2, 2, 2)), np.ones((2, 2))])


def test_paint_along_another_axis_than_the_forced_one_is_pointed_out():
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[:, :, 3] = 1  # two slices painted along axis 2
    labels[2:8, 2:8, 9] = 2
    advice = axis_mismatch_advice([labels, None], axis=0)
    assert advice.startswith("The painted slices lie along axis 2, but training slices along axis 0")
    assert "each of the 10 slices along axis 0" in advice
    assert axis_mismatch_advice([labels], axis=2) is None
    dense = np.ones((10, 12, 14), np.uint8)  # a fully labeled volume has no painted axis
    assert axis_mismatch_advice([dense], axis=0) is None


def test_a_slice_painted_along_another_axis_beside_the_slicing_ones_is_pointed_out():
    # Two sagittal slices painted along axis 2, then one slip in the axial view (axis 1): every slice along
    # axis 2 it crosses counted as painted, background but for a line, and nothing said so.
    labels = np.zeros((10, 12, 14), np.uint8)
    labels[2:8, 2:8, 3] = 1
    labels[2:8, 2:8, 9] = 2
    assert crossing_slice_advice([labels, None], axis=2) is None
    labels[1:9, 5, :] = 1
    advice = crossing_slice_advice([labels, None], axis=2)
    assert advice.startswith("Paint on slice 5 along axis 1 crosses 12 slices along axis 2, the slicing axis")
    assert "erase it" in advice and "choose axis 1 as the slicing axis" in advice
    # Training along the slip's own axis: the two sagittal slices are the lines there.
    assert "Paint on slices 3 and 9 along axis 2" in crossing_slice_advice([labels], axis=1)


def thick_slice_scan_with_a_stray_stroke() -> np.ndarray:
    """A thick-slice scan (60 x 60 pixels, 10 slices along axis 2) painted on slices 3 and 6, then stroked once
    in the coronal view by mistake: a short line at index 30 along axis 1 on 8 of the 10 slices."""
    labels = np.zeros((60, 60, 10), np.uint8)
    labels[15:45, 18:42, 3] = 1
    labels[15:45, 18:42, 6] = 2
    labels[20:28, 30, 1:9] = 1
    return labels


def test_a_stroke_in_another_view_does_not_take_the_axis_of_a_thick_slice_scan():
    # Counted slice by slice, the stroke touched 8 of the 10 slices along axis 2 and the painted squares 30 of 60
    # along axis 1: axis 1 was decided, and the warning called the two painted slices the slip.
    labels = thick_slice_scan_with_a_stray_stroke()
    assert decide_axis([labels]) == AxisDecision(2, "the painted slices lie along it")
    advice = crossing_slice_advice([labels], axis=2)
    assert advice.startswith("Paint on slice 30 along axis 1 crosses 6 slices along axis 2, the slicing axis")
    assert axis_mismatch_advice([labels], axis=2) is None


def test_volumes_of_different_shapes_are_looked_at_each_on_its_own():
    # A cohort's painted scans differ in shape: adding up their profiles raised numpy's broadcast error.
    small = np.zeros((10, 12, 14), np.uint8)
    small[2:8, 2:8, 3] = 1
    large = np.zeros((10, 20, 18), np.uint8)
    large[2:8, 2:8, 5] = 1
    assert crossing_slice_advice([small, large], axis=2) is None
    large[1:9, 15, :] = 1  # a slip in the other view, on the large scan only
    advice = crossing_slice_advice([small, None, large], axis=2)
    assert advice.startswith("Paint on slice 15 along axis 1 crosses 17 slices along axis 2")  # not slice 5, painted


def test_complete_masks_and_slices_painted_along_the_slicing_axis_have_nothing_crossing():
    dense = np.zeros((10, 12, 14), np.uint8)
    dense[2:8, 3:9, 4:11] = 1
    dense[4:6, 5:7, 6:9] = 2
    assert all(crossing_slice_advice([dense], axis=a) is None for a in range(3))
    assert crossing_slice_advice([painted_on(2, slices=(1, 4))], axis=2) is None


# -- decide_axis: one decision from every input, in priority order ---------------------------
def single_voxel() -> np.ndarray:
    """Paint that fits every axis alike."""
    labels = np.zeros((5, 5, 5), dtype=np.uint8)
    labels[2, 2, 2] = 1
    return labels


def test_decision_reads_as_axis_and_reason():
    decision = decide_axis([painted_on(2, slices=(1, 4))])
    assert decision == AxisDecision(2, "the painted slices lie along it")
    assert str(decision) == "axis 2: the painted slices lie along it"


def test_a_loaded_model_is_continued_when_nothing_asks_for_another_axis():
    painted_along_1 = [painted_on(1, slices=(3,))]
    assert decide_axis(painted_along_1, model_axis=1, viewer_axis=0) == AxisDecision(
        1, "training continues the loaded model, which slices along it"
    )
    # A tie, or no paint at all, keeps the model's axis over the viewer's.
    assert decide_axis([single_voxel()], model_axis=0, viewer_axis=2).axis == 0
    assert decide_axis([np.zeros(CUBE)], model_axis=0, viewer_axis=2).axis == 0
    assert decide_axis(painted_along_1, model_axis=2, chosen=2, accepted=1).axis == 2


def test_a_loaded_model_along_another_axis_than_asked_gives_way():
    # Then a new model is trained: the caller compares the decided axis with the model's.
    assert decide_axis([painted_on(1, slices=(3,))], model_axis=0) == AxisDecision(1, "the painted slices lie along it")
    assert decide_axis([painted_on(1, slices=(3,))], model_axis=1, chosen=2) == AxisDecision(2, "you chose it")
    assert decide_axis([], model_axis=1, accepted=0) == AxisDecision(0, "the slices you accepted lie along it")


def test_the_users_choice_beats_accepted_slices_and_paint():
    assert decide_axis([painted_on(1, slices=(3,))], chosen=0, accepted=2, viewer_axis=1) == AxisDecision(
        0, "you chose it"
    )


def test_accepted_slices_beat_the_paint():
    assert decide_axis([painted_on(1, slices=(3,))], accepted=2, viewer_axis=1) == AxisDecision(
        2, "the slices you accepted lie along it"
    )


def test_the_paint_beats_the_viewer():
    assert decide_axis([None, painted_on(0, slices=(2, 9))], viewer_axis=2) == AxisDecision(
        0, "the painted slices lie along it"
    )


def test_a_tie_goes_to_the_viewers_axis_else_to_the_last_tied_one():
    assert decide_axis([single_voxel()], viewer_axis=1) == AxisDecision(
        1, "the paint lies along axes 0, 1 and 2 alike, and the viewer slices along it"
    )
    two_way = np.zeros((6, 6, 6), dtype=np.uint8)
    two_way[2, 1:3, 1:5] = 1  # 1 of 6 slices along axis 0, 2 along axis 1, 4 along axis 2
    two_way[4, 1:3, 1:5] = 1  # now 2 along axis 0 too: axes 0 and 1 tie
    assert decide_axis([two_way], viewer_axis=2) == AxisDecision(
        1, "the paint lies along axes 0 and 1 alike; it is the last of them"
    )
    assert decide_axis([two_way], viewer_axis=0).axis == 0


def test_without_paint_the_viewer_decides_and_without_a_viewer_nothing_does():
    assert decide_axis([np.zeros(CUBE), None], viewer_axis=-1) == AxisDecision(
        2, "nothing is painted yet, and the viewer slices along it"
    )
    with pytest.raises(ValueError, match="no painted voxels"):
        decide_axis([np.zeros(CUBE)])


def test_decision_normalizes_negative_axes_and_rejects_bad_ones():
    assert decide_axis([painted_on(1, slices=(3,))], chosen=-1).axis == 2
    with pytest.raises(ValueError):
        decide_axis([painted_on(1, slices=(3,))], chosen=3)
    with pytest.raises(ValueError, match="same number of dimensions"):
        decide_axis([np.ones((2, 2, 2)), np.ones((2, 2))], chosen=0)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slices_painted_on_a_scan_of_few_slices_are_found_along_its_short_axis(axis):
    # 3 of 12 slices painted spread over a quarter of them; a small organ on them over less of the 128 rows
    # across, and training took those rows (each holding only the painted slices' lines), warning that the
    # painted slices lay along them.
    shape = [128, 128, 128]
    shape[axis] = 12
    labels = np.zeros(shape, np.uint8)
    for s in (2, 5, 9):
        index = [slice(40, 52), slice(60, 75), slice(30, 48)]
        index[axis] = s
        labels[tuple(index)] = 1
    decision = decide_axis([labels])
    assert decision.axis == axis and "as lines only" in decision.reason
    assert axis_mismatch_advice([labels], axis) is None and crossing_slice_advice([labels], axis) is None
    across = (axis + 1) % 3  # training along another axis is still warned about, naming the painted one
    assert f"along axis {axis} crosses" in crossing_slice_advice([labels], across)


class CountedReads(np.ndarray):
    """A label volume that counts the label values numpy reads from it (views share the count)."""

    reads: list[int]

    def __array_finalize__(self, obj):
        self.reads = getattr(obj, "reads", None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        self.reads[0] += sum(x.size for x in inputs if isinstance(x, CountedReads))
        plain = [x.view(np.ndarray) if isinstance(x, CountedReads) else x for x in inputs]
        return getattr(ufunc, method)(*plain, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        self.reads[0] += sum(x.size for x in args if isinstance(x, CountedReads))
        plain = [x.view(np.ndarray) if isinstance(x, CountedReads) else x for x in args]
        return func(*plain, **kwargs)


def test_decide_axis_reads_the_labels_once(monkeypatch):
    """The painted voxels are counted along all three axes in one pass (three passes, strided, took 0.5 s on the
    GUI thread at Train for a 512 x 512 x 400 volume); the decision and the mismatch warning stay the same."""
    from napari_action.data import slicing_axis

    monkeypatch.setattr(slicing_axis, "label_array", lambda labels: labels)  # np.asarray would drop the count
    labels = painted_on(2, (4, 12, 20)).view(CountedReads)
    labels.reads = [0]
    assert decide_axis([labels], viewer_axis=0) == decide_axis([labels.view(np.ndarray)], viewer_axis=0)
    assert labels.reads[0] == labels.size
    labels.reads[0] = 0
    assert axis_mismatch_advice([labels], 0) == axis_mismatch_advice([labels.view(np.ndarray)], 0) is not None
    assert labels.reads[0] <= 2 * labels.size  # the counts, and the painted slices along the chosen axis


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, bool])
def test_paint_counted_in_blocks_as_per_slice(dtype):
    """The block counts equal ``np.count_nonzero`` per slice along each axis, whatever the shape and type."""
    from napari_action.data.slicing_axis import COUNT_BLOCK_SLICES, _counted

    rng = np.random.default_rng(3)
    labels = (rng.random((2 * COUNT_BLOCK_SLICES + 5, 7, 9)) < 0.2) * rng.integers(1, 4, (1, 7, 9))
    labels = labels.astype(dtype)
    labels[COUNT_BLOCK_SLICES : 2 * COUNT_BLOCK_SLICES] = 0  # a block without paint, skipped
    counted = _counted(labels)
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        np.testing.assert_array_equal(counted.voxels[axis], np.count_nonzero(labels, axis=others))
        np.testing.assert_array_equal(counted.painted[axis], np.any(labels, axis=others))
    assert counted.shape == labels.shape
