"""Class names from the painted layer's features, through training, prediction, saved models and sessions."""

from __future__ import annotations

import numpy as np

from napari_action._napari.layers import class_names_of
from napari_action.inference.loaded_model import load_model
from napari_action.io.session_store import checkpoint_from_bytes, load_session
from tests.helpers.gui import (
    TIMEOUT,
    edit_slice,
    start_long_training,
    wait_finished,
    wait_first_step,
    wait_idle,
)

NAMES = {"index": [0, 1, 2], "name": ["background", "disc", "ring"]}


def test_a_class_painted_and_named_while_training_keeps_its_name_in_predictions_model_and_session(
    scene, qtbot, tmp_path
):
    viewer, widget, labels, _ = scene
    labels.features = NAMES
    run = start_long_training(widget)
    wait_first_step(qtbot, run)
    # A new structure, painted and named while the network trains: it joins training as class 7.
    edit_slice(labels, 2, 7, rows=slice(0, 4), cols=slice(0, 4))
    labels.features = {"index": [0, 1, 2, 7], "name": ["background", "disc", "ring", "marker"]}
    qtbot.waitUntil(lambda: 7 in list(widget.training_state.trainer.class_values), timeout=TIMEOUT)
    widget.stop_button.click()
    wait_finished(qtbot, widget)
    # Renamed after training: the current name is the one that counts.
    labels.features = {"index": [0, 1, 2, 7], "name": ["background", "disc", "vertebra", "marker"]}

    widget.predict_button.click()
    wait_finished(qtbot, widget)
    expected = {0: "background", 1: "disc", 2: "vertebra", 7: "marker"}
    assert class_names_of(viewer.layers["vol ACTION"]) == expected

    widget.save_model(str(tmp_path / "model.pt"))
    wait_finished(qtbot, widget)
    assert load_model(tmp_path / "model.pt", device="cpu").class_names == expected

    widget.files_panel.save_session(tmp_path / "work.action.zarr")
    wait_idle(qtbot, widget)
    session = load_session(tmp_path / "work.action.zarr")
    assert session.class_names == expected
    assert checkpoint_from_bytes(session.checkpoint).class_names == expected  # the model inside it too


def test_prediction_layers_follow_the_painted_colours_chosen_after_train(scene, qtbot):
    viewer, widget, labels, _ = scene
    widget.train_button.click()
    wait_finished(qtbot, widget)
    labels.new_colormap(seed=7)  # the layer's "shuffle colors" button
    widget.predict_button.click()
    wait_finished(qtbot, widget)
    prediction = viewer.layers["vol ACTION"]
    for value in (1, 2):
        assert tuple(prediction.get_color(value)) == tuple(labels.get_color(value))
    # "show selected label" on the painted layer leaves the prediction layer showing every class.
    labels.selected_label = 1
    labels.show_selected_label = True
    prediction.refresh()
    assert prediction.get_color(2) is not None and prediction.get_color(2)[3] > 0


def test_prediction_layers_show_every_class_when_train_is_pressed_in_show_selected_label_mode(scene, qtbot):
    # napari keeps "show selected label" in the layer's colormap: the predictions copied it and drew
    # every class but the painted layer's selected one transparent, their own checkbox unticked.
    viewer, widget, labels, _ = scene
    painted_colours = labels.colormap.map(np.array([1, 2]))
    labels.selected_label = 1
    labels.show_selected_label = True
    widget.train_button.click()
    wait_finished(qtbot, widget)
    prediction = viewer.layers["vol ACTION"]
    assert not prediction.colormap.use_selection
    drawn = prediction.colormap.map(np.array([1, 2]))  # the colours napari's canvas draws the classes in
    assert np.array_equal(drawn, painted_colours)
    assert drawn[1][3] > 0  # class 2 is not hidden
    assert labels.show_selected_label and labels.colormap.use_selection  # the painted layer's mode is its own
