"""A viewer key binding owned by a dock widget.

napari keeps viewer key bindings in a plain dict on the viewer, which outlives
any dock widget. :class:`ViewerKeyBinding` binds a key to a method held by
weak reference (the keymap must not keep the widget alive), gives the key
back (restoring whatever it was bound to before) when released, and only
if the key still belongs to it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from weakref import WeakMethod

from napari.utils.key_bindings import coerce_keybinding

logger = logging.getLogger(__name__)


class ViewerKeyBinding:
    """Bind ``key`` on ``viewer`` to ``method`` until :meth:`release`.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Viewer whose keymap receives the key.
    key : str
        napari key combination, e.g. ``"Shift-A"``.
    method : bound method
        Called without arguments on a key press (held weakly).
    """

    def __init__(self, viewer, key: str, method: Callable[[], object]):
        self.viewer = viewer
        self.key = key
        self._method = WeakMethod(method)
        # napari reads the name of every bound function on each key typed on the canvas: without one,
        # that raised AttributeError and no key on the canvas reached napari's own bindings.
        self.__name__ = f"napari_action_{method.__name__}"
        self._previous = None
        self.bound = False
        self.bind()

    def __call__(self, viewer=None) -> None:
        """napari calls this with the viewer on a key press."""
        method = self._method()
        if method is not None:
            method()

    def _key(self):
        return coerce_keybinding(self.key)

    def bind(self) -> None:
        """Take the key (``overwrite=True``: the previous binding is kept to be restored)."""
        if not self.bound:
            self._previous = self.viewer.bind_key(self.key, self, overwrite=True)
            self.bound = True

    def release(self, *_) -> None:
        """Give the key back, unless someone else rebound it meanwhile."""
        if not self.bound:
            return
        self.bound = False
        if self.viewer.keymap.get(self._key()) is not self:
            return
        self.viewer.bind_key(self.key, self._previous, overwrite=True)
        self._previous = None
        logger.debug("released key %s", self.key)
