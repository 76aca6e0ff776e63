"""Image layers napari shows but napari-action cannot learn from, found before Train starts anything.

The trainer refuses such an image in its worker as "Image 1 has non-numeric dtype bool.": a number
the user never sees, after the preparation has started. Checked here, the refusal names the layer and says
what to do, and nothing starts.
"""

from __future__ import annotations

from napari_action._napari.layers import layer_image_data


def image_type_problem(image) -> str | None:
    """What to do about an image layer whose voxels are no intensities; None for one napari-action learns from."""
    dtype = getattr(layer_image_data(image), "dtype", None)
    if dtype is None or dtype.kind != "b":
        return None
    # A yes/no image is a mask the user made (a threshold, a mask opened from the console), never a scan;
    # every checked image joins training, so it would have stopped Train though nothing was painted on it.
    return (
        f"Image {image.name!r} holds yes/no (bool) voxels, not intensities, so napari-action cannot learn from it. "
        "Uncheck it in the Images list of the ACTION panel; if it is a mask, right-click it in the layer list > "
        "Convert to Labels."
    )
