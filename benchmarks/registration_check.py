"""How well napari-action's own registration carries a painted subject's truth onto other subjects.

Registers each target subject of the Colin27 cohort (``cohort_subjects.py``, made or read from
``--cache-dir``) onto subject 1 with :func:`napari_action.data.registration.register_affine`,
carries subject 1's full truth by nearest voxel and prints the mean Dice over the 6 classes next to
world coordinates alone (no registration); ``--cohort brains --targets 2``: the MNI152 template.
Compare with the SimpleITK affine route of ``cohort.py --methods atlas --deformable none``
(docs/benchmarks.md, "Registration inside the product")::

    .venv/bin/python benchmarks/registration_check.py --targets 4,6,2 --cache-dir bench-out/cohort-cache
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from cohort_subjects import carried_truth, load_cohort

from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.registration import RegistrationSettings, register_affine
from napari_action.evaluation.metrics import dice_per_class


def mean_dice(found: np.ndarray, truth: np.ndarray, values) -> float:
    return float(np.nanmean(list(dice_per_class(found, truth, values).values())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", choices=("colin27", "brains"), default="colin27", help="brains: target 2 is MNI152")
    parser.add_argument("--targets", default="4,6,2", help="subject numbers (2-12) to register onto subject 1")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    targets = [int(t) for t in args.targets.split(",")]
    subjects = load_cohort(args.cohort, max(targets), 0, args.cache_dir).subjects
    source = subjects[0]
    values = np.unique(source.labels)[1:]
    settings = RegistrationSettings()
    for number in targets:
        target = subjects[number - 1]
        start = time.perf_counter()
        found = register_affine(
            NormalizedVolume.exact(target.image), target.affine, NormalizedVolume.exact(source.image), source.affine
        )
        seconds = time.perf_counter() - start
        registered = carried_truth(
            source.labels, found.fixed_to_moving_voxels(target.affine, source.affine), target.labels.shape
        )
        world_only = carried_truth(source.labels, np.linalg.inv(source.affine) @ target.affine, target.labels.shape)
        print(
            f"{target.name}: registered {mean_dice(registered, target.labels, values):.3f} in {seconds:.1f} s, "
            f"world coordinates alone {mean_dice(world_only, target.labels, values):.3f} ({settings})",
            flush=True,
        )


if __name__ == "__main__":
    main()
