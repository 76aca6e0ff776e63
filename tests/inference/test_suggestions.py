"""Tests for napari_action.inference.suggestions: entropy, slice scores and next-slice ranking."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_action.inference.suggestions import (
    SliceSuggestion,
    normalized_entropy,
    rank_slices,
    slice_scores,
    suggest_slices,
)


def planted_volume(n_slices, hot, axis=0, shape=(12, 12), level=0.9, seed=0):
    """Low background uncertainty with ``level`` on the ``hot`` slices along ``axis``."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 0.05, size=(n_slices, *shape))
    for i, value in hot.items() if isinstance(hot, dict) else ((i, level) for i in hot):
        u[i] = value
    return np.moveaxis(u, 0, axis)


# --------------------------------------------------------------------------- entropy
@pytest.mark.parametrize("n_classes", [2, 3, 7])
def test_entropy_uniform_is_one_and_one_hot_is_zero(n_classes):
    uniform = np.full((n_classes, 4, 5), 1.0 / n_classes)
    assert_allclose(normalized_entropy(uniform), 1.0)
    one_hot = np.zeros((n_classes, 4, 5))
    one_hot[n_classes - 1] = 1.0
    assert_allclose(normalized_entropy(one_hot), 0.0)
    assert normalized_entropy(one_hot).shape == (4, 5)


def test_entropy_bounds_known_value_and_axis():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 4, 4, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    h = normalized_entropy(probs, axis=-1)
    assert h.shape == (3, 4, 4) and h.min() >= 0.0 and h.max() <= 1.0
    binary = normalized_entropy(np.array([[0.5, 0.25], [0.5, 0.75]]))
    expected = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75)) / np.log(2)
    assert_allclose(binary, [1.0, expected])
    assert normalized_entropy(probs.astype(np.float32), axis=-1).dtype == np.float32


def test_entropy_of_a_single_class_is_zero():
    single = normalized_entropy(np.ones((2, 1, 3, 3), np.float32), axis=1)
    assert single.shape == (2, 3, 3) and single.dtype == np.float32 and not single.any()


def test_entropy_unchecked_takes_values_as_they_are():
    # The predictor passes its own softmax output: a NaN (a broken network) gives a NaN, not an error.
    probs = np.array([[np.nan, 0.5], [np.nan, 0.5]], np.float32)
    assert_allclose(normalized_entropy(probs, check=False), [np.nan, 1.0])


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        (np.array([[2.0, -1.0]]).T, "non-negative"),
        (np.array([[0.2, 0.2]]).T, "sum to 1"),
        (np.array([[np.nan, 1.0]]).T, "finite"),
    ],
)
def test_entropy_rejects_non_probabilities(probs, match):
    with pytest.raises(ValueError, match=match):
        normalized_entropy(probs)


# --------------------------------------------------------------------------- slice scores
@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_slice_scores_find_planted_slices_along_any_axis(axis):
    u = planted_volume(20, [4, 13], axis=axis % 3, shape=(12, 12))
    scores = slice_scores(u, axis)
    assert scores.shape == (20,)
    assert set(np.argsort(scores)[-2:]) == {4, 13}


def test_top_fraction_is_not_diluted_by_confident_background():
    u = np.zeros((3, 20, 20))
    u[0, :2, :2] = 1.0  # small uncertain structure (1% of the slice)
    u[1] = 0.05  # uniformly mild uncertainty
    mean = slice_scores(u, 0, reduce="mean")
    top = slice_scores(u, 0, reduce="top_fraction", top_fraction=0.01)
    assert mean[0] < mean[1]
    assert top[0] > top[1]
    assert_allclose(top, [1.0, 0.05, 0.0])


def test_slice_scores_mask_restricts_voxels():
    u = np.zeros((3, 4, 4))
    u[:, 0, 0] = 1.0  # uncertain corner outside the region of interest
    u[1, 2, 2] = 0.5
    mask = np.zeros(u.shape, bool)
    mask[:2, 1:, 1:] = True  # slice 2 has no voxel in the mask
    assert_allclose(slice_scores(u, 0, mask=mask, reduce="mean"), [0.0, 0.5 / 9, 0.0])


