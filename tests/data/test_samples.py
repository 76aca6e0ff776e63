"""Sample data: phantom shape, determinism and class balance; Colin27 subcortical map."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_action.data.samples import (
    COLIN27_CLASS_NAMES,
    PHANTOM_CLASS_NAMES,
    evenly_spaced_slices,
    find_colin27,
    load_colin27,
    make_phantom,
    sparse_from_truth,
)


@pytest.fixture(scope="module")
def phantom():
    return make_phantom()


def test_phantom_shapes_types_and_geometry(phantom):
    assert [s.name for s in phantom] == ["phantom-1", "phantom-2", "phantom-3"]
    for subject in phantom:
        assert subject.image.shape == subject.labels.shape == subject.meta.shape == (128, 128, 16)
        assert subject.image.dtype == np.float32 and subject.labels.dtype == np.uint8
        assert np.isfinite(subject.image).all()
        assert subject.meta.zooms == (1.5, 1.5, 8.0)
        assert subject.meta.orientation == "RAS" and subject.meta.qform_code == subject.meta.sform_code == 1
        np.testing.assert_allclose(np.diag(subject.meta.affine)[:3], (1.5, 1.5, 8.0))


def test_phantom_is_deterministic_per_seed_and_subject():
    first, again = make_phantom(2, seed=3), make_phantom(3, seed=3)
    np.testing.assert_array_equal(first[0].image, again[0].image)
    np.testing.assert_array_equal(first[1].labels, again[1].labels)
    assert first[0].meta == again[0].meta
    other = make_phantom(1, seed=4)[0]
    assert not np.array_equal(other.labels, first[0].labels)
    assert not np.array_equal(first[0].labels, first[1].labels)  # subjects differ


def test_phantom_class_balance_and_empty_slices(phantom):
    for subject in phantom:
        fractions = np.bincount(subject.labels.ravel(), minlength=4) / subject.labels.size
        assert set(np.unique(subject.labels)) == set(PHANTOM_CLASS_NAMES)
        assert 0.02 < 1 - fractions[0] < 0.08  # strong imbalance, as in cardiac MRI
        assert all(f > 0.003 for f in fractions[1:])
        has_foreground = subject.labels.any(axis=(0, 1))
        assert not has_foreground[0] and not has_foreground[-1]  # above the base, below the apex
        assert has_foreground.sum() >= 8


def test_phantom_anatomy_is_consistent(phantom):
    for subject in phantom:
        labels = subject.labels
        per_slice = [set(np.unique(labels[..., z])) for z in range(labels.shape[2])]
        # The cavity never appears without its muscle; the RV stops before the apex.
        assert all(2 in classes for classes in per_slice if 3 in classes)
        last_rv = max(z for z, classes in enumerate(per_slice) if 1 in classes)
        last_myo = max(z for z, classes in enumerate(per_slice) if 2 in classes)
        assert last_rv < last_myo


def test_phantom_intensities_look_like_cine_mri(phantom):
    for subject in phantom:
        means = {c: subject.image[subject.labels == c].mean() for c in PHANTOM_CLASS_NAMES}
        assert means[3] > means[2] + 0.3 and means[1] > means[2] + 0.3  # bright blood, dark muscle
        assert subject.image.min() >= 0  # magnitude (Rician) noise


def test_phantom_is_fast():
    start = time.perf_counter()
    make_phantom(3, seed=11)
    # < 1 s on the reference machine; the margin absorbs a busy shared CI core.
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(("kwargs", "message"), [({"n_subjects": 0}, "n_subjects"), ({"shape": (16, 16, 8)}, "shape")])
def test_phantom_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_phantom(**kwargs)


def test_evenly_spaced_slices_avoid_the_extremes(phantom):
    labels = phantom[0].labels
    foreground = np.flatnonzero(labels.any(axis=(0, 1)))
    picks = evenly_spaced_slices(labels, 2, 3)
    assert len(picks) == 3 and picks == sorted(set(picks))
    assert set(picks) <= set(foreground.tolist())
    assert foreground[0] < picks[0] and picks[-1] < foreground[-1]
    assert evenly_spaced_slices(labels, -1, 100) == foreground.tolist()
    with pytest.raises(ValueError, match="k must be"):
        evenly_spaced_slices(labels, 2, 0)
    with pytest.raises(ValueError, match="No slice along axis 2"):
        evenly_spaced_slices(np.zeros_like(labels), 2, 3)


def test_sparse_from_truth_copies_only_those_slices(phantom):
    truth = phantom[1].labels
    sparse = sparse_from_truth(truth, 2, [5, 9])
    assert sparse.dtype == truth.dtype
    np.testing.assert_array_equal(sparse[..., [5, 9]], truth[..., [5, 9]])
    assert not np.delete(sparse, [5, 9], axis=2).any()
    other_axis = sparse_from_truth(truth, 0, [64])
    np.testing.assert_array_equal(other_axis[64], truth[64])
    assert other_axis.sum() == truth[64].sum()


# DATA.md: voxel fractions of the 7-class map over the whole Colin27 volume.
COLIN27_FRACTIONS = {0: 0.98981, 1: 0.00212, 2: 0.00052, 3: 0.00220, 4: 0.00231, 5: 0.00063, 6: 0.00241}


@pytest.mark.realdata
def test_colin27_subcortical_map(colin27_dir):
    image, labels, meta = load_colin27(colin27_dir)
    assert image.shape == labels.shape == meta.shape == (181, 217, 181)
    assert image.dtype == np.float32 and labels.dtype == np.uint8
    assert meta.orientation == "RAS" and meta.zooms == (1.0, 1.0, 1.0)
    assert set(np.unique(labels)) == set(COLIN27_CLASS_NAMES)
    fractions = np.bincount(labels.ravel()) / labels.size
    np.testing.assert_allclose(fractions, [COLIN27_FRACTIONS[c] for c in range(7)], atol=5e-6)


@pytest.mark.realdata
def test_colin27_from_a_dpkg_extraction_root_and_env(colin27_dir, tmp_path, monkeypatch):
    extracted = tmp_path / "usr" / "share" / "mricron" / "templates"
    extracted.mkdir(parents=True)
    for name in ("ch2.nii.gz", "aal.nii.gz"):
        (extracted / name).symlink_to(colin27_dir / name)
    assert find_colin27(tmp_path) == extracted
    monkeypatch.setenv("NAPARI_ACTION_MRICRON", str(tmp_path))
    assert find_colin27() == extracted


def test_missing_colin27_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_ACTION_MRICRON", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="sudo apt-get install mricron-data") as info:
        load_colin27()
    assert "nowhere" in str(info.value) and "dpkg-deb -x" in str(info.value)
