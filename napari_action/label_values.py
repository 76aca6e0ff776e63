"""Integer label maps: checking that an array holds labels, and the dtype to store them in.

Label maps reach the core from NIfTI files (often as floats), napari layers,
command-line files and Python callers. Every entry point checks them here, so
they all accept and refuse the same things with the same messages. Only numpy
is needed, so file readers can use this without importing torch.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["MAX_CLASSES", "as_integer_labels", "check_class_count", "check_label_dtype", "smallest_label_dtype"]

#: The most structures (label values other than background) one model learns. A scan given as
#: labels holds thousands of values and would train a network with as many outputs, for hours.
MAX_CLASSES = 255

# Tried in this order; int16 comes before uint16 because older NIfTI tools read
# signed 16-bit files more reliably.
_LABEL_DTYPES = (np.uint8, np.int16, np.uint16, np.int32, np.int64)


def smallest_label_dtype(values: ArrayLike) -> np.dtype:
    """Return the smallest integer dtype that holds every value of ``values``.

    Parameters
    ----------
    values : array-like
        A label array, or a list of label values (e.g. a model's class values).
        Empty input gives uint8.

    Returns
    -------
    numpy.dtype
        The first of uint8, int16, uint16, int32, int64 whose range holds
        the minimum and maximum value.

    Raises
    ------
    ValueError
        If the values do not fit a 64-bit signed integer.
    """
    values = np.asarray(values)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for candidate in _LABEL_DTYPES:
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    raise ValueError(f"Label values {low}..{high} do not fit a 64-bit signed integer.")


def check_label_dtype(dtype: np.dtype, what: str) -> None:
    """Raise ``ValueError`` unless ``dtype`` can hold labels (bool, integer or float).

    Parameters
    ----------
    dtype : numpy.dtype
        The array's dtype. Floats pass here; :func:`as_integer_labels` checks
        that their values are whole numbers.
    what : str
        The array in the error message, e.g. ``"Labels of volume 0"``.
    """
    if np.dtype(dtype).kind not in "biuf":
        raise ValueError(f"{what} must be integers, got dtype {dtype}.")


def as_integer_labels(data: ArrayLike, what: str, *, non_negative: bool = False) -> np.ndarray:
    """Return ``data`` as an integer label array, or raise if it does not hold labels.

    Parameters
    ----------
    data : array-like
        Integer, bool or float labels.
    what : str
        The array in error messages, a plural noun: ``"Labels of volume 0"``,
        ``"scan.nii.gz: labels"``.
    non_negative : bool
        Refuse negative values too (where negative values mean something else,
        e.g. the ignore index of training targets).

    Returns
    -------
    numpy.ndarray
        Integer arrays unchanged (not copied); bool as uint8; floats holding
        whole numbers converted to :func:`smallest_label_dtype`.

    Raises
    ------
    ValueError
        If the dtype is not numeric, values are NaN, infinite or fractional, or
        (with ``non_negative``) negative.
    """
    data = np.asarray(data)
    check_label_dtype(data.dtype, what)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    elif data.dtype.kind == "f":
        data = _whole_floats_as_integers(data, what)
    if non_negative and data.size and data.min() < 0:
        raise ValueError(
            f"{what} contain negative values (min {data.min()}); label values must be >= 0: "
            "0 means not painted and each class is a positive number."
        )
    return data


def _whole_floats_as_integers(data: np.ndarray, what: str) -> np.ndarray:
    non_finite = int(np.count_nonzero(~np.isfinite(data)))
    if non_finite:
        raise ValueError(
            f"{what} contain NaN or infinite values ({non_finite} of {data.size}); labels must be whole numbers."
        )
    fractional = data != np.round(data)
    if fractional.any():
        raise ValueError(
            f"{what} must be whole numbers, found {int(fractional.sum())} of {data.size} values that are not "
            f"(e.g. {data[fractional].flat[0]}); this looks like an intensity image, not a label map."
        )
    return data.astype(smallest_label_dtype(data))


def check_class_count(values: ArrayLike, what: str) -> None:
    """Refuse more than :data:`MAX_CLASSES` distinct label values other than 0.

    Parameters
    ----------
    values : array-like
        A label array, or its distinct values.
    what : str
        The labels in the message, a plural noun (as for :func:`as_integer_labels`).

    Raises
    ------
    ValueError
        Naming how many values there are, and why that points at a scan.
    """
    distinct = np.unique(np.asarray(values))
    count = int(np.count_nonzero(distinct))
    if count > MAX_CLASSES:
        raise ValueError(
            f"{what} hold {count} different values (from {distinct[0]} to {distinct[-1]}), more than the "
            f"{MAX_CLASSES} structures one model learns: that is a scan, most likely, not a label map."
        )
