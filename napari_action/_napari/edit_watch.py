"""Edits of a Labels layer noticed, undo and redo included.

napari emits a paint event for each stroke (and ``data_setitem`` call), but its ``Labels.undo`` and
``redo`` put the voxels back without one: they only refresh the layer, which emits ``set_data`` (as
other refreshes do, e.g. moving the slider). A training that learned from strokes alone kept a stroke
the user took back with Ctrl+Z. :class:`EditWatch` tells an undo or redo from other refreshes by the
lengths of the layer's undo and redo histories, which only history moves change between two strokes.
"""

from __future__ import annotations

from collections.abc import Callable

from napari_action._napari.undone_edits import history_lengths


class EditWatch:
    """Calls ``on_edit(layer)`` after each stroke, undo or redo in ``layer``, and when its data is replaced.

    A stroke is reported as napari's paint event comes (``data_setitem`` emits it before writing the
    voxels); an undo or redo once the voxels are back. A layer hidden while undone is reported when it
    is shown again (napari refreshes only visible layers).

    Parameters
    ----------
    layer : napari.layers.Labels
        The layer to watch (connected on construction, until :meth:`close`).
    on_edit : callable
        Called on the GUI thread with the layer.
    """

    def __init__(self, layer, on_edit: Callable[[object], None]):
        self.layer = layer
        self._on_edit = on_edit
        self._seen = history_lengths(self.layer)
        layer.events.paint.connect(self._on_paint)
        layer.events.set_data.connect(self._on_refresh)
        # ``layer.data = ...`` (labels loaded into the layer from the console or by another plugin) comes with
        # neither a paint event nor a history move (a training went on with the labels the layer no longer held):
        # reported as a stroke is.
        layer.events.data.connect(self._on_paint)

    def close(self) -> None:
        """Stop watching the layer."""
        self.layer.events.paint.disconnect(self._on_paint)
        self.layer.events.set_data.disconnect(self._on_refresh)
        self.layer.events.data.disconnect(self._on_paint)

    def _on_paint(self, event=None) -> None:
        self._seen = history_lengths(self.layer)
        self._on_edit(self.layer)

    def _on_refresh(self, event=None) -> None:
        lengths = history_lengths(self.layer)
        if lengths != self._seen:
            self._seen = lengths
            self._on_edit(self.layer)
