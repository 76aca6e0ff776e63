"""Painted labels carried through real scans of thick slices: where a structure ends between two of them.

The five cases of pyradiomics' source archive (brain MRI 0.78 x 0.78 x 6.5 mm, breast MRI
0.66 x 0.66 x 2.1 mm, lung CT 0.57-0.63 x 5 mm; one tumour outline each, drawn by its authors) are the
only real thick-slice volumes with a mask that a package registry serves. For each case, k evenly
spaced slices through the tumour are painted from the mask and carried through the volume without
training: by napari-action's propagation with its thick-slice rules (the default), without the flow
check between painted slices (``flow_agreement = 0``), without it and the end tests beyond them
(``end_contrast = 0`` too: fading with distance alone), and by shape interpolation. Dice over
every unpainted slice of the volume (voxels carried past the tumour's ends count against it).

The archive (34.5 MB) is downloaded once with pip into ``--cache-dir`` and its ``data/`` folder kept;
reading NRRD needs ``pynrrd``::

    .venv/bin/pip install pynrrd
    .venv/bin/python benchmarks/thick_slices.py --cache-dir bench-out/pyradiomics
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from napari_action.data.interpolation import interpolate_labels
from napari_action.data.propagation import PropagationSettings, propagate_labels
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.evaluation.metrics import evaluate

ARCHIVE = "pyradiomics-3.0.1"
CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
AXIS = 2  # the slices were acquired along the arrays' last axis in every case


def data_folder(cache: Path) -> Path:
    """``<cache>/pyradiomics-3.0.1/data``, downloaded and unpacked the first time."""
    folder = cache / ARCHIVE / "data"
    if (folder / "lung2_label.nrrd").is_file():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    # The sdist's metadata build needs versioneer, hence no build isolation (ENV: setuptools, versioneer).
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", "pyradiomics==3.0.1"]
    subprocess.run([*command, "-d", str(cache)], check=True)
    with tarfile.open(cache / f"{ARCHIVE}.tar.gz") as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(f"{ARCHIVE}/data/") and m.isfile()]
        archive.extractall(cache, members=members, filter="data")
    return folder


def load_case(folder: Path, name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Image (float32), binary mask and voxel size in mm of one case."""
    import nrrd  # a benchmark dependency only

    image, header = nrrd.read(str(folder / f"{name}_image.nrrd"))
    mask, _ = nrrd.read(str(folder / f"{name}_label.nrrd"))
    directions = np.asarray(header["space directions"], dtype=float)
    spacing = tuple(float(np.linalg.norm(row)) for row in directions)
    return image.astype(np.float32), (mask > 0).astype(np.uint8), spacing


def carried(method: str, image: np.ndarray, sparse: np.ndarray, spacing, painted: list[int]) -> np.ndarray:
    if method == "interpolation":
        return interpolate_labels(sparse, AXIS, painted, spacing)
    return propagate_labels(image, sparse, AXIS, spacing, painted, SETTINGS[method])


# The thick-slice rules one at a time: the flow check between painted slices, then also the end tests
# beyond them (what the propagation does on thin slices).
SETTINGS = {
    "propagation": PropagationSettings(),
    "without the flow check": PropagationSettings(flow_agreement=0.0),
    "distance fade only": PropagationSettings(flow_agreement=0.0, end_contrast=0.0),
}
METHODS = (*SETTINGS, "interpolation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "napari-action" / "pyradiomics")
    parser.add_argument("--k", default="1,2,3", help="painted slices per case (where the tumour has more)")
    args = parser.parse_args()
    folder = data_folder(args.cache_dir)
    print("| case | voxel (mm) | tumour slices | k | painted | " + " | ".join(METHODS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(METHODS))
    scores: dict[str, list[float]] = {m: [] for m in METHODS}
    for name in CASES:
        image, mask, spacing = load_case(folder, name)
        present = np.flatnonzero(mask.any(axis=(0, 1)))
        for k in (int(v) for v in args.k.split(",")):
            if k >= len(present):
                continue  # every tumour slice painted: nothing left to score
            painted = [int(s) for s in evenly_spaced_slices(mask, AXIS, k)]
            sparse = sparse_from_truth(mask, AXIS, painted)
            row = []
            for method in METHODS:
                found = carried(method, image, sparse, spacing, painted)
                dice = evaluate(found, mask, spacing=spacing, exclude_slices=painted, axis=AXIS).mean_dice
                scores[method].append(dice)
                row.append(f"{dice:.3f}")
            voxel = " × ".join(f"{s:.2g}" for s in spacing)
            tumour = f"{present[0]}–{present[-1]}"
            print(f"| {name} | {voxel} | {tumour} | {k} | {painted} | " + " | ".join(row) + " |", flush=True)
    means = " | ".join(f"**{np.mean(v):.3f}**" for v in scores.values())
    print(f"| mean of {len(scores[METHODS[0]])} | | | | | {means} |")


if __name__ == "__main__":
    main()
