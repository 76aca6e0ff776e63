"""napari-labelprop, the peer users know, on the sparse-slice protocol (issue #20).

napari-labelprop (its engine is the ``deep-labelprop`` package) trains a 2D registration network on
the scan itself and carries each painted structure between the painted slices that show it. It needs
packages of its own (lightning, monai, kornia), so it runs in a venv of its own, and this script has
three steps, each run by the venv that has what it needs::

    # 1. our venv: the painted slices of the protocol, the image and the truth in one file
    .venv/bin/python benchmarks/labelprop_peer.py prepare --k 3 --shift 0 --out bench-out/lp/c27_k3_sh0.npz
    # 2. labelprop's venv (see docs/benchmarks.md for its install): train and propagate, the widget's defaults
    /tmp/lpvenv/bin/python benchmarks/labelprop_peer.py run bench-out/lp/c27_k3_sh0.npz --out bench-out/lp/pred_sh0.npz
    # 3. our venv: Dice on every unpainted slice, per class and by distance to a painted slice
    .venv/bin/python benchmarks/labelprop_peer.py score bench-out/lp/c27_k3_sh0.npz bench-out/lp/pred_sh0.npz

``run`` calls ``labelprop.napari_entry.train_and_infer``, the function the plugin's training widget
calls, with the widget's defaults (slices resampled to 256 × 256, 50 epochs, NCC weighting, no
reduction). Its ``device`` follows the widget's "gpu" box: ``--device cpu`` is the box unticked.
Only the modules this step needs are imported at the top, so that it runs outside our venv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import types
from pathlib import Path

import numpy as np


def prepare(args) -> None:
    from sparse_slices import load_dataset

    from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth

    ds = load_dataset(args.dataset)
    n = ds.truth.shape[ds.axis]
    slices = [min(max(s + args.shift, 0), n - 1) for s in evenly_spaced_slices(ds.truth, ds.axis, args.k)]
    sparse = sparse_from_truth(ds.truth, ds.axis, slices)
    # labelprop counts its classes from the painted values: they must run 1, 2, ... C.
    painted = np.zeros(sparse.shape, np.uint8)
    for i, value in enumerate(ds.class_values):
        painted[sparse == value] = i + 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        image=ds.image.astype(np.float32),
        painted=painted,
        slices=np.asarray(slices),
        axis=ds.axis,
        dataset=args.dataset,
    )
    print(f"{args.dataset}: painted slices {slices} along axis {ds.axis} -> {args.out}")  # noqa: T201


def _import_labelprop():
    """deep-labelprop imports torchvision and never uses it; the PyPI wheel of torchvision does not load
    beside the CPU build of torch, so an empty module stands in for it."""
    import torchmetrics  # noqa: F401  (imported first: with a torchvision module present it reaches for its models)

    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        sys.modules.setdefault(name, types.ModuleType(name))
    from labelprop.napari_entry import train_and_infer

    return train_and_infer


def run(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    train_and_infer = _import_labelprop()
    saved = np.load(args.prepared)
    out = args.out.resolve()
    checkpoints = out.parent / "labelprop_checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    # Lightning writes its logs and checkpoints under the working directory: keep them beside the output.
    os.chdir(checkpoints)
    start = time.perf_counter()
    _, _, fused = train_and_infer(
        saved["image"],
        saved["painted"],
        None,
        args.shape,
        args.epochs,
        int(saved["axis"]),
        str(checkpoints),
        out.stem,
        hints=None,
        pretraining=False,
        criteria="ncc",
        reduction="none",
        device=args.device,
    )
    seconds = time.perf_counter() - start
    np.savez_compressed(out, labels=fused.astype(np.uint8), seconds=seconds, epochs=args.epochs)
    print(f"trained and propagated in {seconds:.0f} s -> {out}")  # noqa: T201


def score(args) -> None:
    from sparse_slices import by_distance, load_dataset

    from napari_action.evaluation.metrics import dice_per_class

    prepared, predicted = np.load(args.prepared), np.load(args.predicted)
    ds = load_dataset(str(prepared["dataset"]))
    slices = [int(s) for s in prepared["slices"]]
    ids = predicted["labels"].astype(np.int64)
    labels = np.where(ids > 0, np.asarray(ds.class_values)[np.maximum(ids - 1, 0)], 0)
    unpainted = np.setdiff1d(np.arange(ds.truth.shape[ds.axis]), slices)
    unpainted_labels, unpainted_truth = (np.take(a, unpainted, ds.axis) for a in (labels, ds.truth))
    per_class = dice_per_class(unpainted_labels, unpainted_truth, ds.class_values)
    bands = by_distance(ds, labels, slices)
    print(f"painted slices {slices}; {float(predicted['seconds']):.0f} s")  # noqa: T201
    print(f"mean Dice {np.mean(list(per_class.values())):.3f}")  # noqa: T201
    print("  ".join(f"{ds.class_names[v]} {d:.2f}" for v, d in per_class.items()))  # noqa: T201
    print("by distance: " + "  ".join(f"{b} {'–' if d is None else f'{d:.2f}'}" for b, d in bands.items()))  # noqa: T201


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare", help="the protocol's painted slices, image and truth in one .npz (our venv)")
    p.add_argument("--dataset", default="colin27")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--shift", type=int, default=0, help="move every painted slice by this many (a second pick set)")
    p.add_argument("--out", type=Path, required=True)
    r = steps.add_parser("run", help="train napari-labelprop's network and propagate (labelprop's venv)")
    r.add_argument("prepared", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--epochs", type=int, default=50, help="the widget's default: 50")
    r.add_argument("--shape", type=int, default=256, help="slices resampled to shape x shape (the widget's 256)")
    r.add_argument("--device", default="cpu", help="cpu, or cuda (the widget's gpu box)")
    r.add_argument("--threads", type=int, default=1)
    s = steps.add_parser("score", help="Dice of a run on every unpainted slice (our venv)")
    s.add_argument("prepared", type=Path)
    s.add_argument("predicted", type=Path)
    args = parser.parse_args(argv)
    {"prepare": prepare, "run": run, "score": score}[args.step](args)


if __name__ == "__main__":
    main()
