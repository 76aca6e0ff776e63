"""Property tests: labels saved with a loaded volume's meta keep its geometry bit for bit.

Hypothesis draws the source file (shape, affine, qform/sform codes, NIfTI-1 or -2, compressed or
not, written by nibabel) and a label array; :func:`save_labels` must write the labels back exactly
with the source's geometry, as ``tests/io/test_nifti.py`` checks on real files.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_action.io.nifti import NIFTI_INTENT_LABEL, load_volume
from napari_action.io.nifti_writer import save_labels
from napari_action.label_values import smallest_label_dtype

GEOMETRY_FIELDS = (
    "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z",
    "srow_x", "srow_y", "srow_z", "pixdim", "qform_code", "sform_code", "xyzt_units",
)  # fmt: skip
# Upper ends that straddle each label dtype's limit, and any value up to int32's.
LABEL_MAXIMA = st.sampled_from([1, 255, 256, 32_767, 32_768, 65_535, 65_536, 2**31 - 1]) | st.integers(1, 2**31 - 1)
SIGNED_PERMUTATIONS = [
    (order, signs) for order in itertools.permutations(range(3)) for signs in itertools.product((1, -1), repeat=3)
]


def _quaternion_rotation(quaternion: np.ndarray) -> np.ndarray:
    w, x, y, z = quaternion / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _signed_permutation(choice: tuple[tuple[int, ...], tuple[int, ...]]) -> np.ndarray:
    order, signs = choice
    return np.eye(3)[list(order)] * np.asarray(signs)[:, None]


# q and -q are the same rotation, so w >= 0.1 loses only the exact half turns (the permutations have some).
quaternions = st.tuples(st.floats(0.1, 1.0), *[st.floats(-1.0, 1.0)] * 3).map(np.asarray)
# Oblique scanner frames, and the axis swaps and flips of LPS/RAS/LAS... orientations.
rotations = quaternions.map(_quaternion_rotation) | st.sampled_from(SIGNED_PERMUTATIONS).map(_signed_permutation)


@st.composite
def affines(draw: st.DrawFn) -> np.ndarray:
    """Rotation (possibly with a flip) times voxel sizes 0.1..5 mm, plus an origin within 500 mm."""
    zooms = draw(hnp.arrays(np.float64, 3, elements=st.floats(0.1, 5.0)))
    origin = draw(hnp.arrays(np.float64, 3, elements=st.floats(-500.0, 500.0)))
    affine = np.eye(4)
    affine[:3, :3] = draw(rotations) * zooms
    affine[:3, 3] = origin
    return affine


@st.composite
def sources(draw: st.DrawFn) -> dict:
    """Everything that defines a source file and the labels painted on it."""
    shape = draw(st.tuples(*[st.integers(1, 6)] * 3))
    labels = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, draw(LABEL_MAXIMA))))
    return {
        "shape": shape,
        "labels": labels,
        "affine": draw(affines()),
        "qform_code": draw(st.integers(0, 4)),
        "sform_code": draw(st.integers(0, 4)),
        "image_class": draw(st.sampled_from([nib.Nifti1Image, nib.Nifti2Image])),
        "suffix": draw(st.sampled_from([".nii", ".nii.gz"])),
    }


def _write_source(folder: Path, source: dict) -> Path:
    data = np.arange(np.prod(source["shape"]), dtype=np.float32).reshape(source["shape"])
    image = source["image_class"](data, source["affine"])
    image.set_qform(source["affine"], code=source["qform_code"])
    image.set_sform(source["affine"], code=source["sform_code"])
    path = folder / f"source{source['suffix']}"
    nib.save(image, path)
    return path


@settings(max_examples=40, deadline=None)
@given(source=sources(), compress_labels=st.booleans())
def test_saved_labels_keep_voxels_and_the_source_geometry_exactly(source, compress_labels):
    with tempfile.TemporaryDirectory() as folder:
        path = _write_source(Path(folder), source)
        data, meta = load_volume(path)
        assert data.shape == source["shape"]
        target = Path(folder) / ("labels.nii.gz" if compress_labels else "labels.nii")
        save_labels(target, source["labels"], meta)

        written, original = nib.load(target), nib.load(path)
        back = np.asarray(written.dataobj)
        np.testing.assert_array_equal(back, source["labels"])
        assert written.get_data_dtype() == smallest_label_dtype(source["labels"])
        assert written.get_data_dtype().kind in "iu"
        assert type(written.header) is type(original.header)
        for name in GEOMETRY_FIELDS:
            np.testing.assert_array_equal(written.header[name], original.header[name], err_msg=name)
        np.testing.assert_array_equal(written.header.get_qform(), original.header.get_qform())
        np.testing.assert_array_equal(written.header.get_sform(), original.header.get_sform())
        assert written.header.get_zooms() == original.header.get_zooms()
        assert int(written.header["intent_code"]) == NIFTI_INTENT_LABEL
