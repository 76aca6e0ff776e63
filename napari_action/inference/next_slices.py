"""Which slice to annotate next, with a reason a user can check at a glance.

The uncertainty ranking of :mod:`napari_action.inference.suggestions` proposed slices
outside the anatomy on Colin27 (9 of its 12 picks held no structure, docs/benchmarks.md),
where "nothing here" teaches little. The strategies here look at where the structures are:

* **largest gap** (``"gap"``): the middle of the longest run of unannotated slices inside
  the range where the prediction (or the annotation) holds structure; prediction quality
  falls with the distance to the nearest annotated slice, so this is where most error sits.
* **class missing** (``"coverage"``): a class the network predicts somewhere but no
  annotated slice contains; the slice where it is predicted largest.
* **uncertain** (``"uncertain"``): the most uncertain slice, scored only inside the
  structure range.
* **disagrees** (``"disagreement"``): the slice where the network and the interpolation
  between annotated slices differ most, inside the structure range.
* ``"coverage+gap"``: missing classes first, then largest gaps.

Every function is pure numpy, so the widget and the benchmark use the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from napari_action.checks import normalize_axis

__all__ = ["STRATEGIES", "NextSlice", "next_slices", "structure_range"]

STRATEGIES = ("gap", "coverage", "uncertain", "disagreement", "coverage+gap")
# A class predicted on fewer voxels than this counts as noise, not as a structure to cover.
MIN_CLASS_VOXELS = 20


@dataclass(frozen=True)
class NextSlice:
    """A slice proposed for annotation and why.

    Parameters
    ----------
    slice_index : int
        Index along the slicing axis.
    reason : str
        A word or two for the user: "largest gap", "Amygdala missing", "uncertain", "disagrees".
    score : float
        What the strategy ranked by (gap length, voxels of the missing class, ...).
    """

    slice_index: int
    reason: str
    score: float


def _per_slice(array: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(array, axis, 0).reshape(array.shape[axis], -1)


#: Label values below this are counted with a histogram (np.bincount), in one pass over a slice; others are sorted.
_HISTOGRAM_VALUES = 1 << 16


def _value_counts(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The label values on one slice, ascending, and how many voxels hold each.

    Called for every slice of a prediction each time the Refine panel ranks slices (every few seconds while
    predictions stream, on napari's GUI thread): a slice without structure (most of a CT's) and the widget's
    uint8 layers take the short ways.
    """
    flat = plane.ravel()
    if flat.size and not flat.any():
        return np.zeros(1, flat.dtype), np.array([flat.size])
    if flat.dtype == np.uint8 or _fits_a_histogram(flat):
        # uint64 does not cast to intp by itself
        histogram = np.bincount(flat if flat.dtype == np.uint8 else flat.astype(np.intp, copy=False))
        present = np.flatnonzero(histogram)
        return present.astype(flat.dtype), histogram[present]
    return np.unique(flat, return_counts=True)


def _fits_a_histogram(flat: np.ndarray) -> bool:
    return bool(flat.size) and flat.dtype.kind in "ui" and flat.min() >= 0 and flat.max() < _HISTOGRAM_VALUES


@dataclass(frozen=True)
class _SliceContent:
    """Voxels of each predicted label value on each slice, counted once for all picks of a list."""

    values: np.ndarray  # (V,) label values present, ascending
    counts: np.ndarray  # (S, V) voxels of each value on each slice

    @classmethod
    def of(cls, prediction: np.ndarray, axis: int) -> _SliceContent:
        # Slice by slice: np.unique over the whole volume sorts it with 8-byte indices, 2.7 GB and 14 s on
        # the GUI thread for a 512 x 512 x 400 CT, every few seconds while predictions stream in.
        planes = np.moveaxis(prediction, axis, 0)
        per_slice = [_value_counts(plane) for plane in planes]
        values = np.unique(np.concatenate([present for present, _ in per_slice]))
        counts = np.zeros((len(per_slice), values.size), np.int64)
        for row, (present, count) in zip(counts, per_slice, strict=True):
            row[np.searchsorted(values, present)] = count
        return cls(values, counts)

    def structure_slices(self, min_area_share: float = 0.0) -> np.ndarray:
        """Slices whose structure area is above ``min_area_share`` of the largest slice's (0: any voxel)."""
        area = self.counts[:, self.values != 0].sum(axis=1)
        return np.flatnonzero((area > 0) & (area >= min_area_share * area.max(initial=0)))


def structure_range(prediction: np.ndarray, axis: int, min_area_share: float = 0.0) -> tuple[int, int] | None:
    """First and last slice (inclusive) holding predicted structure (a non-zero label); None if none.

    ``min_area_share`` ignores slices whose structure covers less than that share of the largest
    slice's, so that a few stray voxels far from the anatomy do not stretch the range.
    """
    content = _SliceContent.of(prediction, normalize_axis(axis, prediction.ndim))
    slices = content.structure_slices(min_area_share)
    return (int(slices[0]), int(slices[-1])) if slices.size else None


