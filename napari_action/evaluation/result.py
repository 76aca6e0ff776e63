"""The scores of one prediction against its reference: per-class rows, class means, a JSON dict, a table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["EvaluationResult"]


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
        ``"pooled"`` or ``"max"``, see :mod:`napari_action.evaluation.surface_distance`.
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
        body = [[_format_cell(k, row[k], digits) for k in keys] for row in self.rows]
        means = [("dice", self.mean_dice), ("hd95_mm", self.mean_hd95), ("asd_mm", self.mean_asd)]
        body.append(["", "mean", *(_format_cell(k, m, digits) for k, m in means), "", "", ""])
        return _align(header, body, left={1, 7})


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


def _format_cell(key: str, value: Any, digits: int) -> str:
    if key == "note":
        return value or ""
    if key in ("hd95_mm", "asd_mm") and isinstance(value, float) and 0 < abs(value) < 0.1:
        # A microscope's stack read in mm has distances of micrometres: "0.000" in fixed decimals.
        return f"{value:.{digits}g}"
    return _format_number(value, digits)


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
