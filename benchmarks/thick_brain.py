"""Painted labels carried through Colin27 averaged into thick axial slabs: the thick-slice end rules on a brain.

``thick_slices.py`` measures the thick-slice rules of the propagation on tumours, the demo on hearts;
both stand out from their surroundings. Deep grey matter borders dark ventricles and bright white matter
at once. Here Colin27 is averaged into slabs of ``--slabs`` mm along its S-I axis (a thick-slice
acquisition; the truth is each slab's middle slice), k evenly spaced slabs are painted from the truth,
and the propagation alone (no training) is scored on every other slab: mean Dice over the 6 AAL classes,
for each ``--end-contrast`` (0 switches the contrast test off)::

    .venv/bin/python benchmarks/thick_brain.py --slabs 5,3 --k 2,3,5 --shifts 0,1 --end-contrast 0.5,0
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_action.data.propagation import PropagationSettings, propagate_labels
from napari_action.data.samples import evenly_spaced_slices, load_colin27, sparse_from_truth
from napari_action.evaluation.metrics import evaluate


def slabs(image: np.ndarray, truth: np.ndarray, axis: int, mm: int) -> tuple[np.ndarray, np.ndarray]:
    """``image`` averaged over ``mm`` slices along ``axis`` (moved first), and the truth of each slab's middle."""
    count = image.shape[axis] // mm
    moved = np.moveaxis(image, axis, 0)[: count * mm].astype(np.float32)
    thick = moved.reshape(count, mm, *moved.shape[1:]).mean(axis=1)
    return thick, np.moveaxis(truth, axis, 0)[mm // 2 :: mm][:count]


def carried_dice(image: np.ndarray, truth: np.ndarray, mm: int, k: int, shift: int, end_contrast: float) -> float:
    """Mean Dice of the propagation of ``k`` painted slabs (moved by ``shift``) on the unpainted ones."""
    painted = [s + shift for s in evenly_spaced_slices(truth, 0, k)]
    spacing = (float(mm), 1.0, 1.0)
    carried = propagate_labels(
        image, sparse_from_truth(truth, 0, painted), 0, spacing, settings=PropagationSettings(end_contrast=end_contrast)
    )
    unpainted = [s for s in range(len(truth)) if s not in painted]
    return evaluate(carried[unpainted], truth[unpainted], spacing=spacing).mean_dice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slabs", default="5,3", help="slab thicknesses in mm (whole numbers)")
    parser.add_argument("--k", default="2,3,5", help="numbers of painted slabs")
    parser.add_argument("--shifts", default="0,1", help="pick sets: the evenly spaced slabs moved by these")
    parser.add_argument("--end-contrast", default="0.5,0", help="PropagationSettings.end_contrast values")
    args = parser.parse_args()
    image, truth, meta = load_colin27()
    axis = next(i for i, code in enumerate(meta.orientation) if code in "SI")
    values = [float(v) for v in args.end_contrast.split(",")]
    means = {value: [] for value in values}
    print("slab  k  shift  " + "  ".join(f"end_contrast={v}" for v in values))
    for mm in (int(s) for s in args.slabs.split(",")):
        thick, thick_truth = slabs(image, truth, axis, mm)
        for k in (int(s) for s in args.k.split(",")):
            for shift in (int(s) for s in args.shifts.split(",")):
                row = [carried_dice(thick, thick_truth, mm, k, shift, value) for value in values]
                for value, dice in zip(values, row, strict=True):
                    means[value].append(dice)
                print(f"{mm} mm  {k}  {shift}  " + "  ".join(f"{d:.4f}" for d in row))
    print("mean   " + "  ".join(f"{np.mean(m):.4f}" for m in means.values()))


if __name__ == "__main__":
    main()
