"""Where the flows from two painted thick slices disagree, the structure is drawn by its painted shapes.

Used by :mod:`~napari_action.data.propagation` between two painted slices at least
:data:`~napari_action.data.carried_ends.THICK_SLICES` times thicker than their pixels.
"""

from __future__ import annotations

import numpy as np

from napari_action.data.interpolation import blended_field, signed_distances

__all__ = ["PaintedShapes"]


class PaintedShapes:
    """Shape interpolation between two painted thick slices, for the structures whose flows disagree.

    Between slices 6.5 mm apart a small structure can move or change more than a flow follows: carried
    from either side it lands in two places, and the blend of the two keeps neither (a tumour on the one
    slice between two painted ones: 0.13 Dice, shape interpolation 0.63). Where the masks carried from
    the two sides overlap by less than ``agreement`` (Dice) on a slice, the structure there is drawn by
    interpolating its painted shapes. Only for structures painted on both sides: one painted on one
    side only is expected to disappear from the other's flow.
    """

    def __init__(self, first: np.ndarray, last: np.ndarray, in_plane: tuple[float, float], agreement: float):
        self._labels = (first.argmax(axis=0), last.argmax(axis=0))
        self._num_classes = len(first)
        self._in_plane = in_plane
        self._agreement = agreement
        # Painted on both sides: the only structures this can replace.
        present = [np.isin(np.arange(self._num_classes), labels) for labels in self._labels]
        self._both = present[0] & present[1]
        self._distances: tuple[list, list] | None = None  # computed on the first disagreement only

    def where_flows_disagree(self, blended: np.ndarray, forward: np.ndarray, backward: np.ndarray, t: float) -> None:
        """Replace, in ``blended`` (C, H, W) itself, each structure whose two carried masks disagree."""
        replaced = False
        for c in range(1, len(blended)):
            if not self._both[c] or _overlap(forward[c] >= 0.5, backward[c] >= 0.5) >= self._agreement:
                continue
            first, last = self._signed_distances()
            blended[c] = blended_field(first[c], last[c], t) > 0
            replaced = True
        if replaced:
            blended[0] = np.clip(1.0 - blended[1:].sum(axis=0), 0.0, None)

    def _signed_distances(self) -> tuple[list, list]:
        if self._distances is None:
            first, last = (signed_distances(labels, self._num_classes, self._in_plane) for labels in self._labels)
            self._distances = (first, last)
        return self._distances


def _overlap(one: np.ndarray, other: np.ndarray) -> float:
    """Dice of two masks (1 when both are empty)."""
    total = np.count_nonzero(one) + np.count_nonzero(other)
    return 2.0 * np.count_nonzero(one & other) / total if total else 1.0
