"""Optional clean-up of a predicted label volume.

A 2D network predicts each slice on its own, so it leaves stray blobs on
slices far from any painted one. Most anatomical structures are one connected
piece per side, so keeping the largest 3D connected components of each class
removes those blobs (measured on Colin27 in docs/benchmarks.md). Structures
that really are several pieces (left and right under one label) need
``keep=2``; the option is off by default for that reason.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def keep_largest_components(labels: np.ndarray, keep: int = 1, background: int = 0) -> np.ndarray:
    """Keep the ``keep`` largest 3D connected components of every label value.

    Parameters
    ----------
    labels : np.ndarray
        Integer label volume; it is not modified.
    keep : int
        Number of components kept per label value (2 for paired structures
        labelled alike on both sides).
    background : int
        Value of removed voxels.

    Returns
    -------
    np.ndarray
        A cleaned copy, same shape and dtype.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}.")
    cleaned = labels.copy()
    for value in np.unique(labels):
        if value == background:
            continue
        mask = labels == value
        components, count = ndimage.label(mask)
        if count <= keep:
            continue
        sizes = np.bincount(components.ravel())[1:]
        kept = np.argsort(sizes)[::-1][:keep] + 1
        cleaned[mask & ~np.isin(components, kept)] = background
    return cleaned
