"""VolumeMeta: JSON round trips, read-only matrices, the meta a saved file reads back."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_action.io.nifti import load_labels, load_volume
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta


def _first_volume(src: Path, dest: Path) -> Path:
    """A real 3D file cut from a real 4D one; nibabel keeps its header geometry."""
    nib.save(nib.load(src).slicer[..., 0], dest)
    return dest


def test_meta_survives_json_and_stays_read_only(nibabel_data, tmp_path):
    _, meta = load_volume(_first_volume(nibabel_data / "example4d.nii.gz", tmp_path / "v.nii.gz"))
    again = VolumeMeta.from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    np.testing.assert_array_equal(again.affine, meta.affine)
    with pytest.raises(ValueError):
        meta.affine[0, 0] = 2.0
    with pytest.raises(ValueError, match="unknown"):
        VolumeMeta.from_dict({**meta.to_dict(), "spacing": [1, 1, 1]})
    with pytest.raises(ValueError, match="missing"):
        VolumeMeta.from_dict({"affine": np.eye(4).tolist()})


def test_from_affine_meta_is_what_a_saved_file_reads_back(tmp_path):
    affine = np.array([[0, -1.5, 0, 90.3], [1.5, 0, 0.1, -12.7], [0, 0, 8.0, 33.1], [0, 0, 0, 1]])
    meta = VolumeMeta.from_affine(affine, (20, 30, 5), code=1)
    np.testing.assert_allclose(meta.affine, affine, atol=1e-5)
    out = save_labels(tmp_path / "a.nii.gz", np.ones((20, 30, 5), np.uint8), meta)
    assert load_labels(out)[1].affine.tolist() == meta.affine.tolist()
