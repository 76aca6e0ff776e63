"""Where a sparse-slice segmentation errs: Dice of each class in each stretch between painted slices.

The painted slices cut the volume into stretches (below the first, between each two, above the
last). For every class and stretch this prints the Dice of the propagation (no training) and of
saved predictions (``sparse_slices.py`` writes them under ``<out-dir>/preds/``), and how many true
voxels the stretch holds::

    .venv/bin/python benchmarks/segment_errors.py --k 3 --shift 0 \\
        bench-out/c27/preds/colin27_k3_action_s1337.npz

A structure that starts or ends between two painted slices is where slice-to-slice methods have to
guess; this table shows how much of the error is there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sparse_baselines import run_propagation  # sibling modules (run as a script)
from sparse_slices import load_dataset

from napari_action.data.samples import evenly_spaced_slices
from napari_action.evaluation.metrics import dice_per_class


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", nargs="*", type=Path, help="saved predictions (.npz, one array)")
    parser.add_argument("--dataset", default="colin27")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--shift", type=int, default=0)
    args = parser.parse_args(argv)
    ds = load_dataset(args.dataset)
    n = ds.truth.shape[ds.axis]
    slices = [min(max(s + args.shift, 0), n - 1) for s in evenly_spaced_slices(ds.truth, ds.axis, args.k)]
    methods = {"propagation": run_propagation(ds, slices)[1]}
    for path in args.predictions:
        with np.load(path) as saved:
            methods[path.stem] = saved[next(iter(saved.keys()))]
    truth = np.moveaxis(ds.truth, ds.axis, 0)
    moved = {name: np.moveaxis(pred, ds.axis, 0) for name, pred in methods.items()}
    bounds = [-1, *slices, n]
    stretches = [slice(low + 1, high) for low, high in zip(bounds[:-1], bounds[1:], strict=True)]
    # Per stretch and method, Dice of every class (NaN where neither prediction nor truth has it).
    scores = [[dice_per_class(p[part], truth[part], ds.class_values) for p in moved.values()] for part in stretches]
    print(f"painted slices {slices}; columns: the stretches between them; each cell: true voxels, then Dice of")  # noqa: T201
    print("  " + ", ".join(moved))  # noqa: T201
    for value in ds.class_values:
        cells = []
        for part, by_method in zip(stretches, scores, strict=True):
            voxels = int(np.count_nonzero(truth[part] == value))
            shown = " / ".join("-" if np.isnan(s[value]) else f"{s[value]:.2f}" for s in by_method)
            cells.append(f"{part.start}-{part.stop - 1}: {voxels} vox, {shown}")
        print(f"{ds.class_names[value]:12s} " + " | ".join(cells))  # noqa: T201


if __name__ == "__main__":
    main()
