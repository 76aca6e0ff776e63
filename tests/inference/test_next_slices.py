"""Next slices to annotate: each strategy's pick and reason on small hand-made volumes."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_action.inference.next_slices import STRATEGIES, _SliceContent, next_slices, structure_range

AXIS = 2


def _volume(slices_with: dict[int, tuple[int, ...]], n: int = 20, dtype=np.uint8) -> np.ndarray:
    """A 10x10xn label volume; ``slices_with[s]`` lists the classes drawn on slice s (a 3x3 block each)."""
    volume = np.zeros((10, 10, n), dtype)
    for index, classes in slices_with.items():
        for position, value in enumerate(classes):
            volume[position * 3 : position * 3 + 3, 0:3, index] = value
    return volume


def test_the_structure_range_runs_from_the_first_to_the_last_slice_with_predicted_structure():
    prediction = _volume({5: (1,), 12: (2,)})
    assert structure_range(prediction, AXIS) == (5, 12)
    assert structure_range(np.zeros_like(prediction), AXIS) is None


def test_a_few_stray_voxels_far_away_stretch_the_range_only_without_an_area_share():
    prediction = _volume(dict.fromkeys(range(8, 15), (1, 1, 1)))  # 27 voxels a slice on 8..14
    prediction[9, 9, 1] = 1  # one false-positive voxel far below the structure
    assert structure_range(prediction, AXIS) == (1, 14)
    assert structure_range(prediction, AXIS, min_area_share=0.1) == (8, 14)
    gap = next_slices("gap", prediction, AXIS, annotated=[11], annotated_values=[0, 1], k=1)
    shared = next_slices("gap", prediction, AXIS, [11], [0, 1], k=1, min_area_share=0.1)
    assert gap[0].slice_index == 5 and shared[0].slice_index == 9  # middle of 1..10 against middle of 8..10


def test_largest_gap_is_the_middle_of_the_longest_unannotated_run_inside_the_structure():
    prediction = _volume(dict.fromkeys(range(4, 17), (1,)))  # structure on slices 4..16
    picks = next_slices("gap", prediction, AXIS, annotated=[6], annotated_values=[0, 1], k=2)
    # Runs inside 4..16 besides slice 6: 4-5 and 7-16: the middle of 7..16 first; then of 12..16 (7..10 is shorter).
    assert [(p.slice_index, p.reason) for p in picks] == [(11, "largest gap"), (14, "largest gap")]
    assert all(4 <= p.slice_index <= 16 for p in picks)


def test_a_class_predicted_but_on_no_annotated_slice_comes_first_and_is_named():
    prediction = _volume(dict.fromkeys(range(4, 17), (1,)) | {13: (1, 2), 14: (1, 2, 2)})
    names = {1: "LV", 2: "Amygdala"}
    picks = next_slices(
        "coverage+gap", prediction, AXIS, annotated=[6], annotated_values=[0, 1], k=2, class_names=names
    )
    assert picks[0].slice_index == 14 and picks[0].reason == "Amygdala missing"
    assert picks[1].reason == "largest gap"
    # Plain coverage stops once every predicted class is on an annotated or picked slice.
    assert [p.slice_index for p in next_slices("coverage", prediction, AXIS, [6], [0, 1], k=3)] == [14]


def test_uncertain_and_disagreement_look_only_inside_the_structure_range():
    prediction = _volume(dict.fromkeys(range(5, 15), (1,)))
    entropy = np.zeros(prediction.shape, np.float32)
    entropy[..., 1] = 1.0  # very uncertain, but outside the anatomy
    entropy[..., 9] = 0.6
    pick = next_slices("uncertain", prediction, AXIS, [7], [0, 1], k=1, entropy=entropy)[0]
    assert (pick.slice_index, pick.reason) == (9, "uncertain")
    interpolation = prediction.copy()
    interpolation[..., 12] = 0
    pick = next_slices("disagreement", prediction, AXIS, [7], [0, 1], k=1, interpolation=interpolation)[0]
    assert (pick.slice_index, pick.reason) == (12, "disagrees")


def test_nothing_predicted_means_no_suggestion_and_bad_input_is_explained():
    empty = np.zeros((10, 10, 20), np.uint8)
    assert next_slices("gap", empty, AXIS, [], [0]) == []
    with pytest.raises(ValueError, match="Unknown strategy"):
        next_slices("best", empty, AXIS, [], [0])
    with pytest.raises(ValueError, match="needs the entropy"):
        next_slices("uncertain", _volume({3: (1,)}), AXIS, [], [0])
    assert set(STRATEGIES) == {"gap", "coverage", "uncertain", "disagreement", "coverage+gap"}


def test_a_large_prediction_is_counted_slice_by_slice_without_a_copy_of_the_volume():
    # The Refine panel ranks the prediction layer on napari's GUI thread every few seconds while slices
    # stream in: a sort of the whole volume took 2.7 GB and 14 s there on a 512 x 512 x 400 CT.
    prediction = np.zeros((256, 256, 40), np.uint8)
    prediction[40:90, 50:120, 10:30] = 3
    prediction[150:200, 60:100, 5:35] = 7
    tracemalloc.start()
    try:
        picks = next_slices("coverage+gap", prediction, AXIS, annotated=[20], annotated_values=[0, 3], k=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < prediction.nbytes / 4
    assert picks[0].reason == "label 7 missing" and picks[1].reason == "largest gap"


@pytest.mark.parametrize(
    "dtype, values", [(np.uint16, (3, 1000)), (np.uint64, (2, 9)), (np.int32, (-2, 70_000)), (np.int64, (5, 1 << 40))]
)
def test_label_values_of_any_size_and_sign_are_counted_on_their_slices(dtype, values):
    low, high = values
    prediction = _volume({4: (low,), 9: (high, high, high), 12: (low, high)}, dtype=dtype)
    picks = next_slices("coverage", prediction, AXIS, annotated=[12], annotated_values=[0, low], k=3)
    assert [(p.slice_index, p.reason) for p in picks] == [(9, f"label {high} missing")]
    assert structure_range(prediction, AXIS) == (4, 12)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64])
def test_each_slices_label_counts_are_those_of_np_unique_empty_slices_and_wide_values_included(dtype):
    rng = np.random.default_rng(3)
    volume = np.zeros((6, 9, 11), dtype)
    volume[1:4] = rng.integers(0, 5, (3, 9, 11))
    volume[4, 2, 3] = np.iinfo(dtype).max  # beyond a histogram's reach for the wide types
    if np.issubdtype(dtype, np.signedinteger):
        volume[5, 0, 0] = -2  # a value no histogram counts
    content = _SliceContent.of(volume, 0)
    for index, plane in enumerate(volume):
        values, counts = np.unique(plane, return_counts=True)
        expected = np.zeros(content.values.size, np.int64)
        expected[np.searchsorted(content.values, values)] = counts
        np.testing.assert_array_equal(content.counts[index], expected)
    np.testing.assert_array_equal(content.values, np.unique(volume))
