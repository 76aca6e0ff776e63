"""Which voxels an undo in a Labels layer gave back: the edits it took away, found in napari's history.

napari's ``Labels.undo`` and ``redo`` move one history item (the atoms of one stroke) between the
layer's undo and redo histories and put the voxels back without a paint event (see
:mod:`napari_action._napari.edit_watch`). A prediction layer locks the voxels the user edited
against streamed writes; after an undo, the voxels of the undone stroke that no stroke still in the
undo history touched are the network's again. napari keeps no public API for its history: the two
private deques are read here, in one place (:class:`~napari_action._napari.edit_watch.EditWatch`
reads their lengths through :func:`history_lengths` too).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["HistoryMove", "history_lengths", "history_move", "last_redone_atoms", "undone_voxels"]

#: What changed a layer's history between two looks: "undo", "redo", or None (a stroke, or nothing).
HistoryMove = str | None


def history_lengths(layer) -> tuple[int, int]:
    """(undo, redo) history lengths of a Labels layer ((0, 0) for a layer without them)."""
    return len(getattr(layer, "_undo_history", ())), len(getattr(layer, "_redo_history", ()))


def history_move(before: tuple[int, int], after: tuple[int, int]) -> HistoryMove:
    """One undo moves an item from the undo history to the redo history; one redo moves it back. A
    stroke adds to the undo history and clears the redo history (and comes with a paint event)."""
    (undo_before, redo_before), (undo_after, redo_after) = before, after
    if undo_after == undo_before - 1 and redo_after == redo_before + 1:
        return "undo"
    if undo_after == undo_before + 1 and redo_after == redo_before - 1:
        return "redo"
    return None


def _atom_voxels(atom, mask: np.ndarray) -> None:
    """Set ``mask`` on the voxels one history atom changed (mask + bounding box, or an indices tuple)."""
    if hasattr(atom, "slice_key"):
        region = mask[atom.slice_key]
        if atom.mask is None:  # the whole bounding box changed
            region[...] = True
        else:
            region[atom.mask] = True
    else:
        indices = tuple(np.asarray(i) for i in atom[0])
        if indices and np.size(indices[0]):
            mask[indices] = True


def _items_voxels(items: Iterable, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for item in items:
        for atom in item:
            _atom_voxels(atom, mask)
    return mask


def undone_voxels(layer, shape: tuple[int, ...]) -> np.ndarray:
    """After an undo: the voxels of the undone item that no item left in the undo history changed.

    Edits older than napari's history keeps are not known here: a voxel one of them changed and the
    undone stroke changed again is given back too.
    """
    redo = getattr(layer, "_redo_history", ())
    if not redo:
        return np.zeros(shape, dtype=bool)
    undone = _items_voxels([redo[-1]], shape)
    kept = _items_voxels(getattr(layer, "_undo_history", ()), shape)
    return undone & ~kept


def last_redone_atoms(layer) -> list:
    """After a redo: the atoms of the item it replayed (the undo history's last)."""
    undo = getattr(layer, "_undo_history", ())
    return list(undo[-1]) if undo else []
