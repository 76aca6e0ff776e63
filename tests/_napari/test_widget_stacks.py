"""The widget beside microscopy stacks: a channel or time axis before the volume's three (C, Z, Y, X)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.notifications import notification_manager

from tests.helpers.gui import PAINTED, SHAPE, disc_volume, dock, messages_since, paint

SCALE = (2.0, 0.4, 0.4)  # 2 µm steps in z, 0.4 µm pixels, set on the layer


@pytest.mark.parametrize("labels_ndim", [4, 3])
def test_train_beside_a_two_channel_stack_says_how_to_make_3d_images(viewer, labels_ndim):
    image, truth = disc_volume()
    viewer.add_image(np.stack([image, image / 2]), name="two channels", scale=(1.0, *SCALE))
    if labels_ndim == 4:  # napari's New labels layer over the stack: its shape and scale, 4D
        labels = viewer.add_labels(np.zeros((2, *SHAPE), np.uint8), name="paint", scale=(1.0, *SCALE))
        labels.data[0, list(PAINTED)] = truth[list(PAINTED)]  # slices of the first channel, as shown
    else:
        labels = viewer.add_labels(np.zeros(SHAPE, np.uint8), name="paint", scale=SCALE)
        paint(labels, truth)
    widget = dock(viewer)
    before = len(notification_manager.records)

    assert widget.start_training() is False

    [error] = messages_since(before, "error")
    assert "'two channels' (2×8×32×32)" in error
    assert "Split Stack" in error and "channel_axis" in error
    assert ("'paint' (2×8×32×32)" in error) == (labels_ndim == 4)
    assert widget.run is None and widget.train_button.isEnabled()
