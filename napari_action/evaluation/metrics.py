"""Segmentation metrics: per-class Dice, HD95 and ASD in millimetres.

All metrics compare a predicted label volume with a reference ("truth") label
volume of the same shape, class by class. Surface distances are measured in
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

Conventions
-----------
* The surface of a mask is the set of its voxels with at least one face
  neighbour outside it (``mask XOR erode(mask)``); voxels on the border of the
  volume count as surface.
* Distances go from each surface voxel of one mask to the nearest surface voxel
  of the other, computed with :func:`scipy.ndimage.distance_transform_edt` and
  ``sampling=spacing``.
* HD95 is, by default, the 95th percentile of the two directed distance sets
  *pooled* together (``convention="pooled"``). MedPy (``medpy.metric.hd95``),
  which the ACTION code uses, and MONAI take the maximum of the two directed
  95th percentiles instead (``convention="max"``); that value is never smaller,
  so use it when comparing with published numbers.
* ASD is the average symmetric surface distance: the mean of the pooled
  distances, ``(sum d(a, B) + sum d(b, A)) / (|A| + |B|)``. Note that the ACTION
  paper's "ASD" is MedPy's directed ``asd`` (prediction to truth), in voxels.

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
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from napari_action.checks import as_int, normalize_axis
from napari_action.label_values import as_integer_labels

__all__ = [
    "EvaluationResult",
    "average_surface_distance",
    "dice_per_class",
    "evaluate",
    "hd95",
    "surface_distances",
]

HD95_CONVENTIONS = ("pooled", "max")

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


def _check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be a sequence of {ndim} numbers, got {spacing!r}") from None
    if len(values) != ndim:
        raise ValueError(f"spacing must have one value per axis ({ndim}), got {len(values)}: {spacing!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return values


def _validated_pair(pred_mask: Any, truth_mask: Any, spacing: Any, keep: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate the public distance functions' arguments, then return the directed distances."""
    pred_mask, truth_mask = np.asarray(pred_mask) != 0, np.asarray(truth_mask) != 0
    if pred_mask.shape != truth_mask.shape or pred_mask.ndim == 0:
        raise ValueError(
            f"pred_mask and truth_mask must be arrays of the same shape, got {pred_mask.shape} and {truth_mask.shape}"
        )
    if keep is not None:
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != pred_mask.shape:
            raise ValueError(f"keep must have the masks' shape {pred_mask.shape}, got {keep.shape}")
    return _directed_pair(pred_mask, truth_mask, _check_spacing(spacing, pred_mask.ndim), keep)


def _check_convention(convention: str) -> None:
    if convention not in HD95_CONVENTIONS:
        raise ValueError(f"convention must be one of {HD95_CONVENTIONS}, got {convention!r}")


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


# --------------------------------------------------------------------------- surface distances
def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    # border_value=0: an object cut by the volume edge has its surface on that edge.
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _padded_box(mask: np.ndarray) -> tuple[slice, ...]:
    # Both surfaces lie inside the bounding box of the union, so distances computed in it are exact;
    # the one-voxel margin keeps the erosion identical to the full-volume one.
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, mask.shape, strict=True))


