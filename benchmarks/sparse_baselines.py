"""The sparse-slice protocol's methods that train no network: a random forest, two interpolations, propagation.

Split from ``sparse_slices.py``, which runs the protocol and calls these.
"""

from __future__ import annotations

import time

import numpy as np

from napari_action.data.intensity import normalize_volume
from napari_action.data.interpolation import interpolate_labels
from napari_action.data.propagation import propagate_labels
from napari_action.data.samples import sparse_from_truth

# --------------------------------------------------------------------------- random forest


def _rf_features(image2d: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(image2d, sigma_min=1, sigma_max=16, channel_axis=None)


def _balanced_pixels(features: list, targets: list, per_class: int, rng) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([f.reshape(-1, f.shape[-1]) for f in features])
    y = np.concatenate([t.ravel() for t in targets])
    keep = [
        rng.choice(np.flatnonzero(y == c), min(per_class, int((y == c).sum())), replace=False) for c in np.unique(y)
    ]
    keep = np.concatenate(keep)
    return x[keep], y[keep]


def run_rf(ds, slices: list[int], seed: int, per_class: int = 5000) -> tuple[dict, np.ndarray]:
    """Random forest on the painted slices' pixels; predicted slice by slice."""
    from sklearn.ensemble import RandomForestClassifier

    moved = np.moveaxis(normalize_volume(ds.image), ds.axis, 0)
    truth = np.moveaxis(ds.truth, ds.axis, 0)
    start = time.perf_counter()
    x, y = _balanced_pixels(
        [_rf_features(moved[s]) for s in slices], [truth[s] for s in slices], per_class, np.random.default_rng(seed)
    )
    forest = RandomForestClassifier(n_estimators=100, max_depth=20, n_jobs=2, random_state=seed).fit(x, y)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.stack([forest.predict(_rf_features(m).reshape(-1, x.shape[1])).reshape(m.shape) for m in moved])
    timing = {"train_s": train_s, "inference_s": time.perf_counter() - start, "pixels": int(y.size)}
    return timing, np.moveaxis(pred.astype(ds.truth.dtype), 0, ds.axis)


# --------------------------------------------------------------------------- interpolation


def run_interpolation(ds, slices: list[int]) -> tuple[dict, np.ndarray]:
    """Signed-distance interpolation between the painted slices (nothing outside their range)."""
    start = time.perf_counter()
    pred = interpolate_labels(sparse_from_truth(ds.truth, ds.axis, slices), ds.axis, slices, ds.spacing)
    return {"train_s": 0.0, "inference_s": time.perf_counter() - start}, pred


def _itk_fill(sparse: np.ndarray, axis: int) -> np.ndarray:
    """ITK's MorphologicalContourInterpolator (3D Slicer's "Fill between slices") along ``axis``."""
    import itk  # optional: pip install itk-morphologicalcontourinterpolation

    image = itk.image_from_array(np.ascontiguousarray(sparse.astype(np.uint16)))
    interpolator = itk.MorphologicalContourInterpolator.New(image)
    interpolator.SetAxis(2 - axis)  # ITK orders axes x, y, z: numpy's reversed
    interpolator.Update()
    return itk.array_from_image(interpolator.GetOutput()).astype(sparse.dtype)


def run_itk_interpolation(ds, slices: list[int]) -> tuple[dict, np.ndarray]:
    """ITK's morphological contour interpolation, in a child process (ITK can abort at interpreter exit)."""
    import multiprocessing

    sparse = sparse_from_truth(ds.truth, ds.axis, slices)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pred = pool.apply(_itk_fill, (sparse, ds.axis))
    return {"train_s": 0.0, "inference_s": time.perf_counter() - start}, pred


# --------------------------------------------------------------------------- propagation


def run_propagation(ds, slices: list[int]) -> tuple[dict, np.ndarray]:
    """The painted slices carried along the image's motion (no training), between and beyond them."""
    sparse = sparse_from_truth(ds.truth, ds.axis, slices)
    start = time.perf_counter()
    pred = propagate_labels(ds.image, sparse, ds.axis, ds.spacing, slices)
    return {"train_s": 0.0, "inference_s": time.perf_counter() - start}, pred
