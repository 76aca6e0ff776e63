"""npe2 sample data inside a real napari viewer: the phantom and Colin27, each with a few slices painted."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.samples import COLIN27_CLASS_NAMES, PHANTOM_CLASS_NAMES, evenly_spaced_slices, make_phantom
from napari_action.io.volume_meta import VolumeMeta
from tests.helpers.gui import PLUGIN


def _painted_slices(labels: np.ndarray, axis: int) -> list[int]:
    other = tuple(a for a in range(3) if a != axis)
    return np.flatnonzero(labels.any(axis=other)).tolist()


def test_phantom_sample_is_a_ready_demo(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "phantom")
    assert [layer.name for layer in layers] == ["phantom-1", "phantom-2", "phantom-3", "phantom-1 labels"]
    assert [layer._type_string for layer in layers] == ["image"] * 3 + ["labels"]
    truth = make_phantom(1)[0]
    painted = layers[-1]
    slices = evenly_spaced_slices(truth.labels, 2, 3)
    assert _painted_slices(painted.data, 2) == slices
    np.testing.assert_array_equal(painted.data[..., slices], truth.labels[..., slices])
    assert painted.metadata["class_names"] == PHANTOM_CLASS_NAMES
    assert list(painted.features["class"]) == list(PHANTOM_CLASS_NAMES.values())
    np.testing.assert_array_equal(painted.affine.affine_matrix, layers[0].affine.affine_matrix)
    assert VolumeMeta.from_dict(layers[0].metadata["napari_action"]) == truth.meta


@pytest.mark.realdata
def test_colin27_sample(make_napari_viewer, colin27_dir, monkeypatch):
    monkeypatch.setenv("NAPARI_ACTION_MRICRON", str(colin27_dir))
    viewer = make_napari_viewer()
    image, painted, truth = viewer.open_sample(PLUGIN, "colin27")
    assert (image.name, painted.name, truth.name) == ("colin27", "colin27 labels", "colin27 truth")
    assert truth.visible is False and painted.visible is True
    assert len(_painted_slices(painted.data, 2)) == 3  # axial slices of an RAS volume
    assert set(np.unique(truth.data)) == set(COLIN27_CLASS_NAMES)
    assert painted.metadata["class_names"] == COLIN27_CLASS_NAMES