def _largest_gap(annotated: set[int], low: int, high: int) -> NextSlice | None:
    """Middle of the longest run of unannotated slices in [low, high]; the first such run on ties."""
    best: tuple[int, int] | None = None
    start = None
    for index in range(low, high + 2):
        free = index <= high and index not in annotated
        if free and start is None:
            start = index
        elif not free and start is not None:
            if best is None or index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    if best is None:
        return None
    return NextSlice((best[0] + best[1] - 1) // 2, "largest gap", float(best[1] - best[0]))


def _missing_classes(
    content: _SliceContent, annotated: set[int], annotated_values: set[int], class_names: Mapping[int, str]
) -> list[NextSlice]:
    """For each predicted class on no annotated slice, the unannotated slice where it is largest."""
    found = []
    for column, value in enumerate(content.values.tolist()):
        if value == 0 or value in annotated_values:
            continue
        area = content.counts[:, column].copy()
        area[list(annotated)] = 0
        if area.sum() < MIN_CLASS_VOXELS:
            continue
        name = class_names.get(value, f"label {value}")
        found.append(NextSlice(int(area.argmax()), f"{name} missing", float(area.sum())))
    return sorted(found, key=lambda s: -s.score)


def _best_in_range(scores: np.ndarray, annotated: set[int], low: int, high: int, reason: str) -> NextSlice | None:
    candidates = [i for i in range(low, high + 1) if i not in annotated]
    if not candidates:
        return None
    best = max(candidates, key=lambda i: (scores[i], -i))
    return NextSlice(int(best), reason, float(scores[best]))


def _uncertainty_scores(entropy: np.ndarray, axis: int) -> np.ndarray:
    rows = _per_slice(entropy, axis)
    # The mean of each slice's 5 % most uncertain voxels: a small structure is not diluted by background.
    top = max(1, rows.shape[1] // 20)
    return np.partition(rows, rows.shape[1] - top, axis=1)[:, -top:].mean(axis=1)


def _disagreement_scores(prediction: np.ndarray, interpolation: np.ndarray, axis: int) -> np.ndarray:
    return (_per_slice(prediction, axis) != _per_slice(interpolation, axis)).mean(axis=1)


def _slice_scores(
    strategy: str, prediction: np.ndarray, axis: int, entropy: np.ndarray | None, interpolation: np.ndarray | None
) -> np.ndarray | None:
    """Per-slice scores of the strategies that rank by one (computed once per list)."""
    if strategy == "uncertain":
        if entropy is None:
            raise ValueError("The 'uncertain' strategy needs the entropy volume.")
        return _uncertainty_scores(entropy, axis)
    if strategy == "disagreement":
        if interpolation is None:
            raise ValueError("The 'disagreement' strategy needs the interpolation between annotated slices.")
        return _disagreement_scores(prediction, interpolation, axis)
    return None


def _one_pick(
    strategy: str,
    content: _SliceContent,
    scores: np.ndarray | None,
    annotated: set[int],
    annotated_values: set[int],
    class_names: Mapping[int, str],
    min_area_share: float,
) -> NextSlice | None:
    # The whole-volume prediction keeps the annotated slices' labels, so it already holds their
    # structure; annotated background-only slices must not stretch the range.
    structure = content.structure_slices(min_area_share)
    if structure.size == 0:
        return None
    low, high = int(structure[0]), int(structure[-1])
    if strategy in ("coverage", "coverage+gap"):
        missing = _missing_classes(content, annotated, annotated_values, class_names)
        if missing:
            return missing[0]
        if strategy == "coverage":
            return None
    if strategy in ("gap", "coverage+gap"):
        return _largest_gap(annotated, low, high)
    reason = "uncertain" if strategy == "uncertain" else "disagrees"
    return _best_in_range(scores, annotated, low, high, reason)


def next_slices(
    strategy: str,
    prediction: np.ndarray,
    axis: int,
    annotated: Iterable[int],
    annotated_values: Iterable[int],
    k: int = 5,
    *,
    entropy: np.ndarray | None = None,
    interpolation: np.ndarray | None = None,
    class_names: Mapping[int, str] | None = None,
    min_area_share: float = 0.0,
) -> list[NextSlice]:
    """Up to ``k`` slices to annotate next with ``strategy`` (one of :data:`STRATEGIES`).

    The list is built one pick at a time, each pick counted as annotated for the next,
    so a list follows the strategy as a user accepting the slices in order would.

    Parameters
    ----------
    prediction : np.ndarray
        The current 3D label prediction (label values, 0 = background).
    axis : int
        Slicing axis.
    annotated : iterable of int
        Slices already annotated (painted or accepted).
    annotated_values : iterable of int
        Label values present on the annotated slices (a class outside them is "missing").
    entropy, interpolation : np.ndarray, optional
        Normalised entropy of the prediction (``"uncertain"``) and the interpolation
        between annotated slices (``"disagreement"``).
    class_names : mapping of int to str, optional
        Names used in the reasons.
    min_area_share : float
        The structure range only counts slices whose predicted structure covers at least this
        share of the largest slice's (0: any predicted voxel counts).

    Raises
    ------
    ValueError
        An unknown strategy, or one whose input is missing.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    axis = normalize_axis(axis, prediction.ndim)
    content = _SliceContent.of(prediction, axis)
    scores = _slice_scores(strategy, prediction, axis, entropy, interpolation)
    taken = {int(i) for i in annotated}
    values = {int(v) for v in annotated_values}
    picks: list[NextSlice] = []
    while len(picks) < k:
        pick = _one_pick(strategy, content, scores, taken, values, class_names or {}, min_area_share)
        if pick is None or pick.slice_index in taken:
            break
        picks.append(pick)
        taken.add(pick.slice_index)
        # Annotating that slice would reveal the classes predicted on it.
        values |= set(content.values[content.counts[pick.slice_index] > 0].tolist())
    return picks
