"""Argument checks shared by the core: whole numbers, axis indices and voxel sizes.

Only the standard library is used, so every module can rely on these checks
without pulling in anything heavy.
"""

from __future__ import annotations

import contextlib
import math
import operator
from typing import Any

__all__ = ["as_int", "check_spacing", "normalize_axis"]


def as_int(value: Any, what: str) -> int:
    """Return ``value`` as an ``int`` if it is a whole number, else raise.

    Parameters
    ----------
    value : Any
        An integer (Python or numpy), or a float or string holding a whole number
        (``3.0``, ``"3"``); command lines and JSON files hand over such values.
    what : str
        Name of the value in the error message, e.g. ``"axis"``.

    Returns
    -------
    int
        The value.

    Raises
    ------
    ValueError
        If ``value`` is not a whole number.
    """
    # Integers go through operator.index, so large ones keep every digit (a float
    # round trip would round 2**60 + 1).
    with contextlib.suppress(TypeError):
        return operator.index(value)
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an integer, got {value!r}") from None
    if not as_float.is_integer():
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(as_float)


def normalize_axis(axis: Any, ndim: int) -> int:
    """Return ``axis`` of an ``ndim``-dimensional array as a non-negative index.

    Parameters
    ----------
    axis : Any
        Axis index; negative values count from the end, as in numpy.
    ndim : int
        Number of dimensions.

    Returns
    -------
    int
        The axis in ``[0, ndim)``.

    Raises
    ------
    ValueError
        If ``axis`` is not a whole number or lies outside ``[-ndim, ndim)``.
    """
    axis = as_int(axis, "axis")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for {ndim} dimensions: use {-ndim} to {ndim - 1}.")
    return axis % ndim


def check_spacing(spacing: Any, ndim: int) -> tuple[float, ...]:
    """Return ``spacing`` as ``ndim`` voxel sizes (mm, one per array axis), each positive and finite.

    Raises
    ------
    ValueError
        Not ``ndim`` numbers (one number, a string, too few or too many), or a size that is zero,
        negative, NaN or infinite; the message says what to give instead.
    """
    how = f"give {ndim} voxel sizes in mm, one per array axis (the meta.zooms of load_volume)"
    try:
        values = tuple(float(size) for size in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be a sequence of {ndim} numbers, got {spacing!r}: {how}.") from None
    if len(values) != ndim:
        raise ValueError(f"spacing must have one value per axis ({ndim}), got {len(values)}: {spacing!r}; {how}.")
    if not all(math.isfinite(size) and size > 0 for size in values):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}; {how}.")
    return values
