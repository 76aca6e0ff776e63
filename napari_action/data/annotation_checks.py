"""The arguments of :class:`~napari_action.data.annotations.SparseAnnotation`, checked one by one.

Each check raises ``ValueError`` (``TypeError`` for a wrong kind of object)
with a message that names the volume and says what is wrong, before any label
is copied.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from napari_action.data.painted_slices import PaintedSlices, PaintProfile
from napari_action.data.slicing_axis import label_array
from napari_action.label_values import check_label_dtype

__all__ = ["check_background", "check_extra_slices", "check_labels", "check_mode", "check_shapes"]


def check_mode(mode: str) -> str:
    """``mode`` if it is ``"slice"`` or ``"scribble"``."""
    if mode not in ("slice", "scribble"):
        raise ValueError(f"mode must be 'slice' or 'scribble', got {mode!r}.")
    return mode


def check_background(mode: str, background_value: int | None) -> int | None:
    """The painted value meaning background: required (positive) in scribble mode, none in slice mode."""
    if mode == "slice":
        if background_value not in (None, 0):
            raise ValueError("background_value is only used in scribble mode (slice mode background is 0).")
        return None
    if background_value is None:
        raise ValueError("Scribble mode needs background_value: the label value painted as background.")
    if int(background_value) != background_value or background_value <= 0:
        raise ValueError(f"background_value must be a positive integer (0 means unpainted), got {background_value}.")
    return int(background_value)


def check_shapes(shapes: Sequence[tuple[int, ...]]) -> tuple[tuple[int, int, int], ...]:
    """The volumes' shapes as tuples of int; at least one, each 3D and non-empty."""
    checked = []
    for v, shape in enumerate(shapes):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"Volume {v} must be a non-empty 3D array, got shape {shape}.")
        checked.append(shape)
    if not checked:
        raise ValueError("At least one volume is needed.")
    return tuple(checked)


def check_labels(
    labels: Sequence[np.ndarray | None], shapes: tuple[tuple[int, int, int], ...]
) -> list[np.ndarray | PaintedSlices | None]:
    """Check shapes and dtypes; return arrays (not copies) padded with ``None``."""
    if len(labels) > len(shapes):
        raise ValueError(f"Got {len(labels)} label arrays for {len(shapes)} volumes.")
    arrays: list[np.ndarray | PaintedSlices | None] = [None] * len(shapes)
    for v, label in enumerate(labels):
        if label is None:
            continue
        if isinstance(label, PaintProfile) and not isinstance(label, PaintedSlices):
            raise TypeError(f"Labels of volume {v}: a paint profile holds no slices; use read_painted_slices.")
        array = label_array(label)
        if tuple(array.shape) != shapes[v]:
            raise ValueError(f"Labels of volume {v} have shape {array.shape}, but the volume has shape {shapes[v]}.")
        if isinstance(array, np.ndarray):  # the painted slices of a lazily read file were checked while read
            check_label_dtype(array.dtype, f"Labels of volume {v}")
        arrays[v] = array
    return arrays


def check_extra_slices(labeled_slices: Mapping[int, Iterable[int]] | None, n_volumes: int) -> dict[int, set[int]]:
    """Volume index → the slices marked as labeled without paint.

    Indices must be non-negative here; their upper bound depends on the slicing axis, checked once it is known.
    """
    extra: dict[int, set[int]] = {}
    for v, slices in (labeled_slices or {}).items():
        if not 0 <= int(v) < n_volumes:
            raise ValueError(f"labeled_slices names volume {v}, but there are {n_volumes} volumes.")
        indices = {int(s) for s in slices}
        if any(s < 0 for s in indices):
            raise ValueError(f"Labeled slice indices of volume {v} must be >= 0, got {sorted(indices)}.")
        extra[int(v)] = indices
    return extra
