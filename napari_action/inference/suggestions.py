"""Which slice to annotate next: uncertainty-based slice ranking.

The model's per-voxel uncertainty (normalised softmax entropy, :func:`normalized_entropy`)
is reduced to one score per slice (:func:`slice_scores`), and the best-scoring slices are
proposed, skipping slices that are already labeled and keeping the proposals apart from
each other and from the labeled slices (:func:`rank_slices`). :func:`suggest_slices` does
this across several volumes.

Why spread the proposals: uncertainty is smooth along the slicing axis, so the top
scores of a volume tend to be consecutive slices; annotating them teaches the model
nearly the same thing several times. Prediction quality falls mostly with the distance
to the nearest annotated slice (docs/benchmarks.md, "Distance to the nearest painted slice
still dominates"), so proposals far from every
labeled slice and from each other are the useful ones.

Why the default reduction is the mean of the *top fraction* of a slice's voxels: a small
uncertain structure on a large, confidently background slice is diluted by a plain mean,
while the top fraction still sees it. A background-only slice predicted with confidence
has low entropy everywhere, so it scores low under both reductions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_action.checks import as_int, normalize_axis

__all__ = ["SliceSuggestion", "normalized_entropy", "rank_slices", "slice_scores", "suggest_slices"]

REDUCTIONS = ("top_fraction", "mean")


def normalized_entropy(probs: np.ndarray, axis: int = 0, *, check: bool = True) -> np.ndarray:
    """Per-voxel softmax entropy normalised to [0, 1].

    Parameters
    ----------
    probs : np.ndarray
        Class probabilities (softmax output, not logits), summing to 1 along ``axis``.
    axis : int
        Class axis.
    check : bool
        Refuse values that are not probabilities. A caller passing its own softmax output
        (the predictor, slice after slice) skips the extra passes over the data.

    Returns
    -------
    np.ndarray
        ``-sum p log p / log C`` with ``0 log 0 = 0``: 1 for a uniform distribution, 0 for
        a one-hot one. Shape of ``probs`` without ``axis``; float32 for float32 input, else float64.
        A single class is certain everywhere: 0.

    Raises
    ------
    ValueError
        With ``check``, if the values are not finite, negative or do not sum to 1 along ``axis``.
    """
    p = np.asarray(probs)
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
    axis = normalize_axis(axis, p.ndim)
    if check:
        _check_probabilities(p, axis)
    n_classes = p.shape[axis]
    if n_classes < 2:
        # log(1) = 0 would divide 0 by 0; one class leaves nothing to doubt (as streamed_uncertainty says).
        return np.zeros(np.delete(p.shape, axis), p.dtype)
    # Clamping inside the log makes p * log(p) exactly 0 at p == 0, without a warning.
    plogp = p * np.log(np.maximum(p, np.finfo(p.dtype).tiny))
    entropy = -plogp.sum(axis=axis) / np.log(n_classes)
    return np.clip(entropy, 0.0, 1.0).astype(p.dtype, copy=False)


def _check_probabilities(p: np.ndarray, axis: int) -> None:
    """Raise ``ValueError`` unless ``p`` holds finite, non-negative values summing to 1 along ``axis``."""
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("probs must be finite and non-negative")
    if not np.allclose(p.sum(axis=axis), 1.0, atol=1e-3):
        raise ValueError(f"probs must sum to 1 along axis {axis} (softmax output, not logits)")


def _reduce_slice(values: np.ndarray, reduce: str, top_fraction: float) -> float:
    if values.size == 0:
        return 0.0
    if reduce == "mean":
        return float(values.mean())
    n_top = max(1, math.ceil(top_fraction * values.size))
    # partition is O(n): only the n_top largest values need to be found, not sorted.
    return float(np.partition(values, values.size - n_top)[values.size - n_top :].mean())


def slice_scores(
    uncertainty: np.ndarray,
    axis: int,
    *,
    mask: np.ndarray | None = None,
    reduce: str = "top_fraction",
    top_fraction: float = 0.05,
) -> np.ndarray:
    """Reduce a voxel-wise uncertainty volume to one score per slice.

    Parameters
    ----------
    uncertainty : np.ndarray
        3D voxel uncertainty, e.g. :func:`normalized_entropy` of the predicted probabilities.
    axis : int
        Slicing axis.
    mask : np.ndarray of bool, optional
        Voxels that may contribute (e.g. a body mask or a dilated predicted foreground);
        a slice with no voxel in the mask scores 0.
    reduce : {"top_fraction", "mean"}
        ``"top_fraction"``: mean of the ``top_fraction`` most uncertain voxels of the slice
        (at least one), so a small uncertain structure is not diluted by a large certain
        background. ``"mean"``: mean over the slice.
    top_fraction : float
        Fraction in (0, 1] used by ``"top_fraction"``.

    Returns
    -------
    np.ndarray
        Float64 scores, one per slice along ``axis``.

    Raises
    ------
    ValueError
        On a non-3D or non-finite ``uncertainty``, a mask of another shape, or bad options.
    """
    u = np.asarray(uncertainty)
    if u.ndim != 3:
        raise ValueError(f"uncertainty must be a 3D volume, got {u.ndim} dimensions")
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    axis = normalize_axis(axis, 3)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != u.shape:
            raise ValueError(f"mask must have the uncertainty's shape {u.shape}, got {mask.shape}")
    # One slice at a time in float64: a float64 copy of the whole map took 0.9 GB and 3.6 s on napari's
    # GUI thread for a 512 x 512 x 400 CT, each time the Refine panel showed a slice's score.
    planes = np.moveaxis(u, axis, 0)
    keep = None if mask is None else np.moveaxis(mask, axis, 0)
    scores = np.empty(planes.shape[0])
    for index, plane in enumerate(planes):
        row = np.asarray(plane, dtype=np.float64).ravel()
        if not np.all(np.isfinite(row)):
            raise ValueError("uncertainty must be finite")
        scores[index] = _reduce_slice(row if keep is None else row[keep[index].ravel()], reduce, top_fraction)
    return scores


def _default_min_distance(n_slices: int, k: int, n_labeled: int) -> int:
    # Half the gap that k + n_labeled evenly spaced slices would leave, and never adjacent slices.
    return max(2, n_slices // (2 * (k + n_labeled)))


def _check_labeled(labeled: Iterable[int], n_slices: int) -> list[int]:
    indices = sorted({as_int(i, "labeled slice") for i in labeled})
    bad = [i for i in indices if not 0 <= i < n_slices]
    if bad:
        raise ValueError(f"labeled slices {bad} are outside [0, {n_slices - 1}]")
    return indices


def _greedy(order: np.ndarray, occupied: list[int], k: int, gap: int, n_slices: int) -> list[int]:
    """Walk ``order`` and take each slice at least ``gap`` away from every occupied one."""
    free = np.ones(n_slices, dtype=bool)
    for i in occupied:
        free[max(0, i - gap + 1) : i + gap] = False
    chosen: list[int] = []
    for i in order:
        if len(chosen) == k:
            break
        if free[i]:
            chosen.append(int(i))
            free[max(0, i - gap + 1) : i + gap] = False
    return chosen


def rank_slices(
    scores: np.ndarray, *, labeled: Iterable[int] = (), k: int = 5, min_distance: int | None = None
) -> list[int]:
    """Pick up to ``k`` high-scoring slices, apart from each other and from labeled slices.

    Greedy: slices are visited by decreasing score (ties: lower index first); a slice is
    taken if it is at least ``min_distance`` slices away from every labeled and every
    already chosen slice.

    Parameters
    ----------
    scores : np.ndarray
        1D per-slice scores, higher meaning more worth annotating (:func:`slice_scores`).
    labeled : iterable of int
        Slices already annotated; never proposed, and their neighbours are suppressed.
    k : int
        Number of slices wanted.
    min_distance : int, optional
        Minimum index gap between any two of the proposed and labeled slices; 1 only
        excludes the labeled slices themselves. Strict when given. By default
        ``max(2, n_slices // (2 * (k + n_labeled)))`` (half the spacing of evenly placed
        slices), relaxed one step at a time down to 1 if fewer than ``k`` slices fit.

    Returns
    -------
    list of int
        Slice indices in the order chosen (best first); fewer than ``k`` only if fewer
        unlabeled slices exist or an explicit ``min_distance`` leaves no room.

    Raises
    ------
    ValueError
        On non-finite or non-1D scores, ``k < 1``, ``min_distance < 1`` or labeled slices out of range.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)):
        raise ValueError("scores must be a finite 1D array")
    k = as_int(k, "k")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    occupied = _check_labeled(labeled, s.size)
    order = np.argsort(-s, kind="stable")
    if min_distance is not None:
        gap = as_int(min_distance, "min_distance")
        if gap < 1:
            raise ValueError(f"min_distance must be at least 1, got {gap}")
        return _greedy(order, occupied, k, gap, s.size)
    chosen: list[int] = []
    for gap in range(_default_min_distance(s.size, k, len(occupied)), 0, -1):
        chosen += _greedy(order, occupied + chosen, k - len(chosen), gap, s.size)
        if len(chosen) == k:
            break
    return chosen


