"""Registration candidates for the propagation, measured against each other by Dice per second.

The propagation (``napari_action.data.propagation``) carries the painted labels from slice to slice
along the 2D motion between neighbouring slices, which an iterative Lucas-Kanade estimates
(``napari_action.data.optical_flow.lucas_kanade_flow``). This script puts another estimate in its
place for one run of the sparse-slice protocol (``sparse_slices.py --methods propagation``: no
training) and reports how many flows were estimated and the seconds they took, next to the Dice that
``sparse_slices.py`` prints::

    .venv/bin/python benchmarks/flow_candidates.py --flow ilk -- --dataset colin27 --k 1,3,7 --shift 0 \\
        --methods propagation --seeds 1337 --threads 1 --out-dir bench-out/flows/ilk-sh0
    .venv/bin/python benchmarks/flow_candidates.py --flow variational -- --dataset colin27 --k 1,3,7 \\
        --shift 0 --methods propagation --seeds 1337 --threads 1 --out-dir bench-out/flows/var-sh0

Candidates:

* ``ilk``: the product's own (timed the same way);
* ``skimage``: scikit-image's ``optical_flow_ilk``, the same method, which the product used until it
  solved each pixel's 2 x 2 system in closed form (the same flows, to float32 rounding);
* ``variational``: a deformable registration of each pair optimised in torch (runs on a GPU as is):
  a dense displacement field, coarse to fine, Adam on the mean squared difference between the
  fixed slice and the warped moving one plus ``alpha`` times the field's squared gradient;
* ``mean``: the average of the two fields.

The candidate replaces the flow function inside the propagation's sweeps for this process only; every
other part of the propagation (the smoothing of each flow, the blend, the structure ends, the
appearance weight) runs unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.registration import optical_flow_ilk

import napari_action.data.propagation_sweeps as sweeps

Flow = Callable[..., np.ndarray]


@dataclasses.dataclass
class FlowTimer:
    """Counts the flows a run estimates and the seconds they take."""

    flow: Flow
    count: int = 0
    seconds: float = 0.0

    def __call__(self, reference: np.ndarray, moving: np.ndarray, **kwargs) -> np.ndarray:
        start = time.perf_counter()
        flow = self.flow(reference, moving, **kwargs)
        self.seconds += time.perf_counter() - start
        self.count += 1
        return flow


@dataclasses.dataclass(frozen=True)
class Variational:
    """A dense displacement field per pair, optimised coarse to fine (``levels``: pooling factors)."""

    levels: tuple[int, ...] = (4, 2, 1)
    iterations: tuple[int, ...] = (20, 15, 10)
    alpha: float = 0.02
    learning_rate: float = 0.6

    def __call__(self, reference: np.ndarray, moving: np.ndarray, **_ilk_settings) -> np.ndarray:
        """``(2, H, W)`` (row, column) displacements: ``moving`` sampled at grid + flow matches ``reference``."""
        fixed = torch.from_numpy(np.ascontiguousarray(reference, np.float32))[None, None]
        warped_from = torch.from_numpy(np.ascontiguousarray(moving, np.float32))[None, None]
        height, width = fixed.shape[-2:]
        # Displacements are kept in full-resolution pixels; grid_sample wants [-1, 1] coordinates, (x, y).
        to_unit = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)]).view(1, 1, 1, 2)
        field = None
        for factor, steps in zip(self.levels, self.iterations, strict=True):
            fixed_level, moving_level = (_pooled(image, factor) for image in (fixed, warped_from))
            shape = fixed_level.shape[-2:]
            start = torch.zeros(1, 2, *shape) if field is None else _resized(field, shape)
            field = self._fit(fixed_level, moving_level, start.requires_grad_(True), to_unit, steps, factor)
        return _resized(field, (height, width))[0].numpy()

    def _fit(self, fixed, moving, field, to_unit, steps: int, factor: int) -> torch.Tensor:
        optimiser = torch.optim.Adam([field], lr=self.learning_rate)
        grid = _identity_grid(*fixed.shape[-2:])
        for _ in range(steps):
            optimiser.zero_grad()
            offsets = torch.stack([field[:, 1], field[:, 0]], -1) * to_unit
            warped = F.grid_sample(moving, grid + offsets, align_corners=True, padding_mode="border")
            roughness = (field.diff(dim=-2) ** 2).mean() + (field.diff(dim=-1) ** 2).mean()
            # The gradient of a coarse field spans `factor` full-resolution pixels.
            loss = ((warped - fixed) ** 2).mean() + self.alpha * roughness * factor**2
            loss.backward()
            optimiser.step()
        return field.detach()


def _pooled(image: torch.Tensor, factor: int) -> torch.Tensor:
    return F.avg_pool2d(image, factor, ceil_mode=True) if factor > 1 else image


def _resized(field: torch.Tensor, shape) -> torch.Tensor:
    return F.interpolate(field, tuple(shape), mode="bilinear", align_corners=True)


def _identity_grid(height: int, width: int) -> torch.Tensor:
    rows, columns = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([columns, rows], -1)[None]


def _scikit_image_ilk(reference: np.ndarray, moving: np.ndarray, radius: int, warps: int) -> np.ndarray:
    """scikit-image's iterative Lucas-Kanade, which the product's own one (``ilk``) replaced for speed."""
    return optical_flow_ilk(reference, moving, radius=radius, num_warp=warps)


def _mean_of(*flows: Flow) -> Flow:
    def mean(reference: np.ndarray, moving: np.ndarray, **kwargs) -> np.ndarray:
        return np.mean([flow(reference, moving, **kwargs) for flow in flows], axis=0)

    return mean


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow", choices=("ilk", "skimage", "variational", "mean"), default="ilk")
    parser.add_argument("--levels", type=_ints, default=Variational.levels, help="pooling factors, coarse first")
    parser.add_argument("--iterations", type=_ints, default=Variational.iterations, help="Adam steps per level")
    parser.add_argument("--alpha", type=float, default=Variational.alpha, help="weight of the field's roughness")
    parser.add_argument("--learning-rate", type=float, default=Variational.learning_rate, help="pixels")
    parser.add_argument("protocol", nargs=argparse.REMAINDER, help="sparse_slices.py's arguments, after --")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ilk = sweeps.lucas_kanade_flow
    variational = Variational(args.levels, args.iterations, args.alpha, args.learning_rate)
    candidates = {"ilk": ilk, "skimage": _scikit_image_ilk, "variational": variational}
    candidate: Flow = _mean_of(ilk, variational) if args.flow == "mean" else candidates[args.flow]
    timer = FlowTimer(candidate)
    sweeps.lucas_kanade_flow = timer  # what the propagation's sweeps call for each pair of neighbouring slices
    sys.path.insert(0, str(Path(__file__).parent))
    import sparse_slices  # the sibling benchmark (run as a script)

    protocol = args.protocol[1:] if args.protocol[:1] == ["--"] else args.protocol
    sparse_slices.main(protocol)
    each_ms = 1000 * timer.seconds / max(timer.count, 1)
    print(f"{args.flow}: {timer.count} flows in {timer.seconds:.1f} s ({each_ms:.0f} ms each)")


if __name__ == "__main__":
    main()
