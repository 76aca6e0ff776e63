"""A model loaded from a checkpoint: its predictions and the training volumes' geometry it records.

The model is a 4-wide U-Net trained for two supervised steps (the ``supervised_trainer``
fixture): the tests compare it with the trainer it came from, not with a ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.inference.loaded_model import REFERENCE_KEY, load_model, model_from_checkpoint, with_references
from napari_action.io.checkpoint import load_checkpoint
from napari_action.io.geometry import VoxelGeometry
from tests.helpers.engine import DISC_CLASS_NAMES, disc_volume


def _result(updates):
    return next(update for update in updates if update.done)


def test_loaded_model_predicts_as_the_trainer_did(supervised_trainer, tmp_path):
    path = supervised_trainer.save_checkpoint(tmp_path / "model.pt")
    model = load_model(path, device="cpu")
    assert model.source == str(path) and model.axis == supervised_trainer.axis
    assert list(model.class_values) == list(supervised_trainer.class_values) and model.class_names == DISC_CLASS_NAMES
    assert model.config.num_threads is None  # the training machine's thread count does not travel
    assert model.volumes == [] and model.references == []
    other, _ = disc_volume(1)
    expected, found = _result(supervised_trainer.predict_volume(other)), _result(model.predict_volume(other))
    np.testing.assert_array_equal(found.labels, expected.labels)
    np.testing.assert_allclose(found.confidence, expected.confidence, atol=1e-6)
    with pytest.raises(TypeError, match="no training volumes"):
        model.predict_volume(0)


def test_reference_geometry_travels_in_the_checkpoint(supervised_trainer, tmp_path):
    checkpoint = supervised_trainer.checkpoint()
    assert with_references(checkpoint, []) is checkpoint
    references = [VoxelGeometry((1.0, 1.0, 3.0), (0, 1, 2)), VoxelGeometry((0.5, 0.5, 2.0), (0, 1, 2))]
    model = model_from_checkpoint(with_references(checkpoint, references), device="cpu")
    assert model.references == references and REFERENCE_KEY not in checkpoint.extra  # the trainer's is untouched
    copy = load_checkpoint(model.save_checkpoint(tmp_path / "copy.pt"))
    assert (copy.axis, copy.class_values, copy.class_names) == (supervised_trainer.axis, [0, 1, 2], DISC_CLASS_NAMES)
    assert load_model(tmp_path / "copy.pt", device="cpu").references == references