def _distances_to(from_surface: np.ndarray, to_surface: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    # The EDT measures the distance to the nearest zero, so the target surface is made the zeros.
    return ndimage.distance_transform_edt(~to_surface, sampling=spacing)[from_surface]


def _directed_pair(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing: tuple[float, ...], keep: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances pred→truth and truth→pred; both empty when no finite distance exists."""
    empty = (np.empty(0), np.empty(0))
    if keep is None:
        has_both = pred_mask.any() and truth_mask.any()
    else:
        has_both = (pred_mask & keep).any() and (truth_mask & keep).any()
    if not has_both:
        return empty
    box = _padded_box(pred_mask | truth_mask)
    pred_surface, truth_surface = _surface(pred_mask[box]), _surface(truth_mask[box])
    kept = np.ones_like(pred_surface) if keep is None else keep[box]
    pred_to_truth = _distances_to(pred_surface & kept, truth_surface, spacing)
    truth_to_pred = _distances_to(truth_surface & kept, pred_surface, spacing)
    # Only possible with an unusual keep mask (e.g. interior voxels only): no surface point to start from.
    if pred_to_truth.size == 0 or truth_to_pred.size == 0:
        return empty
    return pred_to_truth, truth_to_pred


def _hd95_of(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray, convention: str) -> float:
    if pred_to_truth.size == 0:
        return math.nan
    if convention == "max":
        return float(max(np.percentile(pred_to_truth, 95), np.percentile(truth_to_pred, 95)))
    return float(np.percentile(np.concatenate([pred_to_truth, truth_to_pred]), 95))


def _asd_of(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray) -> float:
    if pred_to_truth.size == 0:
        return math.nan
    return float(np.concatenate([pred_to_truth, truth_to_pred]).mean())


def surface_distances(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing: Sequence[float], *, keep: np.ndarray | None = None
) -> np.ndarray:
    """Symmetric surface distances in millimetres.

    Parameters
    ----------
    pred_mask, truth_mask : np.ndarray
        Binary masks of the same shape (non-zero is foreground).
    spacing : sequence of float
        Voxel size along each axis, in mm; one positive value per axis.
    keep : np.ndarray of bool, optional
        Voxels whose surface points are scored. Distances start only from surface voxels
        inside ``keep`` but are measured to the surfaces of the full masks.

    Returns
    -------
    np.ndarray
        1D float array: the distances from every (kept) surface voxel of ``pred_mask`` to
        the surface of ``truth_mask``, followed by those from ``truth_mask`` to
        ``pred_mask``. Empty when either mask has no (kept) voxel: no finite distance exists.

    Raises
    ------
    ValueError
        If the shapes differ or ``spacing`` is invalid.
    """
    return np.concatenate(_validated_pair(pred_mask, truth_mask, spacing, keep))


def hd95(
    pred_mask: np.ndarray,
    truth_mask: np.ndarray,
    spacing: Sequence[float],
    *,
    keep: np.ndarray | None = None,
    convention: str = "pooled",
) -> float:
    """95th-percentile Hausdorff distance in millimetres.

    Parameters
    ----------
    pred_mask, truth_mask, spacing, keep
        As in :func:`surface_distances`.
    convention : {"pooled", "max"}
        ``"pooled"``: 95th percentile of both directed distance sets together.
        ``"max"``: larger of the two directed 95th percentiles (MedPy / MONAI).

    Returns
    -------
    float
        HD95 in mm; NaN when either mask is empty (no finite distance exists).
    """
    _check_convention(convention)
    return _hd95_of(*_validated_pair(pred_mask, truth_mask, spacing, keep), convention)


def average_surface_distance(
    pred_mask: np.ndarray, truth_mask: np.ndarray, spacing: Sequence[float], *, keep: np.ndarray | None = None
) -> float:
    """Average symmetric surface distance in millimetres.

    Parameters
    ----------
    pred_mask, truth_mask, spacing, keep
        As in :func:`surface_distances`.

    Returns
    -------
    float
        Mean of the pooled distances of both directions; NaN when either mask is empty.
    """
    return _asd_of(*_validated_pair(pred_mask, truth_mask, spacing, keep))


# --------------------------------------------------------------------------- evaluation
def _nanmean(values: Iterable[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    # Avoids numpy's "mean of empty slice" warning when every class is NaN.
    return float(np.mean(finite)) if finite else math.nan


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _format_number(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _align(header: list[str], body: list[list[str]], left: set[int]) -> str:
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in body)])


@dataclass(frozen=True)
class EvaluationResult:
    """Per-class scores of one prediction against one reference volume.

    Parameters
    ----------
    rows : tuple of dict
        One dict per class with keys ``value``, ``name``, ``dice``, ``hd95_mm``,
        ``asd_mm``, ``voxels_truth``, ``voxels_pred`` (counted on the kept slices) and
        ``note`` (why a metric is NaN, else None).
    mean_dice, mean_hd95, mean_asd : float
        NaN-skipping means over the classes (NaN when every class is NaN).
    spacing : tuple of float
        Voxel size in mm used for the distances.
    axis : int or None
        Slicing axis of ``excluded_slices``.
    excluded_slices : tuple of int
        Slices left out of the scoring.
    hd95_convention : str
        ``"pooled"`` or ``"max"``, see the module docstring.
    """

    rows: tuple[dict[str, Any], ...]
    mean_dice: float
    mean_hd95: float
    mean_asd: float
    spacing: tuple[float, ...]
    axis: int | None = None
    excluded_slices: tuple[int, ...] = ()
    hd95_convention: str = "pooled"

    def row(self, value: int) -> dict[str, Any]:
        """Return the row of label ``value``; raises ``KeyError`` if it was not scored."""
        for row in self.rows:
            if row["value"] == value:
                return row
        raise KeyError(f"label value {value} was not scored")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict: plain Python numbers, NaN written as ``None``."""
        return _json_safe(
            {
                "rows": [dict(row) for row in self.rows],
                "mean_dice": self.mean_dice,
                "mean_hd95_mm": self.mean_hd95,
                "mean_asd_mm": self.mean_asd,
                "spacing_mm": list(self.spacing),
                "axis": self.axis,
                "excluded_slices": list(self.excluded_slices),
                "hd95_convention": self.hd95_convention,
            }
        )

    def format_table(self, digits: int = 3) -> str:
        """Return a plain-text table, one line per class and a final line with the means."""
        header = ["value", "name", "Dice", "HD95 [mm]", "ASD [mm]", "voxels truth", "voxels pred", "note"]
        keys = ["value", "name", "dice", "hd95_mm", "asd_mm", "voxels_truth", "voxels_pred", "note"]
        body = [[_format_number(row[k], digits) if k != "note" else row[k] or "" for k in keys] for row in self.rows]
        means = [self.mean_dice, self.mean_hd95, self.mean_asd]
        body.append(["", "mean", *(_format_number(m, digits) for m in means), "", "", ""])
        return _align(header, body, left={1, 7})


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
        raise ValueError("exclude_slices removes every slice: nothing left to score")
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
    distances = _directed_pair(pred_mask, truth_mask, spacing, keep)
    return {
        "value": value,
        "name": name,
        "dice": _dice(pred_kept, truth_kept),
        "hd95_mm": _hd95_of(*distances, convention),
        "asd_mm": _asd_of(*distances),
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
        How the two directions are combined in HD95, see the module docstring.

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
    _check_convention(hd95_convention)
    pred, truth = _check_pair(pred, truth)
    if pred.ndim != 3:
        raise ValueError(f"pred and truth must be 3D volumes, got {pred.ndim} dimensions")
    spacing = _check_spacing(spacing, 3)
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
