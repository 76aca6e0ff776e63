"""Segmentation metrics: per-class Dice, and the evaluation report with HD95 and ASD in millimetres.

All metrics compare a predicted label volume with a reference ("truth") label
volume of the same shape, class by class. Surface distances
(:mod:`napari_action.evaluation.surface_distance`) are measured in
millimetres using the voxel spacing of the volume, never in voxels as in the
reference code (docs/method.md, "Where we deliberately differ", difference 8).

Empty-class rules
-----------------
A class may be missing from the prediction, from the truth, or from both (for
example a structure that is absent from the scored slices). The reference code
scored a false positive on an empty truth as Dice 1 and an empty prediction on
an empty truth as Dice 0 (docs/method.md, difference 9). Here:

=================  =================  ======  ==============  ============================
Truth              Prediction         Dice    HD95 / ASD      Class means
=================  =================  ======  ==============  ============================
empty              empty              NaN     NaN             excluded (``nanmean``)
empty              not empty          0.0     NaN             Dice counts as 0
not empty          empty              0.0     NaN             Dice counts as 0
not empty          not empty          value   value (mm)      included
=================  =================  ======  ==============  ============================

A surface distance needs a surface on both sides, so when either side is empty
no finite distance exists and HD95 / ASD are NaN; :func:`evaluate` records the
reason in the row's ``note``. The penalty for such a class is carried by its
Dice of 0, which does enter the mean Dice.

Excluding slices
----------------
:func:`evaluate` can leave out slices (typically the annotated ones, so the
score measures generalisation to the other slices). The volume is *not*
shortened, because distances across deleted slices would be wrong. Instead:

* Dice and voxel counts use the kept voxels only.
* For surface distances the excluded slices are "don't care": the prediction
  is taken equal to the truth there, then surfaces and distance transforms are
  computed on the full 3D masks, and distances start only from surface voxels
  on kept slices. Without that substitution an error on an excluded slice would
  still move the surface on its kept neighbours (a hole on slice z makes the
  facing voxels of slices z +/- 1 surface voxels); with it, the result does not
  depend on the prediction on excluded slices at all.
* The empty-class rules apply to the kept voxels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_action.checks import as_int, normalize_axis
from napari_action.evaluation.result import EvaluationResult
from napari_action.evaluation.surface_distance import (
    asd_from,
    check_convention,
    check_spacing,
    directed_distances,
    hd95_from,
)
from napari_action.label_values import as_integer_labels

__all__ = ["dice_per_class", "evaluate"]

_NOTE_BOTH_EMPTY = "absent from truth and prediction: excluded from the means"
_NOTE_TRUTH_EMPTY = "absent from truth (false positive): Dice 0, no surface distance"
_NOTE_PRED_EMPTY = "not predicted (missed): Dice 0, no surface distance"


# --------------------------------------------------------------------------- validation
def _check_pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    # NIfTI label maps often arrive as floats (get_fdata); whole numbers are accepted.
    pred = as_integer_labels(pred, "pred labels")
    truth = as_integer_labels(truth, "truth labels")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape, got {pred.shape} and {truth.shape}")
    return pred, truth


def _resolve_class_values(class_values: Iterable[Any] | None, pred: np.ndarray, truth: np.ndarray) -> list[int]:
    if class_values is None:
        present = np.union1d(np.unique(pred), np.unique(truth))
        return [int(v) for v in present if v != 0]
    values = [as_int(v, "class value") for v in class_values]
    if len(set(values)) != len(values):
        raise ValueError(f"class_values must not repeat a value, got {values}")
    return values


# --------------------------------------------------------------------------- Dice
def _dice(pred_mask: np.ndarray, truth_mask: np.ndarray) -> float:
    n_pred = np.count_nonzero(pred_mask)
    n_truth = np.count_nonzero(truth_mask)
    if n_pred + n_truth == 0:
        return math.nan
    return 2.0 * np.count_nonzero(pred_mask & truth_mask) / (n_pred + n_truth)


def dice_per_class(pred: np.ndarray, truth: np.ndarray, class_values: Iterable[int] | None = None) -> dict[int, float]:
    """Dice coefficient for each label value.

    Parameters
    ----------
    pred, truth : np.ndarray
        Integer label arrays of the same shape (floats holding whole numbers are accepted).
    class_values : iterable of int, optional
        Label values to score. By default the union of the non-zero values found in
        ``pred`` and ``truth``; background (0) is scored only if listed here.

    Returns
    -------
    dict of int to float
        Dice per value, in the order of ``class_values`` (ascending by default). NaN when
        the value is absent from both arrays; 0.0 when it is absent from exactly one.

    Raises
    ------
    ValueError
        If the shapes differ or the arrays do not hold integer labels.
    """
    pred, truth = _check_pair(pred, truth)
    return {v: _dice(pred == v, truth == v) for v in _resolve_class_values(class_values, pred, truth)}


# --------------------------------------------------------------------------- evaluation
def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    # Avoids numpy's "mean of empty slice" warning when every class is NaN.
    return float(np.mean(finite)) if finite else math.nan


def _check_excluded(
    exclude_slices: Iterable[int] | None, axis: int | None, shape: tuple[int, ...]
) -> tuple[int | None, tuple[int, ...]]:
    if axis is not None:
        axis = normalize_axis(axis, len(shape))
    indices = sorted({as_int(i, "slice index") for i in (exclude_slices or ())})
    if not indices:
        return axis, ()
    if axis is None:
        raise ValueError("exclude_slices needs the slicing axis: pass axis=")
    bad = [i for i in indices if not 0 <= i < shape[axis]]
    if bad:
        raise ValueError(f"excluded slices {bad} are outside [0, {shape[axis] - 1}] along axis {axis}")
    if len(indices) == shape[axis]:
        raise ValueError(f"all {shape[axis]} slices along axis {axis} are excluded: nothing is left to score")
    return axis, tuple(indices)


def _keep_mask(shape: tuple[int, ...], axis: int | None, excluded: tuple[int, ...]) -> np.ndarray | None:
    if not excluded:
        return None
    kept_slices = np.ones(shape[axis], dtype=bool)
    kept_slices[list(excluded)] = False
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(kept_slices.reshape(view), shape)


def _note(n_pred: int, n_truth: int) -> str | None:
    if n_pred == 0 and n_truth == 0:
        return _NOTE_BOTH_EMPTY
    if n_truth == 0:
        return _NOTE_TRUTH_EMPTY
    if n_pred == 0:
        return _NOTE_PRED_EMPTY
    return None


def _score_class(
    pred: np.ndarray,
    truth: np.ndarray,
    value: int,
    name: str,
    spacing: tuple[float, ...],
    keep: np.ndarray | None,
    convention: str,
) -> dict[str, Any]:
    pred_mask, truth_mask = pred == value, truth == value
    pred_kept = pred_mask if keep is None else pred_mask & keep
    truth_kept = truth_mask if keep is None else truth_mask & keep
    n_pred, n_truth = int(np.count_nonzero(pred_kept)), int(np.count_nonzero(truth_kept))
    distances = directed_distances(pred_mask, truth_mask, spacing, keep)
    return {
        "value": value,
        "name": name,
        "dice": _dice(pred_kept, truth_kept),
        "hd95_mm": hd95_from(*distances, convention),
        "asd_mm": asd_from(*distances),
        "voxels_truth": n_truth,
        "voxels_pred": n_pred,
        "note": _note(n_pred, n_truth),
    }


def evaluate(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    class_values: Iterable[int] | None = None,
    exclude_slices: Iterable[int] | None = None,
    axis: int | None = None,
    class_names: Mapping[int, str] | None = None,
    hd95_convention: str = "pooled",
) -> EvaluationResult:
    """Score a predicted label volume against a reference, class by class.

    Parameters
    ----------
    pred, truth : np.ndarray
        3D integer label volumes of the same shape.
    spacing : sequence of 3 float
        Voxel size in mm along each array axis (e.g. ``VolumeMeta`` zooms).
    class_values : iterable of int, optional
        Label values to score; default: every non-zero value in ``pred`` or ``truth``.
    exclude_slices : iterable of int, optional
        Slices along ``axis`` to leave out (e.g. the annotated ones); see the module docstring.
    axis : int, optional
        Slicing axis; required when ``exclude_slices`` is not empty.
    class_names : mapping of int to str, optional
        Display names by label value; unnamed values are shown as their number.
    hd95_convention : {"pooled", "max"}
        How the two directions are combined in HD95, see
        :mod:`napari_action.evaluation.surface_distance`.

    Returns
    -------
    EvaluationResult
        Per-class rows and NaN-skipping class means.

    Raises
    ------
    ValueError
        If the volumes are not 3D, differ in shape, hold non-integer labels, the spacing is
        not three positive numbers, or the excluded slices are invalid.
    """
    check_convention(hd95_convention)
    pred, truth = _check_pair(pred, truth)
    if pred.ndim != 3:
        raise ValueError(f"pred and truth must be 3D volumes, got {pred.ndim} dimensions")
    spacing = check_spacing(spacing, 3)
    axis, excluded = _check_excluded(exclude_slices, axis, pred.shape)
    keep = _keep_mask(pred.shape, axis, excluded)
    if keep is not None:
        # "Don't care" on excluded slices, see the module docstring.
        pred = np.where(keep, pred, truth)
    names = dict(class_names or {})
    rows = tuple(
        _score_class(pred, truth, v, str(names.get(v, v)), spacing, keep, hd95_convention)
        for v in _resolve_class_values(class_values, pred, truth)
    )
    return EvaluationResult(
        rows=rows,
        mean_dice=_nanmean(r["dice"] for r in rows),
        mean_hd95=_nanmean(r["hd95_mm"] for r in rows),
        mean_asd=_nanmean(r["asd_mm"] for r in rows),
        spacing=spacing,
        axis=axis,
        excluded_slices=excluded,
        hd95_convention=hd95_convention,
    )