@dataclass(frozen=True)
class SliceSuggestion:
    """A slice proposed for annotation.

    Parameters
    ----------
    volume_index : int
        Index of the volume in the sequence given to :func:`suggest_slices`.
    slice_index : int
        Index of the slice along the slicing axis.
    score : float
        Its slice score (higher: more uncertain).
    """

    volume_index: int
    slice_index: int
    score: float


def _per_volume(value: Any, n_volumes: int, what: str) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n_volumes:
            raise ValueError(f"{what} needs one entry per volume ({n_volumes}), got {len(value)}")
        return list(value)
    return [value] * n_volumes


def suggest_slices(
    uncertainty_volumes: Sequence[np.ndarray],
    labeled: Mapping[int, Iterable[int]],
    axis: int | Sequence[int],
    k: int = 5,
    *,
    min_distance: int | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    reduce: str = "top_fraction",
    top_fraction: float = 0.05,
) -> list[SliceSuggestion]:
    """Propose the ``k`` slices most worth annotating next, across volumes.

    Each volume is ranked with :func:`rank_slices` (spacing applies within a volume),
    then the candidates of all volumes are merged by score. Scores are comparable across
    volumes when the uncertainty is on one scale, as normalised entropy is.

    Parameters
    ----------
    uncertainty_volumes : sequence of np.ndarray
        One 3D uncertainty volume per image.
    labeled : mapping of int to iterable of int
        Labeled slices per volume index; volumes not in the mapping have none.
    axis : int or sequence of int
        Slicing axis, shared or one per volume.
    k : int
        Number of suggestions.
    min_distance : int, optional
        See :func:`rank_slices`.
    masks : sequence of (np.ndarray or None), optional
        Per-volume scoring masks, see :func:`slice_scores`.
    reduce, top_fraction
        See :func:`slice_scores`.

    Returns
    -------
    list of SliceSuggestion
        Best first (ties: lower volume, then lower slice index).

    Raises
    ------
    ValueError
        If ``labeled`` names an unknown volume or a per-volume argument has the wrong length.
    """
    n_volumes = len(uncertainty_volumes)
    unknown = sorted(set(labeled) - set(range(n_volumes)))
    if unknown:
        raise ValueError(f"labeled names volumes {unknown}, but only {n_volumes} volumes were given")
    axes = _per_volume(axis, n_volumes, "axis")
    volume_masks = _per_volume(masks, n_volumes, "masks")
    candidates = []
    for v, uncertainty in enumerate(uncertainty_volumes):
        scores = slice_scores(uncertainty, axes[v], mask=volume_masks[v], reduce=reduce, top_fraction=top_fraction)
        for s in rank_slices(scores, labeled=labeled.get(v, ()), k=k, min_distance=min_distance):
            candidates.append(SliceSuggestion(v, s, float(scores[s])))
    candidates.sort(key=lambda c: (-c.score, c.volume_index, c.slice_index))
    return candidates[:k]
