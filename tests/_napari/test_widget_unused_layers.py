"""Train names the layers the ACTION panel's lists leave out for their shape, and says how to make usable ones."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from tests.helpers.gui import PAINTED, disc_volume, dock, messages_since


def _refused(viewer, labels) -> str:
    """The one error Train gave, after checking it started nothing and left the painted labels as they were."""
    painted = labels.data.copy()
    widget = dock(viewer)
    before = len(notification_manager.records)
    assert widget.start_training() is False
    [error] = messages_since(before, "error")
    assert widget.run is None and widget.train_button.isEnabled()
    assert np.array_equal(labels.data, painted)
    return error


@pytest.mark.parametrize("image_ndim", [3, 2])
def test_a_2d_labels_layer_is_named_on_train_with_how_to_make_one_over_the_scan(viewer, image_ndim):
    image, truth = disc_volume()
    # A 2D Labels layer made from the console over the scan, or a 2D image (one slice) with its labels.
    viewer.add_image(image if image_ndim == 3 else image[PAINTED[0]], name="vol")
    labels = viewer.add_labels(truth[PAINTED[0]].astype(np.uint8), name="vol labels")

    error = _refused(viewer, labels)

    assert "'vol labels' (32×32)" in error and "with 2 axes" in error and "New labels button" in error
    assert ("'vol' (32×32)" in error) == (image_ndim == 2)


def test_a_colour_volume_is_named_on_train_with_how_to_split_it(viewer):
    image, truth = disc_volume()
    viewer.add_image(np.stack([image, image / 2, image / 4], axis=-1), name="vol", rgb=True)  # a stained section stack
    labels = viewer.add_labels(np.zeros(truth.shape, np.uint8), name="vol labels")  # New labels over it: 3D
    labels.data[list(PAINTED)] = truth[list(PAINTED)]

    error = _refused(viewer, labels)

    assert "'vol' (8×32×32×3)" in error and "colour (RGB)" in error and "Split RGB" in error
