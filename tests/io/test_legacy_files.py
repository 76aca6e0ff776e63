"""Files written by napari-action 0.1.0 still load and predict the same (see fixtures/v0_1_0/README.md).

Never regenerate the fixtures: their point is that an older version wrote them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_action.inference.predictor import Predictor, build_inference_net
from napari_action.io.checkpoint import load_checkpoint
from napari_action.io.session_store import checkpoint_from_bytes, load_session

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as arrays:
        return dict(arrays)


def _assert_same_weights(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    # The key names are what a renamed or moved module would break; the values what a bad load would.
    loaded = net.state_dict()
    assert sorted(loaded) == sorted(state)
    for key, tensor in state.items():
        assert torch.equal(loaded[key], tensor), key


def test_checkpoint_loads_into_the_current_network():
    ckpt = load_checkpoint(FIXTURES / "model.pt")
    assert ckpt.version == "0.1.0" and ckpt.class_values == [0, 3] and ckpt.axis == 2
    _assert_same_weights(build_inference_net(ckpt, "teacher"), ckpt.teacher)
    _assert_same_weights(build_inference_net(ckpt, "student"), ckpt.student)


def test_checkpoint_predicts_what_0_1_0_predicted(expected):
    labels, confidence = Predictor.from_checkpoint(FIXTURES / "model.pt", device="cpu").predict(expected["image"])
    # 0.1.0 trained one step per stage, so its prediction is label 3 everywhere; the weight
    # comparison above is the finer check.
    assert labels.dtype == expected["prediction"].dtype
    np.testing.assert_array_equal(labels, expected["prediction"])
    assert confidence.shape == labels.shape and np.all((confidence > 0.5) & (confidence <= 1.0))


def test_a_model_saved_before_the_foreground_normalisation_keeps_the_whole_volume_one():
    # 0.1.0 z-scored every volume by all its voxels; today's default (its foreground) would feed the
    # saved network inputs on another scale.
    assert load_checkpoint(FIXTURES / "model.pt").config.intensity_reference == "whole"
    assert Predictor.from_checkpoint(FIXTURES / "model.pt", device="cpu").intensity_reference == "whole"
    embedded = checkpoint_from_bytes(load_session(FIXTURES / "session.action.zarr").checkpoint)
    assert embedded.config.intensity_reference == "whole"


def test_session_loads_with_its_arrays_and_checkpoint(expected):
    session = load_session(FIXTURES / "session.action.zarr")
    assert session.version == "0.1.0" and session.axis == 2
    volume = session.volumes[0]
    assert [v.name for v in session.volumes] == ["disc"] and volume.shape == expected["image"].shape
    np.testing.assert_array_equal(volume.painted, expected["painted"])
    np.testing.assert_array_equal(volume.prediction, expected["prediction"])
    np.testing.assert_array_equal(volume.image, expected["image"])
    embedded = checkpoint_from_bytes(session.checkpoint)
    assert embedded.class_values == [0, 3] and embedded.version == "0.1.0"
    _assert_same_weights(build_inference_net(embedded), embedded.teacher)
    labels, _ = Predictor.for_checkpoint(embedded, device="cpu").predict(expected["image"])
    np.testing.assert_array_equal(labels, expected["prediction"])