def test_slice_scores_of_a_float32_map_take_no_float64_copy_of_it():
    # The Refine panel scores a whole uncertainty map on napari's GUI thread: a float64 copy of a
    # 512 x 512 x 400 CT's took 0.9 GB there. The scores are those of each slice taken alone.
    u = planted_volume(24, [5, 17], axis=2, shape=(128, 128)).astype(np.float32)
    tracemalloc.start()
    try:
        scores = slice_scores(u, 2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < u.nbytes / 4
    one_by_one = [slice_scores(u[:, :, [i]].astype(np.float64), 2)[0] for i in range(u.shape[2])]
    assert_allclose(scores, one_by_one, rtol=0, atol=0)
    assert set(np.argsort(scores)[-2:]) == {5, 17}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"uncertainty": np.zeros((4, 4))}, "3D"),
        ({"uncertainty": np.full((2, 2, 2), np.nan)}, "finite"),
        ({"reduce": "max"}, "reduce"),
        ({"top_fraction": 0.0}, "top_fraction"),
        ({"mask": np.ones((2, 2), bool)}, "shape"),
        ({"axis": 3}, "axis"),
    ],
)
def test_slice_scores_validation(kwargs, match):
    args = {"uncertainty": np.zeros((2, 2, 2)), "axis": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        slice_scores(args.pop("uncertainty"), args.pop("axis"), **args)


# --------------------------------------------------------------------------- ranking
def test_rank_picks_highest_and_excludes_labeled():
    scores = np.zeros(30)
    scores[[3, 11, 19, 26]] = [0.9, 0.5, 0.8, 0.7]
    assert rank_slices(scores, k=3, min_distance=1) == [3, 19, 26]
    assert rank_slices(scores, labeled=[19], k=3, min_distance=1) == [3, 26, 11]


def test_rank_enforces_min_distance_from_chosen_and_labeled():
    scores = np.linspace(0.0, 1.0, 40)  # monotone: the top slices are all neighbours
    chosen = rank_slices(scores, labeled=[20], k=4, min_distance=5)
    assert chosen == [39, 34, 29, 15]  # 24 and 25 are within 5 of labeled slice 20
    everything = sorted([*chosen, 20])
    assert min(np.diff(everything)) >= 5


def test_rank_default_spreads_suggestions():
    scores = np.exp(-(((np.arange(100) - 50) / 10.0) ** 2))  # one smooth uncertainty bump
    chosen = rank_slices(scores, k=3)
    assert chosen[0] == 50
    assert min(np.diff(sorted(chosen))) >= 2 and max(chosen) - min(chosen) > 10


def test_rank_default_relaxes_to_return_k_but_explicit_min_distance_is_strict():
    scores = np.arange(6, dtype=float)
    assert sorted(rank_slices(scores, labeled=[0], k=5)) == [1, 2, 3, 4, 5]
    assert rank_slices(scores, k=5, min_distance=3) == [5, 2]
    assert rank_slices(scores, labeled=range(6), k=2) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scores": np.zeros((3, 3))}, "1D"),
        ({"scores": np.array([0.0, np.inf])}, "finite"),
        ({"k": 0}, "k must"),
        ({"min_distance": 0}, "min_distance"),
        ({"labeled": [10]}, "outside"),
    ],
)
def test_rank_validation(kwargs, match):
    args = {"scores": np.zeros(5), **kwargs}
    with pytest.raises(ValueError, match=match):
        rank_slices(args.pop("scores"), **args)


# --------------------------------------------------------------------------- across volumes
def test_suggest_slices_across_volumes():
    a = planted_volume(30, {5: 0.6, 20: 0.4}, axis=2, seed=1)
    b = planted_volume(25, {8: 0.95, 9: 0.9, 17: 0.5}, axis=2, seed=2)
    suggestions = suggest_slices([a, b], labeled={0: [5]}, axis=2, k=3)
    assert all(isinstance(s, SliceSuggestion) for s in suggestions)
    assert [(s.volume_index, s.slice_index) for s in suggestions] == [(1, 8), (1, 17), (0, 20)]
    assert_allclose([s.score for s in suggestions], [0.95, 0.5, 0.4])


def test_suggest_slices_per_volume_axes_and_validation():
    a = planted_volume(10, [2], axis=0)
    b = planted_volume(10, [7], axis=1)
    suggestions = suggest_slices([a, b], labeled={}, axis=[0, 1], k=2)
    assert {(s.volume_index, s.slice_index) for s in suggestions} == {(0, 2), (1, 7)}
    with pytest.raises(ValueError, match="volumes"):
        suggest_slices([a], labeled={1: [0]}, axis=0)
    with pytest.raises(ValueError, match="one entry per volume"):
        suggest_slices([a, b], labeled={}, axis=[0])
