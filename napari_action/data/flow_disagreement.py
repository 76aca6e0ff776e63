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
        self._first = signed_distances(first.argmax(axis=0), len(first), in_plane)
        self._last = signed_distances(last.argmax(axis=0), len(last), in_plane)
        self._agreement = agreement

    def where_flows_disagree(self, blended: np.ndarray, forward: np.ndarray, backward: np.ndarray, t: float) -> None:
        """Replace, in ``blended`` (C, H, W) itself, each structure whose two carried masks disagree."""
        replaced = False
        for c in range(1, len(blended)):
            a, b = self._first[c], self._last[c]
            if a is None or b is None or _overlap(forward[c] >= 0.5, backward[c] >= 0.5) >= self._agreement:
                continue
            blended[c] = blended_field(a, b, t) > 0
            replaced = True
        if replaced:
            blended[0] = np.clip(1.0 - blended[1:].sum(axis=0), 0.0, None)


def _overlap(one: np.ndarray, other: np.ndarray) -> float:
    """Dice of two masks (1 when both are empty)."""
    total = np.count_nonzero(one) + np.count_nonzero(other)
    return 2.0 * np.count_nonzero(one & other) / total if total else 1.0
