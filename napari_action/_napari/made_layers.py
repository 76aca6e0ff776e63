"""The layers napari-action made, told from a copy of one (napari's Duplicate Layer).

A copy carries the original's metadata: the name of its image (a prediction or uncertainty layer's mark), the model
that made it. Known by that alone, it was found for its image when the user moved it above the original, and alone
once the original was deleted: Predict wrote into the user's copy. Each layer napari-action makes keeps its own
napari ``unique_id`` in its metadata; a copy keeps the original's, which is not its own.
"""

from __future__ import annotations

#: Metadata key of a layer napari-action made: that layer's own ``unique_id`` (as text).
MADE_KEY = "napari_action_made"


def mark_made(layer) -> None:
    """Record in ``layer``'s metadata that napari-action made it (a copy of it will not pass for it)."""
    layer.metadata[MADE_KEY] = str(layer.unique_id)


def is_duplicate(layer) -> bool:
    """True for a copy of a layer napari-action made: it carries the original's mark, not its own.

    A layer without a mark (made by hand with the metadata keys, or by an older napari-action) is no copy.
    """
    made = getattr(layer, "metadata", {}).get(MADE_KEY)
    return made is not None and made != str(layer.unique_id)
