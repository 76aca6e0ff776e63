"""A Colin27 model predicting Colin27 stored at other in-plane voxel sizes, with and without resizing its slices.

A scan from another scanner stores the same anatomy at another voxel size. The brain is resampled
in-plane (trilinear; its AAL truth by nearest neighbour) to each size and predicted by a model
saved by ``sparse_slices.py --save-models`` (trained on the 1 mm brain), once as the product does
(each slice resized to the model's training pixel size and the probabilities resized back,
``data/pixel_size.py``) and once with the slices as they are (what prediction did before).
Mean Dice over the structures, on every slice (no painted slice: a volume nobody painted)::

    .venv/bin/python benchmarks/pixel_size.py bench-out/c27/models/colin27_k3_action_s1337.pt --mm 0.8,1.25,1.5,2

A model saved before checkpoints kept their pixel size is given the 1 mm of the brain it was trained on.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sparse_slices import load_dataset  # the sibling benchmark (run as a script)

from napari_action.evaluation.metrics import dice_per_class
from napari_action.inference.predictor import Predictor


def stored_at(volume: np.ndarray, mm: float, plane: list[int], order: int) -> np.ndarray:
    """``volume`` (1 mm voxels) resampled to ``mm`` along the in-plane axes."""
    factors = [1.0 / mm if a in plane else 1.0 for a in range(3)]
    return ndimage.zoom(volume, factors, order=order, grid_mode=True, mode="nearest")


def mean_dice(labels: np.ndarray, truth: np.ndarray, values: np.ndarray) -> float:
    return float(np.nanmean(list(dice_per_class(labels, truth, values).values())))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--mm", default="0.8,1.25,1.5,2", help="comma-separated in-plane voxel sizes")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ds = load_dataset("colin27")
    predictor = Predictor.from_checkpoint(args.model, device="cpu")
    trained = predictor.pixel_mm or (1.0, 1.0)
    plane = [a for a in range(3) if a != ds.axis]
    values = predictor.class_values[1:]
    for mm in [1.0] + [float(x) for x in args.mm.split(",")]:
        image = stored_at(ds.image.astype(np.float32), mm, plane, order=1)
        truth = stored_at(ds.truth, mm, plane, order=0)
        spacing = [mm if a in plane else 1.0 for a in range(3)]
        row = {"mm": mm, "shape": list(image.shape)}
        for name, pixel_mm in (("resized", trained), ("as_stored", None)):
            predictor.pixel_mm = pixel_mm
            start = time.perf_counter()
            labels, _ = predictor.predict(image, spacing=spacing)
            row[name] = round(mean_dice(labels, truth, values), 3)
            row[f"{name}_s"] = round(time.perf_counter() - start, 1)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
