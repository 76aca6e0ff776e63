"""Uncertainty maps filled from streamed slices and whole-volume predictions, and their slice scores."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.inference.suggestions import slice_scores
from napari_action.inference.uncertainty import UncertaintyMaps, streamed_uncertainty, with_uncertainty
from napari_action.progress import SlicePrediction

SHAPE = (6, 8, 10)


def test_streamed_uncertainty_scale():
    confidence = np.array([1.0, 0.5, 1 / 3], np.float32)
    np.testing.assert_allclose(streamed_uncertainty(confidence, 3), [0.0, 0.75, 1.0], atol=1e-6)
    assert not streamed_uncertainty(confidence, 1).any()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_streamed_slices_fill_their_place_along_any_axis(axis):
    maps = UncertaintyMaps()
    n_slices = SHAPE[axis]
    values = np.random.default_rng(axis).random((2, *np.delete(SHAPE, axis))).astype(np.float32)  # slices first
    found = maps.set_slices("vol", SHAPE, axis, 3, values)
    np.testing.assert_array_equal(np.moveaxis(found.volume, axis, 0)[3:5], values)
    assert np.count_nonzero(found.volume) == values.size  # nothing written outside those slices
    np.testing.assert_array_equal(np.flatnonzero(found.covered), [3, 4])
    scores = found.scores()
    assert scores.shape == (n_slices,) and scores[3] > 0 and scores[4] > 0
    assert not np.delete(scores, [3, 4]).any()  # slices never predicted score 0


def test_whole_volume_covers_every_slice_and_refreshes_scores():
    maps = UncertaintyMaps()
    maps.set_slices("vol", SHAPE, 0, 0, np.full((1, *SHAPE[1:]), 0.9, np.float32))
    before = maps.get("vol").scores().copy()
    entropy = np.zeros(SHAPE, np.float32)
    entropy[4] = 0.5
    found = maps.set_volume("vol", entropy, 0)
    assert found is maps.get("vol") and found.covered.all()
    np.testing.assert_array_equal(found.volume, entropy)  # the later source overwrites the earlier
    assert before[0] > 0 and found.scores()[0] == 0 and found.scores()[4] == pytest.approx(0.5)


def test_a_map_starts_over_when_its_shape_or_axis_changes():
    maps = UncertaintyMaps()
    first = maps.set_volume("vol", np.ones(SHAPE, np.float32), 0)
    along_two = maps.set_slices("vol", SHAPE, 2, 0, np.ones((1, *SHAPE[:2]), np.float32))
    assert along_two is not first and np.flatnonzero(along_two.covered).tolist() == [0]
    assert maps.get("vol") is along_two
    maps.forget("vol")
    assert maps.get("vol") is None


def test_slices_streamed_after_a_scoring_are_scored_with_their_new_values():
    # Only the slices written since the last scores() are scored again (all of them took seconds on a
    # large CT): each batch of streamed slices must still change exactly its own scores.
    maps = UncertaintyMaps()
    found = maps.set_slices("vol", SHAPE, 1, 0, np.full((3, SHAPE[0], SHAPE[2]), 0.2, np.float32))
    first = found.scores().copy()
    maps.set_slices("vol", SHAPE, 1, 2, np.full((2, SHAPE[0], SHAPE[2]), 0.7, np.float32))
    second = found.scores()
    np.testing.assert_allclose(first[:3], 0.2, rtol=1e-6)
    np.testing.assert_allclose(second[:2], 0.2, rtol=1e-6)
    np.testing.assert_allclose(second[2:4], 0.7, rtol=1e-6)
    assert not second[4:].any()
    entropy = np.full(SHAPE, 0.1, np.float32)
    np.testing.assert_allclose(maps.set_volume("vol", entropy, 1).scores(), 0.1, rtol=1e-6)


def test_a_new_map_takes_a_handed_over_entropy_without_copying_it_and_copies_one_it_may_not_keep():
    # A copy of a 512 x 512 x 400 CT's entropy into fresh memory took most of a second on napari's GUI thread.
    handed = np.random.default_rng(0).random(SHAPE, dtype=np.float32)
    assert np.shares_memory(UncertaintyMaps().set_volume("vol", handed, 0).volume, handed)
    read_only = handed.copy()
    read_only.flags.writeable = False
    kept = UncertaintyMaps().set_volume("vol", read_only, 0)
    assert not np.shares_memory(kept.volume, read_only)
    np.testing.assert_array_equal(kept.volume, read_only)
    as_float64 = UncertaintyMaps().set_volume("vol", handed.astype(np.float64), 0)
    assert as_float64.volume.dtype == np.float32


def test_a_streamed_run_carries_its_uncertainty_and_the_scores_a_map_would_compute():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, (3, 6, 10)).astype(np.float32)  # slices 2-4 along axis 1 of SHAPE
    run = SlicePrediction(0, 1, 2, np.ones((3, 6, 10), np.uint8), confidence)
    scored = with_uncertainty(run, n_classes=3)
    np.testing.assert_array_equal(scored.uncertainty, streamed_uncertainty(confidence, 3))
    np.testing.assert_array_equal(scored.slice_scores, slice_scores(scored.uncertainty, 0))
    assert with_uncertainty(SlicePrediction(0, 1, 2, run.labels, None), 3).slice_scores is None  # nothing to score

    computed_here = UncertaintyMaps().set_slices("vol", SHAPE, 1, 2, scored.uncertainty).scores()
    handed_over = UncertaintyMaps().set_slices("vol", SHAPE, 1, 2, scored.uncertainty, scored.slice_scores)
    np.testing.assert_array_equal(handed_over.scores(), computed_here)


def test_scores_handed_over_with_streamed_slices_are_taken_not_computed_again():
    maps = UncertaintyMaps()
    maps.set_slices("vol", SHAPE, 0, 0, np.full((2, 8, 10), 0.5, np.float32))  # scored here, when asked
    given = np.array([0.9, 0.1])  # scores made elsewhere from the values below (here: told, to see them kept)
    found = maps.set_slices("vol", SHAPE, 0, 3, np.full((2, 8, 10), 0.2, np.float32), given)
    scores = found.scores()
    np.testing.assert_allclose(scores[:2], 0.5)  # the earlier slices scored from their values
    np.testing.assert_array_equal(scores[3:5], given)
    maps.set_slices("vol", SHAPE, 0, 3, np.full((2, 8, 10), 0.2, np.float32))
    np.testing.assert_allclose(maps.maps["vol"].scores()[3:5], 0.2)  # written again without scores: scored here
