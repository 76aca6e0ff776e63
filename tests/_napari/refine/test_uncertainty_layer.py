"""GUI tests of the "<image> uncertainty" layers once their image holds other data (``layer.data = a crop``).

Same scene and tiny budgets as ``tests/_napari/refine/test_panel.py``; every worker is waited for.
"""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import UNCERTAINTY_KEY
from napari_action._napari.refine.uncertainty import uncertainty_layer
from tests.helpers import gui
from tests.helpers.gui import wait_finished


def uncertainty_layers_of(viewer, image_name: str) -> list:
    return [layer for layer in viewer.layers if layer.metadata.get(UNCERTAINTY_KEY) == image_name]


def predict(widget, qtbot) -> None:
    widget.predict_button.click()
    wait_finished(qtbot, widget)


def test_the_map_of_a_scan_given_new_data_goes_and_each_predict_shows_one_map_that_fits(scene, qtbot):
    # `layer.data = a crop` left "late uncertainty" on screen over the crop with the old scan's map, and each
    # Predict added another layer beside it ("late uncertainty [1]", ...), never updating the one found first.
    viewer, widget, labels, truth = scene
    panel = widget.refine_panel
    panel.show_uncertainty.setChecked(True)
    widget.train_button.click()
    wait_finished(qtbot, widget)
    viewer.add_image(gui.disc_volume(1)[0], name="late", **gui.GRID)
    predict(widget, qtbot)
    assert [layer.name for layer in uncertainty_layers_of(viewer, "late")] == ["late uncertainty"]

    viewer.layers["late"].data = gui.disc_volume(1)[0][:4]  # 4 of its 8 slices
    assert uncertainty_layers_of(viewer, "late") == []
    assert panel.status_label.text() == (
        "'late uncertainty' went: it mapped the data 'late' held before. Predict shows its uncertainty again."
    )
    assert [layer.name for layer in uncertainty_layers_of(viewer, "vol")] == ["vol uncertainty"]  # its image kept

    for _ in range(2):
        predict(widget, qtbot)
        (layer,) = uncertainty_layers_of(viewer, "late")
        assert layer.name == "late uncertainty" and layer.data.shape == (4, *gui.SHAPE[1:])
        assert layer.data is panel.uncertainty.get("late").volume


def test_an_uncertainty_layer_left_from_older_data_is_updated_in_place_not_doubled(viewer):
    # A map shown before the image was given data of another shape while no panel listened (the widget closed
    # and docked again): the next map was added beside it, and every later one too, as the old one was found first.
    image = viewer.add_image(gui.disc_volume()[0], name="vol", **gui.GRID)
    old = uncertainty_layer(viewer, image, np.zeros(gui.SHAPE, np.float32))
    old.opacity = 0.3  # the user's view of it
    image.data = image.data[:4]

    new = np.full((4, *gui.SHAPE[1:]), 0.5, np.float32)
    for _ in range(2):
        assert uncertainty_layer(viewer, image, new) is old
    assert uncertainty_layers_of(viewer, "vol") == [old]
    assert old.data is new and old.opacity == 0.3


def test_an_uncertainty_layer_updated_in_place_takes_the_images_geometry_of_now(viewer):
    # Updated in place, the layer kept the scale and translate the image had when it was made: after the user set
    # the image's voxel size, or gave it a crop placed elsewhere, the new map lay beside the image it maps.
    image = viewer.add_image(gui.disc_volume()[0], name="vol", **gui.GRID)
    layer = uncertainty_layer(viewer, image, np.zeros(gui.SHAPE, np.float32))
    image.scale = (2.0, 0.5, 0.5)
    assert uncertainty_layer(viewer, image, np.ones(gui.SHAPE, np.float32)) is layer
    np.testing.assert_array_equal(layer.scale, image.scale)

    image.data, image.translate = image.data[2:6], (11.0, 4.0, -3.0)  # a crop, placed where its slices lie
    assert uncertainty_layer(viewer, image, np.ones((4, *gui.SHAPE[1:]), np.float32)) is layer
    np.testing.assert_array_equal(layer.translate, image.translate)
