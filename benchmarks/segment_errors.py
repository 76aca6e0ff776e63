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


def stretch_dice(pred: np.ndarray, truth: np.ndarray, value: int, low: int, high: int) -> float | None:
    """Dice of class ``value`` on slices ``low + 1 .. high - 1`` (axis first); None where neither has it."""
    p, t = pred[low + 1 : high] == value, truth[low + 1 : high] == value
    total = np.count_nonzero(p) + np.count_nonzero(t)
    return None if total == 0 else 2.0 * np.count_nonzero(p & t) / total


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
    print(f"painted slices {slices}; columns: the stretches between them; each cell: true voxels, then Dice of")  # noqa: T201
    print("  " + ", ".join(moved))  # noqa: T201
    for value in ds.class_values:
        cells = []
        for low, high in zip(bounds[:-1], bounds[1:], strict=True):
            scores = [stretch_dice(pred, truth, value, low, high) for pred in moved.values()]
            voxels = int(np.count_nonzero(truth[low + 1 : high] == value))
            shown = " / ".join("-" if s is None else f"{s:.2f}" for s in scores)
            cells.append(f"{low + 1}-{high - 1}: {voxels} vox, {shown}")
        print(f"{ds.class_names[value]:12s} " + " | ".join(cells))  # noqa: T201


if __name__ == "__main__":
    main()
