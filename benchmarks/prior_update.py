"""What a stroke during training costs: the propagation recomputed after one painted slice changes.

Colin27 + AAL, 3 axial slices painted from the truth (51, 70, 88). The propagation is computed
once from scratch; then the user's correction of one painted slice (a class eroded by 2 voxels on
it) is applied, first the way training does it (``build_priors`` with the previous priors: only
the pieces next to the changed slice are recomputed), then from scratch. Reports both times and
their ratio, measured in one process, and checks that both give the same labels.

Run::

    .venv/bin/python benchmarks/prior_update.py --slice 88     # a slice at the end of the painted range
    .venv/bin/python benchmarks/prior_update.py --slice 70     # the middle one
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy import ndimage

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import build_priors
from napari_action.data.samples import load_colin27, sparse_from_truth

AXIS = 2
PAINTED = (51, 70, 88)


def corrected(labels: np.ndarray, index: int, value: int) -> np.ndarray:
    """``labels`` with class ``value`` eroded by 2 voxels on slice ``index`` (a user's correction)."""
    out = labels.copy()
    plane = out[:, :, index]
    shrunk = ndimage.binary_erosion(plane == value, iterations=2)
    plane[(plane == value) & ~shrunk] = 0
    return out


def timed_result(annotation, volume, spacing, previous=None):
    start = time.perf_counter()
    priors = build_priors(annotation, [volume], "propagation", [spacing], previous)
    result = priors[0].result
    return priors, result, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slice", type=int, default=88, choices=PAINTED)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    image, truth, meta = load_colin27()
    spacing = tuple(float(z) for z in meta.zooms[:3])
    volume = NormalizedVolume.exact(image)
    painted = sparse_from_truth(truth, AXIS, list(PAINTED))
    before = SparseAnnotation([painted], [image.shape], axis=AXIS)
    priors, _, first = timed_result(before, volume, spacing)
    values = [v for v in np.unique(painted[:, :, args.slice]) if v]
    after = SparseAnnotation([corrected(painted, args.slice, int(values[0]))], [image.shape], axis=AXIS)
    _, updated, incremental = timed_result(after, volume, spacing, previous=priors)
    _, scratch, again = timed_result(after, volume, spacing)
    same = np.array_equal(updated.classes(), scratch.classes())
    print(
        f"first propagation {first:.1f} s; after a stroke on slice {args.slice}: {incremental:.1f} s "
        f"(only the pieces next to it) against {again:.1f} s from scratch = {again / incremental:.1f}x; "
        f"same labels: {same}"
    )


if __name__ == "__main__":
    main()
