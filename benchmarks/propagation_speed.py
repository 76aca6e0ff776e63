"""How long the propagation of painted slices takes on a CT-sized volume, and where the time goes.

A synthetic CT (``--size`` x ``--size`` axial slices of 0.7 mm, ``--slices`` of 1 mm: air around an
elliptic body, three ellipsoid organs, noise), painted on three axial slices at a quarter, a half and
three quarters of its length, as a user paints a scan they open. Reports, in one run so that the
ratios hold on a busy machine:

* one flow between two neighbouring slices, scikit-image's ``optical_flow_ilk`` against the
  product's ``lucas_kanade_flow``, timed alternately (``--pairs`` of each);
* the whole propagation (every piece) with 1 and with 2 threads (``--workers``), and its Dice
  against the organs' truth (the same for every thread count); then, as the release before ran it,
  with scikit-image's flow on 1 thread.

    .venv/bin/python benchmarks/propagation_speed.py --size 512 --slices 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from skimage.registration import optical_flow_ilk

import napari_action.data.propagation_sweeps as sweeps
from napari_action.data.intensity import exact_statistics
from napari_action.data.optical_flow import lucas_kanade_flow
from napari_action.data.propagation import LabelPropagation, iter_pieces

SPACING = (1.0, 0.7, 0.7)  # slice thickness, then the in-plane pixel size (mm)
#: Organ centre and radii as shares of the volume (slices, rows, columns), intensity in HU, label.
ORGANS = (
    ((0.5, 0.43, 0.39), (0.35, 0.12, 0.14), 120.0, 1),
    ((0.45, 0.59, 0.63), (0.25, 0.09, 0.10), 80.0, 2),
    ((0.6, 0.51, 0.51), (0.2, 0.05, 0.05), 200.0, 3),
)


def synthetic_ct(size: int, slices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like image (float32 HU) and its organ labels (uint8), slices along axis 0."""
    z, y, x = np.ogrid[:slices, :size, :size]
    body = ((y - size / 2) / (0.39 * size)) ** 2 + ((x - size / 2) / (0.45 * size)) ** 2 <= 1
    image = np.broadcast_to(np.where(body, 40.0, -1000.0).astype(np.float32), (slices, size, size)).copy()
    labels = np.zeros((slices, size, size), np.uint8)
    for centre, radii, value, label in ORGANS:
        scaled = [c * n for c, n in zip(centre, (slices, size, size), strict=True)]
        half = [r * n for r, n in zip(radii, (slices, size, size), strict=True)]
        inside = sum(((axis - c) / h) ** 2 for axis, c, h in zip((z, y, x), scaled, half, strict=True)) <= 1
        image[inside], labels[inside] = value, label
    image += np.random.default_rng(seed).normal(0, 15, image.shape).astype(np.float32)
    return image, labels


def flow_seconds(volume: np.ndarray, pairs: int) -> tuple[float, float]:
    """Mean seconds of one flow: scikit-image's, then ours, alternated over neighbouring slices."""
    spent = [0.0, 0.0]
    middle = volume.shape[0] // 2
    for z in range(middle, middle + pairs):
        for which, flow in enumerate((_scikit_image_flow, lucas_kanade_flow)):
            start = time.perf_counter()
            flow(volume[z + 1], volume[z])
            spent[which] += time.perf_counter() - start
    return spent[0] / pairs, spent[1] / pairs


def _scikit_image_flow(reference: np.ndarray, moving: np.ndarray, radius: int = 4, warps: int = 3) -> np.ndarray:
    """scikit-image's flow with the product's settings (``lucas_kanade_flow``'s signature and defaults)."""
    return optical_flow_ilk(reference, moving, radius=radius, num_warp=warps)


def propagate(volume: np.ndarray, labels: np.ndarray, workers: int) -> tuple[float, np.ndarray]:
    """Seconds for the whole propagation of the three painted slices, and its class ids."""
    slices = labels.shape[0]
    targets = {s: labels[s].astype(np.int64) for s in (slices // 4, slices // 2, 3 * slices // 4)}
    result = LabelPropagation(slices, labels.shape[1:], sorted(targets))
    start = time.perf_counter()
    for made in iter_pieces(volume.__getitem__, slices, targets, len(ORGANS) + 1, SPACING, workers=workers):
        if made.run is not None:  # None: a piece's end
            result.store(made.run)
    return time.perf_counter() - start, result.classes()


def mean_dice(found: np.ndarray, truth: np.ndarray) -> float:
    scores = []
    for label in range(1, len(ORGANS) + 1):
        both = np.count_nonzero((found == label) & (truth == label))
        scores.append(2 * both / max(np.count_nonzero(found == label) + np.count_nonzero(truth == label), 1))
    return float(np.mean(scores))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="pixels along each side of a slice")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=10, help="neighbouring slice pairs timed for each flow")
    parser.add_argument("--workers", default="1,2", help="thread counts of the whole propagation")
    args = parser.parse_args(argv)
    image, labels = synthetic_ct(args.size, args.slices)
    volume = exact_statistics(image).apply(image)
    theirs, ours = flow_seconds(volume, args.pairs)
    print(f"{args.size} x {args.size} x {args.slices}, 3 painted slices")
    print(f"one flow: scikit-image {1000 * theirs:.0f} ms, ours {1000 * ours:.0f} ms ({theirs / ours:.2f}x)")
    for workers in (int(w) for w in args.workers.split(",")):
        seconds, classes = propagate(volume, labels, workers)
        print(f"propagation, {workers} thread(s): {seconds:.1f} s, mean Dice {mean_dice(classes, labels):.3f}")
    ours = sweeps.lucas_kanade_flow
    sweeps.lucas_kanade_flow = _scikit_image_flow
    try:
        seconds, classes = propagate(volume, labels, 1)
    finally:
        sweeps.lucas_kanade_flow = ours
    print(
        f"propagation as before (scikit-image's flow, 1 thread): {seconds:.1f} s, Dice {mean_dice(classes, labels):.3f}"
    )


if __name__ == "__main__":
    main()
