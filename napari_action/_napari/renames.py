"""An image layer renamed in the viewer: what the widget keeps by image name follows it.

Prediction layers know their image by name (:data:`~napari_action._napari.layers.SOURCE_KEY`), and so
do the accepted slices, the uncertainty maps and the layer picker's choices. A rename left them on the
old name: Predict made a second "<new name> ACTION" layer without the user's corrections, the first one
was exported as well, and the accepted slices no longer counted. An image closed leaves its prediction layer
to ``<name> (closed)``, not to the next image opened under its name.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from napari.layers import Image

from napari_action._napari.layers import PREDICTION_SUFFIX, SOURCE_KEY, prediction_source


class ImageRenames:
    """Follows the names of the viewer's image layers; on a rename, moves the prediction layers to the new name.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        Whose image layers to follow.
    followers : sequence of callables
        Called with ``(old, new)`` after each rename: the other keepers of something by image name.
    on_closed : sequence of callables
        Called with ``(name, detached)`` when an image with a prediction layer is closed: the keepers of what
        that layer holds (its accepted slices), which go with it to its new name (:meth:`_detach`).
    """

    def __init__(
        self,
        viewer,
        followers: Sequence[Callable[[str, str], None]],
        on_closed: Sequence[Callable[[str, str], None]] = (),
    ):
        self.viewer = viewer
        self.followers = list(followers)
        self.on_closed = list(on_closed)
        self._names: dict[int, str] = {}  # id(layer) -> its name before the event that renames it
        # Bound methods: napari holds them weakly, so nothing here outlives the widget that owns it.
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in viewer.layers:
            self._follow(layer)

    def _on_inserted(self, event) -> None:
        self._follow(event.value)

    def _on_removed(self, event) -> None:
        if self._names.pop(id(event.value), None) is not None:
            self._detach(event.value.name)

    def _detach(self, name: str) -> None:
        """A closed image's prediction layers (the user's corrections, kept) become those of ``<name> (closed)``.

        Known by the name alone, they were taken for the prediction of the next image opened under that name (the
        same file name in another folder): its Predict kept the closed scan's corrections, Train learnt its
        accepted slices on the new scan, and Export wrote them with the new scan's header.
        """
        predictions = [layer for layer in self.viewer.layers if prediction_source(layer) == name]
        if not predictions:
            return
        sources = {prediction_source(layer) for layer in self.viewer.layers}
        detached = f"{name} (closed)"
        for count in itertools.count(2):
            if detached not in sources and detached not in self.viewer.layers:
                break
            detached = f"{name} (closed {count})"
        self._move(name, detached, self.on_closed)

    def _follow(self, layer) -> None:
        if isinstance(layer, Image) and id(layer) not in self._names:
            self._names[id(layer)] = layer.name
            layer.events.name.connect(self._on_renamed)

    def _on_renamed(self, event) -> None:
        layer = event.source
        old, new = self._names.get(id(layer)), layer.name
        if old is None:  # removed from the viewer since
            return
        self._names[id(layer)] = new
        if old != new:
            self._move(old, new, self.followers)

    def _move(self, old: str, new: str, followers: Sequence[Callable[[str, str], None]]) -> None:
        for layer in list(self.viewer.layers):
            if prediction_source(layer) == old:
                layer.metadata[SOURCE_KEY] = new
                if layer.name == old + PREDICTION_SUFFIX:  # its default name follows; one the user chose stays
                    layer.name = new + PREDICTION_SUFFIX
        for follow in followers:
            follow(old, new)
