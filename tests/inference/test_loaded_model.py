"""A model loaded from a checkpoint: its predictions and its recorded geometry.

The model is a 4-wide U-Net trained for two supervised steps (the ``supervised_trainer``
fixture): the tests compare it with the trainer it came from, not with a ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.inference.loaded_model import (
    VoxelGeometry,
    geometry_warnings,
    load_model,
    model_from_checkpoint,
    with_references,
)
from napari_action.io.checkpoint import load_checkpoint
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
    assert model.references == references and checkpoint.extra == {}  # the trainer's checkpoint is untouched
    copy = load_checkpoint(model.save_checkpoint(tmp_path / "copy.pt"))
    assert (copy.axis, copy.class_values, copy.class_names) == (supervised_trainer.axis, [0, 1, 2], DISC_CLASS_NAMES)
    assert load_model(tmp_path / "copy.pt", device="cpu").references == references


def test_voxel_geometry_of_a_permuted_oblique_matrix():
    matrix = np.array([[0.0, 0.0, 2.0, 7.0], [3.0, 0.0, 0.0, 8.0], [0.0, 1.0, 0.1, 9.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = VoxelGeometry.from_matrix(matrix)
    assert geometry.directions == (1, 2, 0)  # array axis 0 runs along world y, 1 along z, 2 along x
    np.testing.assert_allclose(geometry.spacing, (3.0, 1.0, np.hypot(2.0, 0.1)))
    np.testing.assert_allclose(geometry.in_plane(0), (1.0, np.hypot(2.0, 0.1)))
    assert VoxelGeometry.from_dict(geometry.to_dict()) == geometry


def test_geometry_warnings_name_other_spacing_and_other_direction():
    reference = VoxelGeometry((1.0, 1.0, 3.0), (0, 1, 2))
    close = VoxelGeometry((1.1, 0.9, 5.0), (0, 1, 2))  # in-plane within 20 %; the spacing between slices is free
    coarse = VoxelGeometry((2.0, 2.0, 3.0), (0, 1, 2))
    turned = VoxelGeometry((1.0, 1.0, 3.0), (0, 2, 1))  # array axis 2 runs along world y
    targets = [("close", close), ("coarse", coarse), ("turned", turned)]
    messages = geometry_warnings([reference], targets, axis=2)
    assert len(messages) == 2
    assert messages[0].startswith("'coarse' has in-plane spacing 2×2 mm, the training volumes 1×1 mm")
    assert messages[1].startswith("'turned' is sliced along world axis y (coronal slices)")
    assert "z (axial slices)" in messages[1]
    assert geometry_warnings([reference, coarse], [("coarse", coarse)], axis=2) == []  # one matching reference suffices
    assert geometry_warnings([], targets, axis=2) == []  # nothing known about the training volumes


def test_planes_map_to_the_array_axis_along_their_world_direction():
    # Array axes: 0 along z (inferior-superior), 1 along x, 2 along y; 2 mm slices.
    matrix = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = VoxelGeometry.from_matrix(matrix)
    assert [geometry.axis_for_plane(p) for p in ("axial", "sagittal", "coronal")] == [0, 1, 2]
    with pytest.raises(ValueError, match="plane must be one of"):
        geometry.axis_for_plane("transverse")
    tilted = VoxelGeometry((1.0, 1.0, 1.0), (0, 0, 2))  # two axes closest to x: no coronal axis
    with pytest.raises(ValueError, match="coronal"):
        tilted.axis_for_plane("coronal")
