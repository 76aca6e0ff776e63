"""Tests of TrainingState.training_init: the slicing axis of a Train click, and whether a loaded model goes on."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from napari_action._napari.training_state import TrainingState

PAINTED_ALONG_0 = np.zeros((8, 10, 12), np.uint8)
PAINTED_ALONG_0[[2, 5], 2:8, 2:8] = 1


def state_with_model(axis: int | None) -> TrainingState:
    state = TrainingState()
    # Only the checkpoint's axis matters to the decision.
    state.init_checkpoint = None if axis is None else SimpleNamespace(axis=axis)
    return state


def test_without_a_loaded_model_the_paint_decides_and_the_reason_says_so():
    init = state_with_model(None).training_init([PAINTED_ALONG_0], chosen=None, accepted=None, viewer_axis=2)
    assert init.checkpoint is None and init.reason is None
    assert str(init.axis_decision) == "axis 0: the painted slices lie along it"


def test_a_loaded_model_along_the_painted_axis_is_continued():
    state = state_with_model(0)
    init = state.training_init([PAINTED_ALONG_0], chosen=None, accepted=None, viewer_axis=2)
    assert init.checkpoint is state.init_checkpoint and init.reason is None
    assert init.axis_decision.axis == 0 and "loaded model" in init.axis_decision.reason


def test_a_loaded_model_along_another_axis_gives_way_to_a_new_model_and_says_why():
    init = state_with_model(2).training_init([PAINTED_ALONG_0], chosen=None, accepted=None, viewer_axis=2)
    assert init.checkpoint is None and init.axis_decision.axis == 0
    assert init.reason == (
        "the loaded model slices along axis 2, the training along axis 0 (the painted slices lie along it): "
        "training a new model instead of continuing from it."
    )
    chosen = state_with_model(0).training_init([PAINTED_ALONG_0], chosen=1, accepted=None, viewer_axis=2)
    assert chosen.checkpoint is None and str(chosen.axis_decision) == "axis 1: you chose it"
